"""Deletes in a sharded collection: tombstones in the manifest, honoured by every reader (ids, decode,
search, IVF search, export), purged by `compact`, which rewrites only the shards holding them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from semzip import FormatError, InputError, make_codec
from semzip.cli import main
from semzip.codecs import available_codecs, codec_class, load_codec
from semzip.compaction import purge_collection
from semzip.container import Archive
from semzip.search import Collection
from semzip.search._export import export_faiss
from semzip.search._ivf import build_ivf, search_ivf
from semzip.shards import MANIFEST_NAME, ShardedArchive, delete_from_collection, file_sha256, shard_name

from .utils import unit_rows, write_collection

SPECS = [codec_class(name).example_specs[0] for name in available_codecs()]
IDS = [f"img{i:03d}" for i in range(300)]
#: Across all three shards: first and last items, a whole block (64..95 of shard 0), and shard 2 whole.
GONE = [IDS[i] for i in (0, 5, 99, 100, 150, 199)] + IDS[64:96] + IDS[200:]


def _collection(tmp_path, spec: str, **archive) -> tuple[object, np.ndarray]:
    X = unit_rows(360, 64, seed=81)
    codec = make_codec(spec).fit(X)
    write_collection(tmp_path / "c", codec, X[:300], IDS, 100, block_items=32, **archive)
    with ShardedArchive.open(tmp_path / "c") as coll:
        return codec, coll.decode()


@pytest.mark.parametrize("spec", SPECS)
def test_tombstoned_items_are_gone_for_every_reader_and_the_rest_decode_exactly(tmp_path, spec):
    codec, before = _collection(tmp_path, spec, pixels=np.arange(300) + 7)
    files = {p.name: file_sha256(p) for p in (tmp_path / "c").glob("shard-*.smz")}
    assert json.loads((tmp_path / "c" / MANIFEST_NAME).read_text())["version"] == 1  # readable by older semzip
    report = delete_from_collection(tmp_path / "c", GONE)
    assert json.loads((tmp_path / "c" / MANIFEST_NAME).read_text())["version"] == 2  # which must refuse it
    keep = np.array([i not in set(GONE) for i in IDS])
    assert report == {"deleted": len(GONE), "items": int(keep.sum()), "shards_touched": 3, "tombstones": len(GONE)}
    assert {p.name: file_sha256(p) for p in (tmp_path / "c").glob("shard-*.smz")} == files  # no shard touched
    with ShardedArchive.open(tmp_path / "c") as coll:
        assert coll.ids == [i for i, k in zip(IDS, keep) if k] and coll.items == int(keep.sum())
        np.testing.assert_array_equal(coll.decode(), before[keep])
        np.testing.assert_array_equal(coll.pixels, (np.arange(300) + 7)[keep])
        np.testing.assert_array_equal(coll.get("img101"), before[101])
        with pytest.raises(InputError):
            coll.get("img005")
        assert len(coll.archives) == 2 and coll.verify() == []  # shard 2 holds nothing left to read
        assert coll.info()["deleted"] == len(GONE) and coll.info()["items"] == int(keep.sum())
    with purged_copy(tmp_path) as purged:
        np.testing.assert_array_equal(purged.decode(), before[keep])


class purged_copy:
    """The collection at tmp_path/c copied and purged, open for the block."""

    def __init__(self, tmp_path):
        shutil.copytree(tmp_path / "c", tmp_path / "p")
        self.report = purge_collection(tmp_path / "p")
        self.coll = ShardedArchive.open(tmp_path / "p")

    def __enter__(self) -> ShardedArchive:
        return self.coll

    def __exit__(self, *exc) -> None:
        self.coll.close()


def test_search_and_export_skip_deleted_items_and_match_the_purged_collection(tmp_path):
    codec, before = _collection(tmp_path, "pq:M=8,K=16,opq=1")
    delete_from_collection(tmp_path / "c", GONE)
    keep = np.array([i not in set(GONE) for i in IDS])
    kept_ids = [i for i, k in zip(IDS, keep) if k]
    Q = unit_rows(7, 64, seed=5)
    with ShardedArchive.open(tmp_path / "c") as coll, Collection(coll.archives) as search:
        hits = search.search(Q, 20)
        info = export_faiss(coll, tmp_path / "c.index")
    D = before[keep] / np.linalg.norm(before[keep], axis=1, keepdims=True)
    brute = [[kept_ids[j] for j in np.argsort(-(D @ q), kind="stable")[:20]] for q in Q]
    assert hits.ids == brute and not set(GONE) & {i for row in hits.ids for i in row}
    import faiss

    index = faiss.read_index(str(tmp_path / "c.index"))
    assert info["items"] == index.ntotal == int(keep.sum())
    with purged_copy(tmp_path) as purged, Collection(purged.archives) as search:
        again = search.search(Q, 20)
    assert again.ids == hits.ids and again.scores.tobytes() == hits.scores.tobytes()


def test_shard_indexes_stay_valid_across_deletes_and_are_carried_through_the_purge(tmp_path):
    _collection(tmp_path, "pq:M=8,K=16,opq=1")
    with ShardedArchive.open(tmp_path / "c") as coll:
        for arc in coll.archives:
            build_ivf(arc, nlist=4)
    delete_from_collection(tmp_path / "c", GONE)
    Q = unit_rows(9, 64, seed=6)
    with ShardedArchive.open(tmp_path / "c") as coll, Collection(coll.archives) as search:
        flat = search.search(Q, 10)
        every = search_ivf(coll.archives, Q, 10, nprobe=4)  # every list: the flat search
        some = search_ivf(coll.archives, Q, 10, nprobe=1)
        build_ivf(coll.archives[0], tmp_path / "rebuilt.ivf", nlist=4)  # indexes what the file stores
    assert every.ids == flat.ids and not set(GONE) & {i for row in some.ids for i in row}
    copy = purged_copy(tmp_path)
    with copy as purged:
        reports = {r["path"].rsplit("/", 1)[-1]: r["status"] for r in copy.report["indexes"]}
        assert reports == {"shard-00000-1.smz.ivf": "updated", "shard-00001-1.smz.ivf": "updated"}
        assert search_ivf(purged.archives, Q, 10, nprobe=1).ids == some.ids
        assert search_ivf(purged.archives, Q, 10, nprobe=4).ids == flat.ids
    assert sorted(p.name for p in (tmp_path / "p").iterdir() if not p.name.startswith(".")) == [
        "codec.smzc", "manifest.json", "shard-00000-1.smz", "shard-00000-1.smz.ivf", "shard-00001-1.smz",
        "shard-00001-1.smz.ivf"]


def test_purge_rewrites_only_the_shards_with_deletes_and_records_them(tmp_path):
    _collection(tmp_path, "pq:M=8,K=16,opq=1")
    untouched = file_sha256(tmp_path / "c" / shard_name(1))
    delete_from_collection(tmp_path / "c", ["img003", "img250"])
    delete_from_collection(tmp_path / "c", ["img004"])  # tombstones accumulate
    report = purge_collection(tmp_path / "c")
    assert report["purged"] == 3 and report["shards_rewritten"] == 2 and report["items"] == 297
    assert report["bytes_after"] < report["bytes_before"]
    m = json.loads((tmp_path / "c" / MANIFEST_NAME).read_text())
    assert m["version"] == 2 and m["items"] == 297
    first, second, third = m["shards"]
    assert (first["file"], first["generation"], first["purged"], first["items"]) == ("shard-00000-1.smz", 1, 2, 98)
    assert second["file"] == shard_name(1) and second["sha256"] == untouched and "deleted" not in second
    assert third["file"] == "shard-00002-1.smz" and "deleted" not in third
    assert not (tmp_path / "c" / shard_name(0)).exists() and not (tmp_path / "c" / shard_name(2)).exists()
    assert purge_collection(tmp_path / "c")["shards_rewritten"] == 0  # nothing left to purge
    delete_from_collection(tmp_path / "c", [i for i in IDS[200:] if i != "img250"])  # the rest of shard 2
    purge_collection(tmp_path / "c")
    with ShardedArchive.open(tmp_path / "c") as coll:
        assert coll.items == 198 and coll.manifest["shards"][2]["file"] is None and coll.verify() == []


def test_a_purge_that_dies_before_its_switch_leaves_the_collection_as_it_was(tmp_path, monkeypatch):
    import semzip.compaction as compaction

    _, before = _collection(tmp_path, "pq:M=8,K=16,opq=1")
    delete_from_collection(tmp_path / "c", GONE)
    manifest = (tmp_path / "c" / MANIFEST_NAME).read_bytes()

    def dies(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr(compaction, "write_manifest", dies)
    with pytest.raises(OSError):
        purge_collection(tmp_path / "c")
    monkeypatch.undo()
    assert (tmp_path / "c" / MANIFEST_NAME).read_bytes() == manifest
    assert (tmp_path / "c" / "shard-00000-1.smz").exists()  # written, never named
    keep = np.array([i not in set(GONE) for i in IDS])
    with ShardedArchive.open(tmp_path / "c") as coll:
        np.testing.assert_array_equal(coll.decode(), before[keep])
    purge_collection(tmp_path / "c")
    with ShardedArchive.open(tmp_path / "c") as coll:
        np.testing.assert_array_equal(coll.decode(), before[keep])
        assert sorted(p.name for p in (tmp_path / "c").glob("shard-*")) == ["shard-00000-1.smz", "shard-00001-1.smz"]


def test_a_damaged_shard_is_not_purged(tmp_path):
    _collection(tmp_path, "pq:M=8,K=16,opq=1")
    delete_from_collection(tmp_path / "c", ["img003"])
    manifest = (tmp_path / "c" / MANIFEST_NAME).read_bytes()
    shard = tmp_path / "c" / shard_name(0)
    with Archive.open(shard, codec=load_codec(tmp_path / "c" / "codec.smzc")) as arc:
        at = arc.sections[b"DATA"].offset + 3  # a coded block's byte: opening the collection does not read it
    data = bytearray(shard.read_bytes())
    data[at] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="SHA-256 differs"):
        purge_collection(tmp_path / "c")
    assert (tmp_path / "c" / MANIFEST_NAME).read_bytes() == manifest


def test_bad_deletes_change_nothing(tmp_path):
    _collection(tmp_path, "pq:M=8,K=16,opq=1")
    manifest = (tmp_path / "c" / MANIFEST_NAME).read_bytes()
    for ids, message in ((["img001", "nope"], "not in"), (IDS, "deleting all"), ([], "no ids")):
        with pytest.raises(InputError, match=message):
            delete_from_collection(tmp_path / "c", ids)
    assert (tmp_path / "c" / MANIFEST_NAME).read_bytes() == manifest
    delete_from_collection(tmp_path / "c", ["img001"])
    with pytest.raises(InputError, match="not in"):  # deleted once: unknown now
        delete_from_collection(tmp_path / "c", ["img001"])
    with pytest.raises(FormatError, match="leave an item"):
        ShardedArchive.open(tmp_path / "c").archives[0].tombstone([2])  # tombstones are given once


def test_cli_delete_ls_search_and_compact_a_collection(tmp_path, capsys):
    _collection(tmp_path, "pq:M=8,K=16,opq=1")
    folder = str(tmp_path / "c")
    (tmp_path / "gone.txt").write_text("\n".join(GONE) + "\n")
    assert main(["delete", folder, "--ids", str(tmp_path / "gone.txt")]) == 0
    assert "until `semzip compact" in capsys.readouterr().out
    assert main(["ls", folder, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [i for i in IDS if i not in set(GONE)]
    assert main(["search", folder, "--like", "img005"]) != 0  # a deleted item is no query
    capsys.readouterr()
    assert main(["delete", folder, "img005"]) == 2 and "not in" in capsys.readouterr().err
    assert main(["compact", folder, "--spec", "pq:M=4"]) != 0 and "only purges" in capsys.readouterr().err
    assert main(["compact", folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["purged"] == len(GONE)
    assert main(["info", folder, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["items"] == 300 - len(GONE) and info["deleted"] == 0 and info["purged"] == len(GONE)
