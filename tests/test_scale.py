"""Scale-out pipeline (Ray Data, local mode) and sharded collections: results equal the single-process path,
a crashed run resumes with no item lost or duplicated, and a resume with other settings is refused."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from semzip import CodecMismatchError, FormatError, InputError, make_codec, save_codec
from semzip.cli import main
from semzip.shards import ShardedArchive, open_collection, read_manifest
from semzip.container import Archive, ArchiveLike, write_archive

from .utils import unit_rows

if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
    pytest.skip("needs Ray Data (pip install 'semzip[ray]')", allow_module_level=True)
try:
    import ray
    import ray.data  # noqa: F401
except ImportError as exc:
    pytest.skip(f"needs Ray Data (pip install 'semzip[ray]'): {exc}", allow_module_level=True)

from semzip.scale import compress_sharded, local_runtime_env, open_source  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    """One small local Ray for the module (2 CPU slots, no dashboard); workers import this checkout."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=local_runtime_env())
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    t = tmp_path_factory.mktemp("scale")
    X = unit_rows(1000, 32, seed=3)
    np.save(t / "x.npy", X)
    codec = make_codec("pq:M=4,K=16,opq=0").fit(unit_rows(300, 32, seed=4))
    save_codec(codec, t / "pq.smzc")
    return t, X, codec


@pytest.fixture(scope="module")
def collection(data, tmp_path_factory):
    """x.npy encoded by 2 workers into 4 shards (300, 300, 300, 100 items)."""
    t, X, codec = data
    out = tmp_path_factory.mktemp("coll") / "out"
    compress_sharded(str(t / "x.npy"), out, t / "pq.smzc", workers=2, shard_items=300)
    return out


def test_sharded_collection_equals_one_archive(data, collection, tmp_path):
    t, X, codec = data
    write_archive(tmp_path / "one.smz", codec, X)
    with Archive.open(tmp_path / "one.smz") as one:
        want = one.decode()
    manifest = read_manifest(collection)
    assert manifest["complete"] and manifest["shards_planned"] == 4 and manifest["items"] == 1000
    assert manifest["codec"]["hash"] == codec.state_hash and manifest["model"] == "unknown"  # x.npy records no model
    assert [s["file"] for s in manifest["shards"]] == [f"shard-0000{i}.smz" for i in range(4)]
    assert [(s["start"], s["stop"], s["items"]) for s in manifest["shards"]] == [
        (0, 300, 300), (300, 600, 300), (600, 900, 300), (900, 1000, 100)]
    with ShardedArchive.open(collection) as coll:
        assert coll.ids == [str(i) for i in range(1000)]
        np.testing.assert_array_equal(coll.decode(), want)
        np.testing.assert_array_equal(coll.get("612"), want[612])
        starts = [s for s, _ in coll.iter_codes()]
        assert starts == sorted(starts) and starts[0] == 0
        assert coll.verify() == []
        info = coll.info()
    on_disk = sum(p.stat().st_size for p in collection.iterdir() if p.name != ".lock")
    assert info["total_bits"] == 8 * on_disk and info["items"] == 1000
    for arc_file in collection.glob("shard-*.smz"):  # shards do not embed the codec
        with Archive.open(arc_file, codec=codec) as arc:
            assert not arc.codec_embedded


def test_archives_and_collections_share_one_reader_interface(data, collection, tmp_path):
    """`open_collection` gives an `ArchiveLike` either way; `archives` is the files, in order."""
    t, X, codec = data
    write_archive(tmp_path / "one.smz", codec, X[:10])
    with open_collection(tmp_path / "one.smz") as one, open_collection(collection) as many:
        assert isinstance(one, ArchiveLike) and isinstance(many, ArchiveLike)
        assert one.archives == [one]
        assert [a.path.name for a in many.archives] == [f"shard-0000{i}.smz" for i in range(4)]
        assert [a.items for a in many.archives] == [300, 300, 300, 100]
        assert sum(a.items for a in many.archives) == many.items
    assert not isinstance(object(), ArchiveLike)


