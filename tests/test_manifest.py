"""Tampered `manifest.json` files: each is refused with semzip's own error naming the problem.

The collection is written the way `semzip.scale` writes one (shards without the codec, then the
manifest) but without Ray, so these run on every machine.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from semzip import FormatError, InputError, make_codec
from semzip.cli import main
from semzip.shards import MANIFEST_NAME, ShardedArchive, open_collection, shard_name
from semzip.container import write_archive

from .utils import unit_rows, write_collection

SIZE = 500


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """1,500 items in three shards of 500, as `semzip.scale` lays them out."""
    X = unit_rows(1500, 16, seed=1)
    codec = make_codec("pq:M=4,K=16,opq=0").fit(X)
    return write_collection(tmp_path_factory.mktemp("manifest") / "coll", codec, X,
                            [f"img{i:04d}" for i in range(len(X))], SIZE)


def _tampered(collection: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    copy = tmp_path / "c"
    shutil.copytree(collection, copy)
    m = json.loads((copy / MANIFEST_NAME).read_text())
    edit(m)
    (copy / MANIFEST_NAME).write_text(json.dumps(m))
    return copy


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit setting one field, addressed as 'key.key' with integers indexing lists."""
    def edit(m: dict[str, Any]) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in parents:
            m = m[k]
        m[last] = value
    return edit


