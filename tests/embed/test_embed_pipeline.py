"""embed_paths / embed_texts with the tiny model: batching, workers, failures, the cache, zero-shot."""

from __future__ import annotations

from .utils import require_clip

require_clip()

import shutil
from pathlib import Path

import numpy as np
import pytest
from .utils import PHOTOS
from PIL import Image

from semzip import InputError
from semzip.embed import (
    EmbeddingCache,
    class_embeddings,
    decode_image,
    embed_paths,
    embed_texts,
    load_model,
    resolve_templates,
    to_pixels,
    zero_shot,
)


@pytest.fixture
def images(photo_dir, tmp_path) -> list[Path]:
    """Four real photos plus two derived variants (a JPEG and a grayscale PNG)."""
    out = []
    for name in PHOTOS:
        out.append(tmp_path / name)
        shutil.copy(photo_dir / name, out[-1])
    with Image.open(photo_dir / "chelsea.png") as img:
        img.convert("RGB").save(tmp_path / "chelsea.jpg", quality=90)
        img.convert("L").save(tmp_path / "chelsea-gray.png")
    return out + [tmp_path / "chelsea.jpg", tmp_path / "chelsea-gray.png"]


def test_embed_paths_matches_a_plain_loop(images, tiny_model):
    got = embed_paths(images, tiny_model, batch_size=4, workers=2, progress=False)
    pixels = []
    for p in images:
        img = decode_image(p.read_bytes())
        pixels.append(to_pixels(img, tiny_model.preprocess))
    ref = tiny_model.encode_images(np.stack(pixels))
    assert got.features.shape == (6, 24) and got.features.dtype == np.float32
    np.testing.assert_allclose(got.features, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got.features, axis=1), 1, atol=1e-5)
    assert got.ids == [p.as_posix() for p in images] and got.model_id == "tiny-test:random"
    assert got.pixels.tolist() == [512 * 512, 451 * 300, 400 * 600, 640 * 427, 451 * 300, 451 * 300]
    assert got.failures == [] and got.cached == 0


@pytest.mark.parametrize("batch_size,workers", [(1, 1), (5, 3), (64, 2)])
def test_batching_and_workers_do_not_change_results(images, tiny_model, batch_size, workers):
    base = embed_paths(images, tiny_model, batch_size=2, workers=1, progress=False)
    got = embed_paths(images, tiny_model, batch_size=batch_size, workers=workers, progress=False)
    np.testing.assert_allclose(got.features, base.features, atol=1e-5)
    assert got.ids == base.ids


def test_bad_files_are_reported_and_skipped(images, tiny_model, tmp_path, caplog):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((tmp_path / "chelsea.jpg").read_bytes()[:2000])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.gif"
    empty.write_bytes(b"")
    paths = [images[0], broken, images[1], text, empty, tmp_path / "gone.png", images[2]]
    ids = [f"id{i}" for i in range(len(paths))]
    got = embed_paths(paths, tiny_model, ids=ids, batch_size=2, progress=False)
    assert got.ids == ["id0", "id2", "id6"]
    assert [f.id for f in got.failures] == ["id1", "id3", "id4", "id5"]
    reasons = {Path(f.path).name: f.reason for f in got.failures}
    assert "not an image file" in reasons["notes.png"] and reasons["empty.gif"] == "empty file"
    assert "truncated" in reasons["broken.jpg"] and "cannot read" in reasons["gone.png"]
    assert "skipping" in caplog.text and "broken.jpg" in caplog.text
    good = embed_paths([images[0], images[1], images[2]], tiny_model, progress=False)
    np.testing.assert_allclose(got.features, good.features, atol=1e-5)

    with pytest.raises(InputError, match="broken.jpg: .*truncated"):
        embed_paths(paths, tiny_model, strict=True, progress=False)


