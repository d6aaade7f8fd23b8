"""Generated images: diffusers pipelines (tiny, randomly initialised: the real architectures) from
compressed embeddings, semantic arithmetic, model checks, the CLI, and a clear error offline."""

import json

import numpy as np
import pytest

pytest.importorskip("diffusers")
from PIL import Image  # noqa: E402

from semzip import InputError, make_codec  # noqa: E402
from semzip.cli import main  # noqa: E402
from semzip.container import write_archive  # noqa: E402
from semzip.decode.generate import DECODERS, load_generator, safe_names  # noqa: E402

from .utils import unit_rows  # noqa: E402
from .tiny_models import tiny_kandinsky, tiny_unclip  # noqa: E402


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    return {"stable-unclip-small": tiny_unclip(root / "unclip"), "kandinsky-2.2": tiny_kandinsky(root / "kandinsky")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stable-unclip-small", "kandinsky-2.2"])
def test_generator_draws_one_seeded_image_per_item(pipes, name):
    gen = load_generator(name, weights=str(pipes[name]))
    assert gen.dim == 16
    if name == "stable-unclip-small":  # the norm its normaliser's statistics imply (mean 0, std 1 untrained)
        assert gen.scale == pytest.approx(4.0)
    X = unit_rows(3, 16, seed=2)
    a = gen.generate(X, steps=2, size=32, batch_size=3, seed=5)
    b = gen.generate(X, steps=2, size=32, batch_size=1, seed=5)
    c = gen.generate(X[1:2], steps=2, size=32, seed=6)  # item 1 of a run with seed 5 is drawn with seed 6
    assert len(a) == 3 and all(im.size == (32, 32) for im in a)
    px = [np.asarray(im, dtype=np.int16) for im in a]
    # the same noise whatever the batch: pixels differ by rounding only (1/255 here; kernels may differ)
    for p, q in [*zip(px, b), (px[1], c[0])]:
        diff = np.abs(p - np.asarray(q, dtype=np.int16))
        assert diff.max() <= 8 and diff.mean() < 0.5
    assert np.abs(px[0] - px[2]).mean() > 5  # different items, different images (mean 45-90 here)
    with pytest.raises(InputError, match="takes 16-d"):
        gen.generate(unit_rows(2, 32, seed=1), steps=1)


def test_safe_names_stay_inside_the_folder():
    names = safe_names(["a/b.jpg", "../../etc/passwd", "", "x" * 300])
    assert names[0] == "00000_a_b.jpg.png" and all("/" not in n and not n.startswith(".") for n in names)
    assert len(set(names)) == 4 and len(names[3]) < 100


@pytest.mark.slow
def test_cli_generate_writes_images_index_and_sheet(pipes, tmp_path, capsys):
    X = unit_rows(5, 16, seed=3)
    ids = [f"pics/img{i}.png" for i in range(5)]
    (tmp_path / "pics").mkdir()
    Image.new("RGB", (20, 20), "red").save(tmp_path / "pics" / "img1.png")
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X, ids=ids, model="ViT-L-14:openai")
    base = ["generate", str(tmp_path / "a.smz"), "--decoder", "stable-unclip-small", "--weights",
            str(pipes["stable-unclip-small"]), "--steps", "2", "--size", "32"]
    assert main(base + ["-o", str(tmp_path / "gen"), "--id", ids[1], "--id", ids[3], "--seed", "7", "--images",
                        str(tmp_path), "--sheet", str(tmp_path / "sheet.png"), "--json"]) == 0
    index = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in index["items"]] == [ids[1], ids[3]] and [e["seed"] for e in index["items"]] == [7, 8]
    assert json.loads((tmp_path / "gen" / "index.json").read_text()) == index
    for entry in index["items"]:
        with Image.open(tmp_path / "gen" / entry["file"]) as im:
            assert im.size == (32, 32)
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.format == "PNG"
    plain = np.asarray(Image.open(tmp_path / "gen" / index["items"][0]["file"]), dtype=np.int16)
    assert main(base + ["-o", str(tmp_path / "mixed"), "--id", ids[1], "--seed", "7", "--add", ids[4],
                        "--alpha", "2", "--json"]) == 0
    mixed = json.loads(capsys.readouterr().out)
    assert mixed["add"] == ids[4] and mixed["alpha"] == 2.0
    assert np.abs(np.asarray(Image.open(tmp_path / "mixed" / mixed["items"][0]["file"]), dtype=np.int16) - plain).max() > 10
    write_archive(tmp_path / "b32.smz", make_codec("f16").fit(X), X, model="ViT-B-32:openai")
    assert main(base[:1] + [str(tmp_path / "b32.smz")] + base[2:] + ["-o", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "ViT-L-14:openai" in err and "ViT-B-32:openai" in err and not (tmp_path / "no").exists()
    W = unit_rows(3, 32, seed=4)
    write_archive(tmp_path / "wide.smz", make_codec("f16").fit(W), W)
    assert main(base[:1] + [str(tmp_path / "wide.smz")] + base[2:] + ["-o", str(tmp_path / "no")]) == 2
    assert "takes 16-d" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "no"), "--decoder", "dall-e"]) == 2
    assert "unknown decoder" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_generate_kandinsky_and_a_wrong_pipeline_folder(pipes, tmp_path, capsys):
    X = unit_rows(2, 16, seed=5)
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X, model="ViT-bigG-14:laion2b_s39b_b160k")
    assert main(["generate", str(tmp_path / "a.smz"), "-o", str(tmp_path / "k"), "--decoder", "kandinsky-2.2",
                 "--weights", str(pipes["kandinsky-2.2"]), "--steps", "2", "--size", "32"]) == 0
    assert len(list((tmp_path / "k").glob("*.png"))) == 2
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "a.smz"), "-o", str(tmp_path / "k2"), "--decoder", "kandinsky-2.2",
                 "--weights", str(pipes["stable-unclip-small"]), "--steps", "2"]) == 6
    assert "cannot load kandinsky-2.2" in capsys.readouterr().err


def test_offline_without_weights_names_the_repository(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    X = unit_rows(2, 768, seed=6)
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X, model="ViT-L-14:openai")
    assert main(["generate", str(tmp_path / "a.smz"), "-o", str(tmp_path / "g"), "--decoder", "stable-unclip-small"]) == 6
    err = capsys.readouterr().err
    assert f"hf download {DECODERS['stable-unclip-small'].repo}" in err and "HF_HUB_OFFLINE" in err


def test_without_diffusers_the_error_says_how_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    X = unit_rows(2, 16, seed=6)
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X)
    assert main(["generate", str(tmp_path / "a.smz"), "-o", str(tmp_path / "g"), "--decoder", "kandinsky-2.2"]) == 6
    assert "needs diffusers" in capsys.readouterr().err and not (tmp_path / "g").exists()