def test_collection_damage_and_wrong_codec_are_refused(data, collection, tmp_path):
    t, X, codec = data
    copy = tmp_path / "c"
    shutil.copytree(collection, copy)
    other = make_codec("pq:M=4,K=16,opq=0").fit(unit_rows(300, 32, seed=5))
    with pytest.raises(CodecMismatchError, match="wrong codec"):
        ShardedArchive.open(copy, codec=other)
    shard = copy / "shard-00001.smz"
    with Archive.open(shard, codec=codec) as arc:
        at = arc.sections[b"DATA"].offset + 3
    raw = bytearray(shard.read_bytes())
    raw[at] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="SHA-256 differs"):
        ShardedArchive.open(copy)
    with ShardedArchive.open(copy, check_hashes=False) as coll:
        problems = coll.verify()
    assert any("SHA-256" in p for p in problems) and any("checksum mismatch" in p for p in problems)
    shard.unlink()
    with pytest.raises(FormatError, match="shard-00001.smz is missing"):
        open_collection(copy / "manifest.json")


def test_crashed_run_resumes_without_loss_or_duplicates(data, tmp_path):
    """A run that dies after 2 shards (here: the callback raises) is finished by the same call."""
    t, X, _ = data
    out = tmp_path / "out"
    seen: list[int] = []

    def crash_after_two(record):
        seen.append(record["index"])
        if len(seen) == 2:
            raise RuntimeError("injected crash")

    with pytest.raises(RuntimeError, match="injected crash"):
        compress_sharded(str(t / "x.npy"), out, "sign", workers=2, shard_items=150, fit_items=400, seed=7,
                         on_shard=crash_after_two)
    half = read_manifest(out)
    assert not half["complete"] and sorted(s["index"] for s in half["shards"]) == sorted(seen)
    kept = {s["file"]: (out / s["file"]).stat().st_mtime_ns for s in half["shards"]}
    (out / ".shard-00006.smz.abc.tmp").write_bytes(b"half-written")  # what a killed writer leaves
    unrecorded = next(i for i in range(7) if i not in seen)
    (out / f"shard-{unrecorded:05d}.smz").write_bytes(b"garbage")  # a shard file the manifest does not name
    with pytest.raises(InputError, match="unfinished"):
        ShardedArchive.open(out)

    redone: list[int] = []
    manifest = compress_sharded(str(t / "x.npy"), out, "sign", workers=2, shard_items=150, fit_items=400, seed=7,
                                on_shard=lambda r: redone.append(r["index"]))
    assert manifest["complete"] and sorted(redone + seen) == list(range(7))
    assert not list(out.glob("*.tmp"))
    assert {f: (out / f).stat().st_mtime_ns for f in kept} == kept  # finished shards were not rewritten
    # the codec was fitted once, on the seeded sample, and reused by the resumed run
    sample = np.sort(np.random.default_rng(7).choice(1000, size=400, replace=False))
    want_codec = make_codec("sign").fit(X[sample])
    assert manifest["codec"]["hash"] == want_codec.state_hash
    with ShardedArchive.open(out) as coll:
        assert coll.ids == [str(i) for i in range(1000)] and coll.verify() == []
        np.testing.assert_array_equal(coll.decode(), want_codec.decode(want_codec.encode(X), 1000))


def test_resume_with_other_settings_is_refused(data, collection, tmp_path):
    t, X, codec = data
    x = str(t / "x.npy")
    other = make_codec("pq:M=4,K=16,opq=0").fit(unit_rows(300, 32, seed=6))
    save_codec(other, tmp_path / "other.smzc")
    with pytest.raises(CodecMismatchError, match="use the same codec"):
        compress_sharded(x, collection, tmp_path / "other.smzc", shard_items=300)
    with pytest.raises(CodecMismatchError, match="codec spec"):
        compress_sharded(x, collection, "sign", shard_items=300)
    with pytest.raises(InputError, match="shard-items 300"):
        compress_sharded(x, collection, t / "pq.smzc", shard_items=200)
    np.save(tmp_path / "y.npy", X[:999])
    with pytest.raises(InputError, match="other inputs"):
        compress_sharded(str(tmp_path / "y.npy"), collection, t / "pq.smzc", shard_items=300)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds files"):
        compress_sharded(x, tmp_path / "busy", t / "pq.smzc")
    with pytest.raises(InputError, match="workers"):
        compress_sharded(x, tmp_path / "w", t / "pq.smzc", workers=0)


