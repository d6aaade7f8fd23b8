"""semzip eval: k-NN overlap on hand-made cases (the other metrics are in test_metrics.py), dataset
schemas, the runner's counted rates, pixel codecs, the CLI."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from semzip import InputError, SpecError, make_codec
from semzip.cli import main
from semzip.eval import knn_overlap, zero_shot_topk
from semzip.eval.datasets import clip_embedders, image_folder_dataset, load_dataset, npz_dataset
from semzip.eval.pixel import encode_image, equal_fidelity_ratios, pixel_codec_eval
from semzip.eval.runner import evaluate, split_specs


# ---- helpers ---------------------------------------------------------------------------------------
def _circle(degrees: list[float]) -> np.ndarray:
    a = np.radians(degrees)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def _clustered(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit vectors, labels, unit class centres): a small zero-shot task with a known answer."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.integers(classes, size=n)
    X = centres[y] + 0.35 * rng.standard_normal((n, d)) / np.sqrt(d)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y.astype(np.int32), centres.astype(np.float32)


@pytest.fixture
def flat_npz(tmp_path: Path) -> Path:
    X, y, centres = _clustered(300, 32, 6, seed=0)
    path = tmp_path / "zs.npz"
    np.savez(path, image_features=X.astype(np.float16), labels=y, text_features=centres,
             classnames=np.array([f"class {i}" for i in range(6)]), model=np.array("ViT-B-32:openai"))
    return path


@pytest.fixture
def split_npz(tmp_path: Path) -> Path:
    X, y, _ = _clustered(500, 32, 5, seed=1)
    path = tmp_path / "split.npz"
    np.savez(path, train_features=X[:100], train_labels=y[:100], val_features=X[100:300], val_labels=y[100:300],
             test_features=X[300:], test_labels=y[300:], test_pixels=np.full(200, 640 * 480))
    return path


# ---- metrics -----------------------------------------------------------------------------------------
def test_knn_overlap_of_identical_vectors_is_one():
    X, _, _ = _clustered(120, 16, 4, seed=2)
    assert knn_overlap(X, X, k=10) == 1.0


def test_knn_overlap_counts_broken_neighbourhoods():
    # three pairs of mutual nearest neighbours, 90 degrees apart
    ref = _circle([0, 10, 90, 100, 180, 190])
    # swapping within a pair keeps every neighbour; swapping across pairs A and B breaks A's and B's
    assert knn_overlap(ref[[1, 0, 2, 3, 4, 5]], ref, k=1) == 1.0
    assert knn_overlap(ref[[0, 2, 1, 3, 4, 5]], ref, k=1) == pytest.approx(2 / 6)


def test_knn_overlap_rejects_bad_k():
    X = _circle([0, 10, 20])
    with pytest.raises(InputError, match="k=3"):
        knn_overlap(X, X, k=3)
    with pytest.raises(InputError, match="2 decoded vs 3"):
        knn_overlap(X[:2], X, k=1)


# ---- spec lists --------------------------------------------------------------------------------------
def test_split_specs_keeps_parameters_with_their_codec():
    assert split_specs("f16, pq:M=32,K=256,opq=1,sign,pq:M=8") == ["f16", "pq:M=32,K=256,opq=1", "sign", "pq:M=8"]
    with pytest.raises(SpecError, match="K=256"):
        split_specs("K=256,f16")
    with pytest.raises(SpecError, match="empty"):
        split_specs("f16,,sign")


def test_split_specs_keeps_stacks_whole():
    assert split_specs("pq:M=8,K=16+rq:M=4,K=16,f16,coarse:bits=4+f16") == [
        "pq:M=8,K=16+rq:M=4,K=16", "f16", "coarse:bits=4+f16"]


# ---- dataset schemas ---------------------------------------------------------------------------------
def test_flat_schema_is_zero_shot(flat_npz):
    ds = load_dataset(flat_npz)
    assert ds.tasks == ["zero-shot"] and ds.model == "ViT-B-32:openai" and ds.fit_features is None
    assert ds.items.dtype == np.float32 and ds.classnames[0] == "class 0"


def test_split_schema_uses_train_for_centroids_and_train_val_for_codecs(split_npz):
    ds = load_dataset(split_npz)
    assert ds.tasks == ["nearest-centroid"] and len(ds.items) == 200 and len(ds.centroid_features) == 100
    assert len(ds.fit_features) == 300 and "val_features (200)" in ds.fit_source
    assert ds.pixels.sum() == 200 * 640 * 480


def test_paired_schema_is_retrieval(tmp_path):
    X, _, _ = _clustered(40, 16, 4, seed=4)
    np.savez(tmp_path / "pairs.npz", image_features=X, text_features=X[::-1])
    assert load_dataset(tmp_path / "pairs.npz").tasks == ["retrieval"]


@pytest.mark.parametrize("arrays, message", [
    ({"features": np.ones((3, 4))}, "expected 'image_features' .* or 'test_features'.*it has: features"),
    ({"test_features": np.ones((3, 4))}, "missing 'test_labels'"),
    ({"test_features": np.ones((3, 4)), "test_labels": np.zeros(2, int)}, "'test_labels' must be 3 integer labels"),
    ({"image_features": np.ones((3, 4))}, "needs 'labels' .* or paired 'text_features'"),
    ({"image_features": np.ones((3, 4)), "labels": np.zeros(3, int)}, "neither 'text_features' nor 'classnames'"),
    ({"image_features": np.ones((3, 4)), "text_features": np.ones((2, 4))}, "'text_features' has 2 rows"),
    ({"image_features": np.ones((3, 4)), "labels": np.array([0, 1, 2]), "text_features": np.ones((2, 4))},
     "'labels' must index the 2 classes"),
    ({"image_features": np.ones((3, 4)), "labels": np.zeros(3, int), "text_features": np.ones((2, 5))},
     "text_features: width 5"),
    ({"test_features": np.ones((3, 4)), "test_labels": np.array([0, 1, 2]), "train_features": np.ones((2, 4)),
      "train_labels": np.array([0, 1])}, "classes absent from train_labels"),
    ({"image_features": np.ones((3, 4)), "labels": np.zeros(3, int), "classnames": np.array(["a"]),
      "pixels": np.zeros(3, int)}, "'pixels' must be 3 positive"),
])
def test_schema_errors_name_the_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=message):
        npz_dataset(path)


def test_missing_and_unreadable_dataset(tmp_path):
    with pytest.raises(InputError, match="no such dataset"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read"):
        load_dataset(tmp_path / "junk.npz")
    with pytest.raises(InputError, match="needs a CLIP model"):
        load_dataset(tmp_path)


# ---- image folders (fake embedders stand in for CLIP) ------------------------------------------------
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}


def _photo(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (48, 32)):
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for c, (name, colour) in enumerate(COLOURS.items()):
        (root / name).mkdir(parents=True)
        for i in range(5):
            _photo(colour, seed=10 * c + i).save(root / name / f"{i}.png")
    (root / "notes.txt").write_text("ignored")
    return root


def fake_image_embedder(paths):
    """Mean colour of each decoded image plus a fixed spread into 8 dimensions: a stand-in for CLIP."""
    from PIL import Image

    rows = []
    for p in paths:
        with Image.open(p) as img:
            mean = np.asarray(img.convert("RGB"), dtype=np.float64).mean(axis=(0, 1)) / 255
        rows.append(np.concatenate([mean, 0.05 * np.sin(np.arange(5) * mean.sum())]))
    X = np.asarray(rows, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def fake_text_embedder(names):
    rows = [np.concatenate([np.array(COLOURS[n]) / 255, np.zeros(5)]) for n in names]
    X = np.asarray(rows, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_image_folder_dataset_with_a_fake_embedder(image_folder):
    ds = image_folder_dataset(image_folder, fake_image_embedder, fake_text_embedder)
    assert ds.classnames == ["blue", "green", "red"] and ds.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert ds.pixels.tolist() == [48 * 32] * 15 and len(ds.image_paths) == 15
    assert zero_shot_topk(ds.items, ds.text_features, ds.labels) == 1.0


def test_clip_embedders_call_semzip_embed(monkeypatch, tmp_path):
    calls = {}
    fake = types.ModuleType("semzip.embed")
    fake.load_model = lambda name, weights=None, device="cpu": calls.setdefault("model", (name, weights, device))
    fake.embed_paths = lambda paths, model, ids, progress: types.SimpleNamespace(
        features=np.ones((len(paths), 4), np.float32), model=model, ids=ids)
    fake.class_embeddings = lambda names, templates, model: calls.setdefault("texts", (names, templates)) and np.ones(
        (len(names), 4), np.float32)
    monkeypatch.setitem(sys.modules, "semzip.embed", fake)
    import semzip

    monkeypatch.setattr(semzip, "embed", fake, raising=False)
    images, texts = clip_embedders("ViT-B-32:openai", weights="w.safetensors", templates="photo")
    assert "model" not in calls  # loaded on first use only
    assert images([tmp_path / "a.png"])[0].shape == (1, 4)
    assert calls["model"] == ("ViT-B-32:openai", "w.safetensors", "cpu")
    features, kept = images([tmp_path / "a.png", tmp_path / "b.png"])
    assert features.shape == (2, 4) and kept.tolist() == [0, 1]
    assert texts(["cat", "dog"]).shape == (2, 4) and calls["texts"] == (["cat", "dog"], "photo")


# ---- the runner: real archives, counted rates --------------------------------------------------------
def test_evaluate_counts_rates_from_the_archive(flat_npz):
    ds = load_dataset(flat_npz)
    report = evaluate(ds, ["f16", "sign", "pq:M=4,K=16,opq=0"])
    ref, (f16, sign, pq) = report["reference"], report["rows"]
    assert ref["bits_per_item"] == 32 * 32
    assert f16["payload_bits_per_item"] == 16 * 32 and sign["payload_bits_per_item"] == 32
    for row in report["rows"]:
        codec = make_codec(row["codec"]).fit(ds.items)
        assert row["payload_bits_per_item"] == 8 * len(codec.encode(ds.items)) / len(ds.items)
        assert row["bits_per_item"] > row["payload_bits_per_item"] and row["codec_embedded"]
    assert f16["metrics"]["zs_top1"] == ref["metrics"]["zs_top1"] and f16["relative"]["knn10"] == 1.0
    assert pq["metrics"]["cosine"] < 1.0
    assert "evaluated items themselves" in report["training"]


def test_evaluate_uses_the_training_split_or_given_data(split_npz, flat_npz):
    report = evaluate(load_dataset(split_npz), ["int8"])
    assert "train_features (100) + val_features (200)" in report["training"]
    row = report["rows"][0]
    assert not row["codec_embedded"] and row["bpp"] == pytest.approx(row["bits_per_item"] / (640 * 480))
    assert "centroid_top1" in row["metrics"]
    report = evaluate(load_dataset(split_npz), ["int8"], fit_on_items=True)
    assert "200 evaluated items themselves" in report["training"] and report["rows"][0]["codec_embedded"]
    X, _, _ = _clustered(64, 32, 3, seed=9)
    with pytest.raises(InputError, match="not both"):
        evaluate(load_dataset(flat_npz), ["f16"], train=X, fit_on_items=True)
    report = evaluate(load_dataset(flat_npz), ["pq:M=4,K=16,opq=0"], train=X, train_name="extra.npy")
    assert report["training"].startswith("extra.npy (64 vectors)") and not report["rows"][0]["codec_embedded"]


# ---- pixel codecs ------------------------------------------------------------------------------------
def test_pixel_rates_are_counted_from_encoded_bytes(image_folder):
    from PIL import Image

    paths = sorted(image_folder.rglob("*.png"))[:2]
    rows = pixel_codec_eval(paths, ["jpeg", "webp"], [10, 60])
    assert [(r["family"], r["quality"]) for r in rows] == [("jpeg", 10), ("jpeg", 60), ("webp", 10), ("webp", 60)]
    nbytes = sum(len(encode_image(Image.open(p).convert("RGB"), "jpeg", 10)) for p in paths)
    assert rows[0]["bytes"] == nbytes and rows[0]["bpp"] == 8 * nbytes / (2 * 48 * 32)
    assert rows[0]["bpp"] < rows[1]["bpp"] and rows[0]["metrics"] == {}


def test_pixel_codecs_re_embedded_with_a_fake_embedder(image_folder):
    ds = image_folder_dataset(image_folder, fake_image_embedder, fake_text_embedder)
    rows = pixel_codec_eval(ds.image_paths, ["jpeg"], [5, 90], embedder=fake_image_embedder, dataset=ds)
    assert all(r["metrics"]["zs_top1"] == 1.0 for r in rows)  # colours survive any JPEG quality
    assert rows[1]["metrics"]["cosine"] > 0.999


def test_pixel_codec_errors(monkeypatch, image_folder):
    with pytest.raises(InputError, match="unknown pixel codec 'gif'"):
        pixel_codec_eval([], ["gif"])
    with pytest.raises(InputError, match=r"qualities must be integers in \[0, 100\]"):
        pixel_codec_eval([], ["jpeg"], [101])
    from PIL import features

    monkeypatch.setattr(features, "check", lambda name: name != "avif")
    with pytest.raises(InputError, match="cannot write AVIF"):
        pixel_codec_eval([], ["avif"])


def test_equal_fidelity_ratio_picks_the_cheapest_good_quality():
    rows = [{"codec": "pq", "bpp": 0.001, "metrics": {"zs_top1": 0.8}}]
    pixel = [{"family": "jpeg", "quality": q, "bpp": b, "metrics": {"zs_top1": a}}
             for q, b, a in [(5, 0.1, 0.7), (10, 0.2, 0.85), (20, 0.4, 0.9)]]
    (out,) = equal_fidelity_ratios(rows, pixel, "zs_top1")
    assert out["pixel_quality"] == 10 and out["bitrate_fraction"] == pytest.approx(0.005)
    assert not out["at_lowest_quality"]
    (low,) = equal_fidelity_ratios([{"codec": "sign", "bpp": 0.01, "metrics": {"zs_top1": 0.6}}], pixel, "zs_top1")
    assert low["pixel_quality"] == 5 and low["at_lowest_quality"]  # a fraction that is only a lower bound
    (none,) = equal_fidelity_ratios([{"codec": "f16", "bpp": 0.1, "metrics": {"zs_top1": 0.95}}], pixel, "zs_top1")
    assert none["pixel_bpp"] is None and none["bitrate_fraction"] is None


# ---- the CLI end to end --------------------------------------------------------------------------------
def test_cli_eval_writes_json_and_png(flat_npz, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="plots need the `eval` extra (matplotlib)")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    rc = main(["eval", str(flat_npz), "--codecs", "f16,sign,pq:M=4,K=16,opq=0", "--codecs", "int8",
               "--json-out", str(out), "--plot", str(png)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert [r["codec"] for r in report["rows"]] == ["f16", "sign", "pq:M=4,K=16,opq=0", "int8"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "zs@1" in text and "evaluated items themselves" in text


def test_cli_eval_with_training_data(flat_npz, tmp_path):
    X, _, _ = _clustered(64, 32, 3, seed=9)
    np.savez(tmp_path / "pool.npz", a=X, b=X[:10])
    out = tmp_path / "r.json"
    rc = main(["eval", str(flat_npz), "--codecs", "int8", "--train", f"{tmp_path}/pool.npz:a",
               "--train", f"{tmp_path}/pool.npz:b", "--json-out", str(out)])
    assert rc == 0 and "(74 vectors)" in json.loads(out.read_text())["training"]


def test_cli_eval_schema_error_exit_code(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", test_features=np.ones((3, 4)))
    assert main(["eval", str(tmp_path / "bad.npz"), "--codecs", "f16"]) == 2
    assert "missing 'test_labels'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "bad.npz"), "--codecs", "nope:x=1"]) == 2


def test_cli_eval_image_folder_with_pixel_codecs(monkeypatch, image_folder, tmp_path, capsys):
    import semzip.eval.datasets as datasets

    pytest.importorskip("matplotlib", reason="plots need the `eval` extra (matplotlib)")
    monkeypatch.setattr(datasets, "clip_embedders", lambda *a, **k: (fake_image_embedder, fake_text_embedder))
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    rc = main(["eval", str(image_folder), "--codecs", "f16,sign", "--model", "ViT-B-32:openai",
               "--pixel-codecs", "jpeg,webp", "--qualities", "5,50", "--json-out", str(out), "--plot", str(png)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["pixels_known"] and len(report["pixel_codecs"]) == 4 and report["model"] == "ViT-B-32:openai"
    assert report["equal_fidelity"]["metric"] == "zs_top1" and png.is_file()
    assert "Bit rate at equal zs@1" in capsys.readouterr().out


def test_cli_pixelcodecs_rates_only(image_folder, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["pixelcodecs", str(image_folder), "--codecs", "jpeg", "--qualities", "10,40",
                 "--json-out", str(out)]) == 0
    rows = json.loads(out.read_text())["pixel_codecs"]
    assert [r["quality"] for r in rows] == [10, 40] and rows[0]["images"] == 15
    assert "rates only" in capsys.readouterr().out
    assert main(["eval", str(image_folder), "--codecs", "f16"]) == 2  # a folder needs --model


# ---- real CLIP data ----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_zeroshot_caltech_reference_matches_the_file(shared_data):
    path = shared_data / "clip-vit-b-32" / "zeroshot_caltech101.npz"
    ds = load_dataset(path)
    report = evaluate(ds, ["f16"])
    with np.load(path) as data:
        expected = float(data["reference_top1"])
    assert report["reference"]["metrics"]["zs_top1"] == pytest.approx(expected, abs=1e-9)
    assert report["rows"][0]["metrics"]["zs_top1"] == pytest.approx(expected, abs=2e-3)


def test_class_names_become_zero_shot_classifiers_with_a_text_embedder(tmp_path, capsys):
    X = fake_text_embedder(["red", "green", "blue", "red"])
    np.savez(tmp_path / "named.npz", image_features=X, labels=np.array([0, 1, 2, 0]),
             classnames=np.array(["red", "green", "blue"]))
    assert load_dataset(tmp_path / "named.npz").tasks == []
    ds = load_dataset(tmp_path / "named.npz", text_embedder=fake_text_embedder)
    assert ds.tasks == ["zero-shot"] and zero_shot_topk(ds.items, ds.text_features, ds.labels) == 1.0
    assert main(["eval", str(tmp_path / "named.npz"), "--codecs", "f16"]) == 0
    assert "zero-shot skipped" in capsys.readouterr().err


def test_shipped_coco_pairs_reproduce_the_documented_retrieval():
    from importlib import resources

    with resources.as_file(resources.files("semzip") / "data" / "coco500_vit_b_16.npz") as path:
        ds = load_dataset(path)
    report = evaluate(ds, ["f16"])
    ref = report["reference"]["metrics"]
    assert ds.tasks == ["retrieval"] and ds.model == "ViT-B-16:openai"
    assert (ref["i2t@1"], ref["t2i@1"]) == (0.552, 0.506)  # data/README.md's uncompressed figures
    assert report["rows"][0]["relative"]["i2t@10"] == pytest.approx(1.0, abs=0.01)


def test_eval_image_folder_through_the_real_clip_front_end(image_folder, tmp_path):
    """End to end through semzip.embed (load_model from a local weights folder, embed_paths,
    class_embeddings) with a tiny randomly initialised CLIP: checks the wiring, not accuracy."""
    pytest.importorskip("torch", reason="the CLIP front-end needs torch")
    embed = pytest.importorskip("semzip.embed", reason="semzip.embed (branch issue-3-embed) is not merged yet")
    import torch
    from safetensors.torch import save_file

    cfg = {"embed_dim": 24, "quick_gelu": True,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = embed.build_model(cfg, "tiny:random", seed=0)
        weights = tmp_path / "weights"
        weights.mkdir()
        (weights / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
        save_file({k: v.contiguous() for k, v in model.module.state_dict().items()},
                  str(weights / "open_clip_model.safetensors"))
        out = tmp_path / "r.json"
        (image_folder / next(iter(COLOURS)) / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # skipped
        rc = main(["eval", str(image_folder), "--codecs", "f16,sign", "--model", "tiny:random", "--weights",
                   str(weights), "--templates", "a photo of {}.", "--pixel-codecs", "jpeg", "--qualities", "5",
                   "--json-out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["dim"] == 24 and report["items"] == 15 and report["model"] == "tiny:random"
    assert report["rows"][0]["metrics"]["zs_top1"] == report["reference"]["metrics"]["zs_top1"]
    assert report["pixel_codecs"][0]["metrics"]["cosine"] > 0.5


def test_cli_eval_reports_a_failed_codec_as_a_row_and_goes_on(flat_npz, tmp_path, capsys):
    """smic:bits=4 cannot be met on 300 items: its row says why, the codecs around it are still measured."""
    out = tmp_path / "r.json"
    rc = main(["eval", str(flat_npz), "--codecs", "f16,smic:bits=4,sign", "--json-out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["codec"] for r in rows] == ["f16", "smic:bits=4", "sign"]
    assert "cannot be met" in rows[1]["error"] and "metrics" not in rows[1]
    assert "zs_top1" in rows[0]["metrics"] and "zs_top1" in rows[2]["metrics"]
    assert "smic:bits=4 failed" in printed


def test_plot_format_variants_and_seed_spread(flat_npz, tmp_path, capsys):
    """The suffix names the format; opq=0 and opq=1 are separate curves; seeds give one point with a bar."""
    from semzip.eval.plot import _points, _variant

    out = tmp_path / "r.json"
    rc = main(["eval", str(flat_npz), "--codecs", "f16,pq:M=4,K=16,opq=0,pq:M=8,K=16,opq=0,pq:M=8,K=16,opq=1",
               "--seeds", "0,1,2", "--json-out", str(out), "--plot", str(tmp_path / "r.pdf")])
    assert rc == 0 and (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    rows = json.loads(out.read_text())["rows"]
    assert sum(r["codec"] == "f16" for r in rows) == 1 and sum(r["codec"] == "pq:M=8,K=16,opq=1" for r in rows) == 3
    assert {_variant(r) for r in rows} == {"f16", "pq K=16,opq=0", "pq K=16,opq=1"}
    pts = _points([r for r in rows if _variant(r) == "pq K=16,opq=0"], "payload_bits_per_item", "cosine")
    assert len(pts) == 2 and all(lo <= mean <= hi for _, mean, lo, hi in pts) and pts[0][0] < pts[1][0]
    main(["eval", str(flat_npz), "--codecs", "f16", "--plot", str(tmp_path / "r.svg")])
    assert b"<svg" in (tmp_path / "r.svg").read_bytes()[:400]
    assert main(["eval", str(flat_npz), "--codecs", "f16", "--plot", str(tmp_path / "r.jpg")]) == 2
    assert "name it .png, .pdf or .svg" in capsys.readouterr().err


def test_a_stack_is_a_curve_of_its_stages_families():
    from semzip.eval.plot import _variant

    rows = [{"codec": c, "family": "stack"} for c in ("pq:M=4,K=16+bq:D=8", "pq:M=8,K=16+bq:D=16", "coarse:bits=4+rq:M=2")]
    assert [_variant(r) for r in rows] == ["pq+bq", "pq+bq", "coarse+rq"]