def test_cache_skips_work_already_done(images, tiny_model, tmp_path, monkeypatch):
    db = tmp_path / "cache.sqlite"
    first = embed_paths(images, tiny_model, cache=db, batch_size=4, progress=False)
    calls = []
    original = type(tiny_model).encode_images
    monkeypatch.setattr(tiny_model, "encode_images", lambda x: calls.append(len(x)) or original(tiny_model, x))
    again = embed_paths(images, tiny_model, cache=db, batch_size=4, progress=False)
    assert again.cached == 6 and calls == []
    np.testing.assert_array_equal(again.features, first.features)
    np.testing.assert_array_equal(again.pixels, first.pixels)

    with Image.open(images[1]) as img:  # new content for one file: only that one is embedded
        img.rotate(90, expand=True).save(images[1])
    changed = embed_paths(images, tiny_model, cache=db, batch_size=4, progress=False)
    assert changed.cached == 5 and calls == [1]
    assert not np.allclose(changed.features[1], first.features[1])

    with EmbeddingCache(db) as cache:  # a different preprocessing is a different model key
        assert len(cache.digests("other-model|x|y")) == 0


def test_cache_is_per_model(images, tiny_model, tiny_weights_dir, tmp_path):
    db = tmp_path / "cache.sqlite"
    embed_paths(images[:2], tiny_model, cache=db, progress=False)
    loaded = load_model("ViT-B-32:tiny", weights=tiny_weights_dir)  # same weights, other name/preprocessing
    got = embed_paths(images[:2], loaded, cache=db, progress=False)
    assert got.cached == 0 and got.model_id == f"custom:sha256-{loaded.fingerprint}"  # its config is not ViT-B-32


def test_embed_paths_loads_a_model_by_name(images, tiny_weights_dir):
    got = embed_paths(images[:2], "ViT-B-32:tiny", weights=tiny_weights_dir, progress=False)
    assert got.features.shape == (2, 24)


def test_embed_paths_validates_arguments(images, tiny_model):
    with pytest.raises(InputError, match="no images"):
        embed_paths([], tiny_model)
    with pytest.raises(InputError, match="batch_size"):
        embed_paths(images, tiny_model, batch_size=0)
    with pytest.raises(InputError, match="2 ids for 6 paths"):
        embed_paths(images, tiny_model, ids=["a", "b"])
    with pytest.raises(InputError, match="weights= applies to a model name"):
        embed_paths(images, tiny_model, weights="x")


def test_text_embeddings_and_template_ensembles(tiny_model):
    texts = ["a photo of a cat.", "a photo of a dog."]
    emb = embed_texts(texts, tiny_model, batch_size=1)
    assert emb.shape == (2, 24)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(emb, embed_texts(texts, tiny_model), atol=1e-5)
    np.testing.assert_allclose(class_embeddings(["cat", "dog"], "photo", tiny_model), emb, atol=1e-5)

    ens = class_embeddings(["cat", "dog"], ["a {} here", "the {c}."], tiny_model)
    parts = embed_texts(["a cat here", "the cat."], tiny_model)
    mean = parts.mean(axis=0)
    np.testing.assert_allclose(ens[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_template_sets():
    assert len(resolve_templates("openai")) == 80 and len(resolve_templates("simple")) == 7
    assert resolve_templates("photo") == ["a photo of a {}."]
    assert resolve_templates("art of a {}") == ["art of a {}"]
    with pytest.raises(InputError, match="no '\\{\\}' or '\\{c\\}'"):
        resolve_templates(["a photo"])
    with pytest.raises(InputError, match="distinct"):
        class_embeddings(["cat", "cat"], "photo", model=None)


def test_zero_shot_picks_the_most_similar_class():
    classes = np.eye(3, dtype=np.float32)
    feats = np.array([[0.1, 0.9, 0.0], [2.0, 0.0, 1.0]], dtype=np.float32)
    best, score = zero_shot(feats, classes)
    assert best.tolist() == [1, 0]
    np.testing.assert_allclose(score, [0.9 / np.hypot(0.1, 0.9), 2 / np.sqrt(5)], rtol=1e-6)


@pytest.mark.parametrize("overlap", [True, False])
def test_ordered_yields_in_input_order(overlap):
    """The decode scheduler: in order, and every index once, whether or not it runs ahead (GPU) or not (CPU)."""
    import random
    import time
    from concurrent.futures import ThreadPoolExecutor

    from semzip.embed._pipeline import _ordered

    delays = [random.Random(i).random() * 0.003 for i in range(23)]

    def work(i):
        time.sleep(delays[i])
        return i * i

    with ThreadPoolExecutor(4) as pool:
        assert list(_ordered(pool, work, 23, window=5, overlap=overlap)) == [i * i for i in range(23)]
        assert list(_ordered(pool, work, 0, window=5, overlap=overlap)) == []
