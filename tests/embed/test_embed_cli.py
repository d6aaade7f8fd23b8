"""The CLIP commands through `main([...])`: embed, compress IMAGE_DIR, classify, and their errors."""

from __future__ import annotations

from .utils import require_clip

require_clip()

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semzip.cli import main
from semzip.container import Archive
from semzip.embed import class_embeddings, load_model, zero_shot

from .utils import PHOTOS


@pytest.fixture
def photo_folder(photo_dir, tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in PHOTOS[:3]:
        shutil.copy(photo_dir / name, folder / name)
    with Image.open(photo_dir / "rocket.jpg") as img:
        img.save(folder / "sub" / "rocket.webp")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return folder


@pytest.fixture
def tiny_args(tiny_weights_dir, tmp_path) -> list[str]:
    return ["--model", "ViT-B-32:tiny", "--weights", str(tiny_weights_dir)]


def _tiny_id(tiny_weights_dir) -> str:
    """The id recorded for the tiny folder: from its weights, since its config is not ViT-B-32's."""
    return load_model("ViT-B-32:tiny", weights=tiny_weights_dir).name


def test_embed_writes_features_ids_pixels_and_uses_the_cache(photo_folder, tiny_args, tiny_weights_dir, tmp_path, capsys):
    out, db = tmp_path / "emb.npz", tmp_path / "cache.sqlite"
    assert main(["embed", str(photo_folder), "-o", str(out), "--cache", str(db), *tiny_args]) == 0
    captured = capsys.readouterr()
    assert "embedded 4 images (0 from cache, 1 skipped)" in captured.out
    assert "skipped" in captured.err and "broken.jpg" in captured.err
    with np.load(out) as f:
        assert f["features"].shape == (4, 24) and f["features"].dtype == np.float32
        assert f["ids"].tolist() == ["astronaut.png", "chelsea.png", "coffee.png", "sub/rocket.webp"]
        assert f["pixels"].tolist() == [512 * 512, 451 * 300, 400 * 600, 640 * 427]
        assert str(f["model"]) == _tiny_id(tiny_weights_dir)
        first = f["features"].copy()
    assert main(["embed", str(photo_folder), "-o", str(out), "--cache", str(db), *tiny_args]) == 0
    assert "(4 from cache, 1 skipped)" in capsys.readouterr().out
    with np.load(out) as f:
        np.testing.assert_array_equal(f["features"], first)


def test_embed_strict_fails_on_the_bad_file(photo_folder, tiny_args, tmp_path, capsys):
    rc = main(["embed", str(photo_folder), "-o", str(tmp_path / "e.npz"), "--no-cache", "--strict", *tiny_args])
    assert rc == 2 and "broken.jpg" in capsys.readouterr().err
    assert not (tmp_path / "e.npz").exists()


def test_embed_without_weights_offline_says_how_to_get_them(photo_folder, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))
    rc = main(["embed", str(photo_folder), "-o", str(tmp_path / "e.npz"), "--no-cache"])
    err = capsys.readouterr().err
    assert rc == 6 and "no weights for ViT-B-32:openai" in err and "--weights" in err


def test_compress_an_image_folder_then_classify(photo_folder, tiny_args, tiny_weights_dir, tmp_path, capsys):
    arc = tmp_path / "photos.smz"
    assert main(["compress", str(photo_folder), "--codec", "f16", "-o", str(arc), "--no-cache", *tiny_args]) == 0
    with Archive.open(arc) as a:
        assert a.model == _tiny_id(tiny_weights_dir) and a.ids == ["astronaut.png", "chelsea.png", "coffee.png", "sub/rocket.webp"]
        assert a.pixels.tolist() == [512 * 512, 451 * 300, 400 * 600, 640 * 427]
        info, X = a.info(), a.decode()
    assert info["bpp"] == pytest.approx(info["total_bits"] / sum([512 * 512, 451 * 300, 400 * 600, 640 * 427]))
    capsys.readouterr()

    rc = main(["classify", str(arc), "--labels", "cat,astronaut,coffee cup,rocket", "--templates", "simple",
               "--weights", str(tiny_weights_dir), "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    labels = ["cat", "astronaut", "coffee cup", "rocket"]
    model = load_model("ViT-B-32:tiny", weights=tiny_weights_dir)
    best, score = zero_shot(X, class_embeddings(labels, "simple", model))
    assert [r["id"] for r in rows] == ["astronaut.png", "chelsea.png", "coffee.png", "sub/rocket.webp"]
    assert [r["label"] for r in rows] == [labels[b] for b in best]
    np.testing.assert_allclose([r["score"] for r in rows], score, atol=1e-4)

    assert main(["classify", str(arc), "--labels", "cat,dog", "--templates", "a {}|the {}",
                 "--weights", str(tiny_weights_dir)]) == 0
    table = capsys.readouterr().out
    assert "chelsea.png" in table and "4 items, 2 classes" in table


def test_classify_rejects_bad_labels_and_templates(photo_folder, tiny_args, tiny_weights_dir, tmp_path, capsys):
    arc = tmp_path / "photos.smz"
    assert main(["compress", str(photo_folder), "--codec", "f16", "-o", str(arc), "--no-cache", *tiny_args]) == 0
    assert main(["classify", str(arc), "--labels", "cat", "--weights", str(tiny_weights_dir)]) == 2
    assert main(["classify", str(arc), "--labels", "cat,dog", "--templates", "no slot",
                 "--weights", str(tiny_weights_dir)]) == 2
    assert "no '{}'" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--model", "ViT-Q-99:openai"], "unknown CLIP architecture 'ViT-Q-99'"),
    (["--model", "ViT-B-32"], "not of the form ARCH:TAG"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--device", "toaster"], "unknown device 'toaster'"),
])
def test_embed_model_and_device_errors(args, message, photo_folder, tiny_weights_dir, tmp_path, capsys):
    weights = [] if "--model" in args else ["--model", "ViT-B-32:tiny", "--weights", str(tiny_weights_dir)]
    rc = main(["embed", str(photo_folder), "-o", str(tmp_path / "e.npz"), "--no-cache", *weights, *args])
    assert rc == 6 and message in capsys.readouterr().err