def _v2(edit: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    """An edit of a version-2 manifest (the version that holds deletes)."""
    def both(m: dict[str, Any]) -> None:
        m["version"] = 2
        edit(m)
    return both


def test_the_untampered_collection_opens(collection):
    with ShardedArchive.open(collection) as coll:
        assert coll.items == 1500 and coll.verify() == []


TAMPERED = {
    "absolute shard path": (_set("shards.0.file", "/etc/passwd"), "shard-00000.smz"),
    "shard path outside the folder": (_set("shards.1.file", "../coll/shard-00001.smz"), "shard-00001.smz"),
    "other shard's file": (_set("shards.1.file", "shard-00002.smz"), "shard-00001.smz"),
    "shard dropped, complete kept": (lambda m: m["shards"].pop(1), "complete=True"),
    "shard dropped, totals fixed": (lambda m: (m["shards"].pop(1), m.update(items=1000)), "complete=True"),
    "items total wrong": (_set("items", 1499), "1499 items"),
    "dim=0": (_set("dim", 0), "'dim' is 0"),
    "dim missing": (lambda m: m.pop("dim"), "lacks 'dim'"),
    "model=None": (_set("model", None), "'model' is None"),
    "model empty": (_set("model", ""), "'model' is empty"),
    "start='x'": (_set("shards.0.start", "x"), "'start' is 'x'"),
    "start shifted": (_set("shards.2.start", 999), "covers inputs"),
    "stop beyond the source": (_set("shards.2.stop", 1600), "covers inputs"),
    "index=1.5": (_set("shards.1.index", 1.5), "'index' is 1.5"),
    "index out of range": (_set("shards.1.index", 7), "'index' is 7"),
    "index twice": (_set("shards.1.index", 0), "shard 0"),
    "index bool": (_set("shards.0.index", False), "'index' is False"),
    "shards={}": (_set("shards", {}), "'shards' is {}"),
    "shard entry a string": (_set("shards.0", "shard-00000.smz"), "not an object"),
    "skipped=None": (_set("shards.0.skipped", None), "'skipped' is None"),
    "skipped of numbers": (_set("shards.0.skipped", [[1, 2]]), "skipped"),
    "items > range": (_set("shards.0.items", 501), "'items' is 501"),
    "negative items": (_set("shards.0.items", -1), "'items' is -1"),
    "sha256 not hex": (_set("shards.0.sha256", "zz"), "not a SHA-256"),
    "bytes zero": (_set("shards.0.bytes", 0), "'bytes' is 0"),
    "first_id number": (_set("shards.0.first_id", 0), "'first_id' is 0"),
    "codec hash short": (_set("codec.hash", "abc"), "codec hash"),
    "codec file elsewhere": (_set("codec.file", "/tmp/evil.smzc"), "codec file"),
    "shard_items zero": (_set("shard_items", 0), "'shard_items' is 0"),
    "shards_planned wrong": (_set("shards_planned", 4), "plans 4 shards"),
    "complete a string": (_set("complete", "yes"), "'complete' is 'yes'"),
    "version 3": (_set("version", 3), "unsupported manifest version 3"),
    "tombstones in a version-1 manifest": (lambda m: m["shards"][0].update(deleted=[1]) or m.update(items=1499),
                                           "version-1 manifest cannot hold"),
    "tombstones unsorted": (_v2(lambda m: m["shards"][0].update(deleted=[5, 1]) or m.update(items=1498)), "sorted"),
    "tombstone twice": (_v2(lambda m: m["shards"][0].update(deleted=[1, 1]) or m.update(items=1498)), "unique"),
    "tombstone past the shard": (_v2(lambda m: m["shards"][0].update(deleted=[500]) or m.update(items=1499)), "[0, 500)"),
    "tombstone not an integer": (_v2(lambda m: m["shards"][0].update(deleted=["1"]) or m.update(items=1499)), "integers"),
    "tombstones not counted": (_v2(lambda m: m["shards"][0].update(deleted=[1])), "says 1500 items"),
    "purged not accounted": (_v2(lambda m: m["shards"][0].update(purged=3)), "3 purged"),
    "generation without its file": (_v2(lambda m: m["shards"][0].update(generation=2)), "shard-00000-2.smz"),
    "version a string": (_set("version", "1"), "'version' is '1'"),
    "other format": (_set("format", "zip"), "not a semzip collection manifest"),
    "not an object": (lambda m: m.clear() or m.update(x=1), "lacks 'format'"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_manifest_is_refused_naming_the_field(collection, tmp_path, case):
    edit, message = TAMPERED[case]
    copy = _tampered(collection, tmp_path, edit)
    with pytest.raises(FormatError, match="manifest") as err:
        ShardedArchive.open(copy, partial=True)
    assert message in str(err.value)
    assert main(["info", str(copy)]) == 3 and main(["decompress", str(copy), "-o", str(tmp_path / "o.npy")]) == 3
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize("text", ['{"format": "semzip-collection", "version": 1, "dim": Infinity}',
                                  '{"dim": NaN}', "[" * 100_000 + "]" * 100_000, "\xff\xfe", "{"])
def test_unparsable_manifest_is_a_format_error(collection, tmp_path, text):
    copy = tmp_path / "c"
    shutil.copytree(collection, copy)
    (copy / MANIFEST_NAME).write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe")
    with pytest.raises(FormatError, match="manifest"):
        ShardedArchive.open(copy)


def test_symlinked_shard_is_refused(collection, tmp_path):
    copy = _tampered(collection, tmp_path, lambda m: None)
    outside = tmp_path / "outside.smz"
    (copy / shard_name(1)).rename(outside)
    os.symlink(outside, copy / shard_name(1))
    with pytest.raises(FormatError, match="symlink"):
        ShardedArchive.open(copy)


def test_wrong_sha256_is_caught_on_open_not_only_by_verify(collection, tmp_path):
    copy = _tampered(collection, tmp_path, _set("shards.1.sha256", "0" * 64))
    with pytest.raises(FormatError, match="SHA-256 differs"):
        open_collection(copy)
    assert main(["decompress", str(copy), "-o", str(tmp_path / "o.npy")]) == 3
    assert main(["search", str(copy), "--like", "img0001"]) == 3
    assert main(["verify", str(copy)]) == 3  # verify opens without the check and reports every problem
    with ShardedArchive.open(copy, check_hashes=False) as coll:
        assert coll.verify() == ["shard-00001.smz: SHA-256 differs from the manifest"]


def test_swapped_shard_of_equal_size_is_caught(collection, tmp_path):
    """A shard file replaced by another valid archive with the same ids and size (its items' vectors
    swapped around): only the hash tells."""
    copy = _tampered(collection, tmp_path, lambda m: None)
    with open_collection(collection) as coll:
        codec, X = coll.codec, coll.decode()[:SIZE]
    write_archive(copy / shard_name(0), codec, X[::-1], ids=[f"img{i:04d}" for i in range(SIZE)], model="m",
                  embed_codec=False)
    if (copy / shard_name(0)).stat().st_size != (collection / shard_name(0)).stat().st_size:
        pytest.skip("the replacement happened to differ in size (caught by the size check instead)")
    with pytest.raises(FormatError, match="SHA-256 differs"):
        open_collection(copy)


def test_unfinished_collection_still_needs_partial(collection, tmp_path):
    copy = _tampered(collection, tmp_path, lambda m: (m["shards"].pop(2), m.update(items=1000, complete=False)))
    with pytest.raises(InputError, match="unfinished"):
        ShardedArchive.open(copy)
    with ShardedArchive.open(copy, partial=True) as coll:
        assert coll.items == 1000
    assert np.isfinite(open_collection(copy, partial=True).decode()).all()