def test_bad_rows_in_a_worker_surface_as_input_error(data, tmp_path):
    t, X, _ = data
    bad = X[:200].copy()
    bad[150, 3] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(InputError, match="non-finite|NaN|finite"):
        compress_sharded(str(tmp_path / "bad.npy"), tmp_path / "out", t / "pq.smzc", workers=1, shard_items=100)
    assert [s["index"] for s in read_manifest(tmp_path / "out")["shards"]] in ([], [0])


def test_cli_compress_ray_info_decompress(data, tmp_path, capsys):
    t, X, codec = data
    out = tmp_path / "coll"
    code = main(["compress", str(t / "x.npy"), "--ray", "--workers", "1", "--shard-items", "400",
                 "--codec", str(t / "pq.smzc"), "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "1000 items in 3 shards" in printed and "shard 2: 200 items" in printed
    assert main(["info", str(out / "manifest.json"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["items"] == 1000 and info["shards"] == 3 and info["complete"] is True
    assert main(["decompress", str(out), "-o", str(tmp_path / "x.npy")]) == 0
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0 and "ok:" in capsys.readouterr().out
    D = np.load(tmp_path / "x.npy")
    np.testing.assert_array_equal(D, codec.decode(codec.encode(X), 1000))
    assert main(["search", str(out), "--like", "850", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    top = int(hits[0]["hits"][0]["id"])  # the item itself, or one with the same code
    assert np.isclose(D[top] @ D[850], (D @ D[850]).max(), atol=1e-5)


def test_ids_pixels_and_model_recorded_by_embed_are_kept(data, tmp_path):
    t, X, _ = data
    ids = [f"photos/{i:04d}.jpg" for i in range(250)]
    pixels = np.arange(250) * 100 + 7
    np.savez(tmp_path / "emb.npz", features=X[:250], ids=np.array(ids), pixels=pixels, model=np.array("ViT-L-14:openai"))
    with pytest.raises(InputError, match="embedded with ViT-L-14:openai"):
        compress_sharded(str(tmp_path / "emb.npz"), tmp_path / "bad", t / "pq.smzc", model="ViT-B-16:openai")
    compress_sharded(str(tmp_path / "emb.npz"), tmp_path / "out", t / "pq.smzc", workers=1, shard_items=200)
    with ShardedArchive.open(tmp_path / "out") as coll:
        assert coll.ids == ids and coll.model == "ViT-L-14:openai" and len(coll.archives) == 2
        np.testing.assert_array_equal(coll.pixels, pixels)
        assert coll.info()["pixels"] == int(pixels.sum())


def test_object_store_style_uris_list_like_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.png", "a/b/2.jpg", "c.webp", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(name.encode())
    from_uri = open_source(f"file://{tmp_path}")
    assert from_uri.ids == ["a/1.png", "a/b/2.jpg", "c.webp"]
    assert from_uri.read(1) == b"a/b/2.jpg"
    with pytest.raises(InputError, match="cannot list"):
        open_source(f"file://{tmp_path / 'a' / 'nothing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        open_source(f"file://{tmp_path / 'empty'}")


# ---- images with the tiny test model -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    """14 small photos-like PNGs, one broken file, and the tiny random CLIP saved like a hub repo."""
    from .embed.utils import CLIP_MISSING, TINY_CFG

    if CLIP_MISSING:
        pytest.skip(f"image path needs the CLIP extra ({', '.join(CLIP_MISSING)} missing)")
    from PIL import Image
    from safetensors.torch import save_file

    from semzip.embed import build_model

    t = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    (t / "photos").mkdir()
    for i in range(14):
        h, w = 24 + 3 * i, 40 - i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(t / "photos" / f"p{i:02d}.png")
    (t / "photos" / "p05b.png").write_bytes(b"not a png")
    weights = t / "tiny"
    weights.mkdir()
    model = build_model(TINY_CFG, "ViT-B-32:tiny", seed=0)
    (weights / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, str(weights / "open_clip_model.safetensors"))
    return t / "photos", weights


def test_images_embedded_by_workers_match_single_process(tiny_images, tmp_path):
    import torch

    from semzip.embed import embed_paths, load_model

    photos, weights = tiny_images
    out = tmp_path / "out"
    manifest = compress_sharded(str(photos), out, "sign", workers=2, shard_items=5, fit_items=10,
                                model="ViT-B-32:tiny", weights=weights)
    assert manifest["complete"] and manifest["items"] == 14 and manifest["shards_planned"] == 3
    skipped = [s for rec in manifest["shards"] for s in rec["skipped"]]
    assert [s[0] for s in skipped] == ["p05b.png"]

    torch.set_num_threads(1)
    clip = load_model("ViT-B-32:tiny", weights=weights)
    paths = sorted(photos.iterdir())
    ref = embed_paths(paths, clip, ids=[p.name for p in paths], progress=False, workers=1)
    with ShardedArchive.open(out) as coll:
        assert coll.ids == ref.ids and coll.model == "ViT-B-32:tiny"
        np.testing.assert_array_equal(coll.pixels, ref.pixels)
        codec = coll.codec
        np.testing.assert_allclose(coll.decode(), codec.decode(codec.encode(ref.features), 14), atol=1e-6)


def test_collections_and_archives_open_as_one_list(data, collection, tmp_path):
    """What search reads: a collection's shards and plain archives, flattened; search equals brute force."""
    from semzip.shards import open_archives
    from semzip.search import Collection

    t, X, codec = data
    write_archive(tmp_path / "extra.smz", codec, X[:5], ids=[f"extra{i}" for i in range(5)])
    with open_archives([collection, tmp_path / "extra.smz"]) as arcs:
        assert [a.items for a in arcs] == [300, 300, 300, 100, 5]
        assert all(a.codec.state_hash == codec.state_hash for a in arcs)
        D = np.concatenate([a.decode() for a in arcs])
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        ids = [i for a in arcs for i in a.ids]
        with Collection(arcs) as coll:
            hits = coll.search(X[[7, 650]], k=1)
        assert [list(h) for h in hits.ids] == [[ids[int(np.argmax(D @ q))]] for q in X[[7, 650]]]
    assert all(a._buf.closed for a in arcs)


def test_ray_search_equals_one_process_with_ties_and_batches(data, collection, tmp_path):
    """Ray search over a sharded collection plus archives (one of another codec, holding exact
    duplicates of items in other shards, so scores tie across shards): the same ids in the same
    order and bitwise the same scores as Collection.search, for a batch of queries."""
    from semzip.shards import open_archives
    from semzip.scale._search import search_ray
    from semzip.search import Collection

    t, X, codec = data
    write_archive(tmp_path / "dup.smz", codec, X[[5, 400, 950]], ids=["d5", "d400", "d950"])
    write_archive(tmp_path / "int8.smz", make_codec("int8").fit(X), X[:50], ids=[f"i{j}" for j in range(50)])
    paths = [collection, tmp_path / "dup.smz", tmp_path / "int8.smz"]
    Q = np.concatenate([X[[5, 400, 950]], unit_rows(37, 32, seed=9)])
    with open_archives(paths) as arcs, Collection(arcs) as coll:
        want = coll.search(Q, 12)
        want_raw = coll.search(Q, 7, normalize=False, rerank=20)
        got = search_ray(coll, Q, 12)
        whole = search_ray(coll, Q[:1], 1053)  # "5" (shard 0) and "d5" (dup.smz) share a code: a tie
        got_raw = search_ray(coll, Q, 7, normalize=False, rerank=20)
    assert got.ids == want.ids and got.scores.tobytes() == want.scores.tobytes()
    np.testing.assert_array_equal(got.sources, want.sources)
    np.testing.assert_array_equal(got.positions, want.positions)
    row = whole.ids[0]
    assert row.index("5") < row.index("d5") and whole.scores[0][row.index("5")] == whole.scores[0][row.index("d5")]
    assert got_raw.ids == want_raw.ids and got_raw.scores.tobytes() == want_raw.scores.tobytes()
    with Collection([tmp_path / "dup.smz"]) as coll:
        assert len(search_ray(coll, Q[:1], 10).ids[0]) == 3  # k above the items: all of them
    write_archive(tmp_path / "shared.smz", codec, X[:40], embed_codec=False)  # `codec` has coded: it holds coders
    with Collection([tmp_path / "shared.smz"], codec=codec) as coll:
        assert search_ray(coll, Q, 5).ids == coll.search(Q, 5).ids


def test_ray_search_skips_a_collections_deleted_items(data, collection, tmp_path):
    """Tombstones travel to the workers: each shard task skips the items the manifest deleted, and the
    merged top-k equals the single process's (ids, positions and bitwise scores)."""
    from semzip.scale._search import search_ray
    from semzip.search import Collection
    from semzip.shards import delete_from_collection

    t, X, _ = data
    shutil.copytree(collection, tmp_path / "c")
    gone = [str(i) for i in (5, 7, 299, 300, 650)] + [str(i) for i in range(900, 1000)]
    delete_from_collection(tmp_path / "c", gone)
    Q = X[[5, 7, 650, 10]]
    with ShardedArchive.open(tmp_path / "c") as coll, Collection(coll.archives) as search:
        want, got = search.search(Q, 12), search_ray(search, Q, 12)
    assert got.ids == want.ids and got.scores.tobytes() == want.scores.tobytes()
    np.testing.assert_array_equal(got.positions, want.positions)
    assert not set(gone) & {i for row in got.ids for i in row}


def test_cli_search_ray(data, collection, capsys):
    t, X, _ = data
    np.save(t / "q.npy", X[:3])
    assert main(["search", str(collection), "--vector", str(t / "q.npy"), "-k", "4", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert main(["search", str(collection), "--vector", str(t / "q.npy"), "-k", "4", "--ray", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == one


def test_a_sharded_collection_is_indexed_per_shard_and_searched_as_one(data, collection, tmp_path, capsys):
    """`index FOLDER` gives every shard its own index; `search FOLDER --nprobe` merges them; the
    folder stays a collection its run can resume (the indexes are not foreign files to it)."""
    t, X, codec = data
    folder = tmp_path / "c"
    shutil.copytree(collection, folder)
    assert main(["index", str(folder), "--nlist", "8", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert [r["path"].rsplit("/", 1)[1] for r in made] == [f"shard-0000{i}.smz.ivf" for i in range(4)]
    np.save(tmp_path / "q.npy", X[[5, 305, 950]] + 0.01)
    base = ["search", str(folder), "--vector", str(tmp_path / "q.npy"), "-k", "7", "--json"]
    assert main(base) == 0
    flat = json.loads(capsys.readouterr().out)
    assert main(base + ["--nprobe", "8"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [[h["id"] for h in r["hits"]] for r in got] == [[h["id"] for h in r["hits"]] for r in flat]
    assert {h["id"] for r in got for h in r["hits"]} & {str(i) for i in range(300, 1000)}  # not one shard's
    np.testing.assert_allclose([[h["score"] for h in r["hits"]] for r in got],
                               [[h["score"] for h in r["hits"]] for r in flat], atol=1e-6)
    assert main(["index", str(folder), "-o", str(tmp_path / "one.ivf")]) == 2
    assert "names one index file" in capsys.readouterr().err
    manifest = compress_sharded(str(t / "x.npy"), folder, t / "pq.smzc", workers=2, shard_items=300)
    assert len(manifest["shards"]) == 4  # resumed with nothing to redo, the indexes left in place
    assert all((folder / f"shard-0000{i}.smz.ivf").is_file() for i in range(4))
