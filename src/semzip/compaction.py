"""Compaction: re-learning an archive's codec when its items have drifted from it, and purging a
sharded collection's deleted items.

Items appended to an archive are coded on the codec it was written with (for SMIC, the dictionary
learned on the first items). When later items differ, that dictionary fits them badly and costs
more bits; `compact_archive` decodes every item, fits the codec again on all of them and rewrites
the archive in the same order with the same ids, pixel counts and model id. `purge_collection`
rewrites the shards of a collection that hold tombstoned items without them (codes copied, not
re-coded).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_writer, writer_lock
from ._errors import FormatError, InputError
from .codecs import Codec, fit_codec
from .container import Archive, write_archive, write_without
from .search._ivf import carry_index, default_path
from .shards import ShardedArchive, collection_lock, file_sha256, manifest_path, shard_name, write_manifest
from .spec import Spec, parse_spec


def compact_archive(path: str | Path, spec: str | Spec | None = None, *, seed: int = 0, force: bool = False,
                    progress: bool = False) -> dict[str, Any]:
    """Refit the codec on the decoded items and rewrite the archive if that makes it smaller.

    `spec` defaults to the archive's codec spec; for a `bits=` target the dictionary size is chosen
    again (atoms=0). The rewrite is atomic and keeps item order, ids, pixel counts and model; it
    replaces the archive only when the new file is smaller, or always with `force`. Items are
    re-coded from their decoded vectors (the originals are not in the archive), so each compaction
    is one more generation of lossy coding: `cos_to_previous` reports how far decodes moved.
    """
    target = Path(path)
    with writer_lock(target):
        return _compact(target, spec, seed, force, progress)


def _compact(target: Path, spec: str | Spec | None, seed: int, force: bool, progress: bool) -> dict[str, Any]:
    with Archive.open(target) as arc:
        if not arc.codec_embedded:
            raise InputError(f"{str(target)!r} does not embed its codec; compact rewrites the codec into the "
                             "archive, so it needs an archive written without --shared")
        arc.check_sections()
        old = arc.decode(progress=progress)
        ids, pixels, model = list(arc.ids), arc.pixels, arc.model
        block_items = int(arc.head["block_items"])
        old_spec, refit_spec = arc.codec.spec, arc.codec.refit_spec()
        old_bits = 8 * target.stat().st_size
    new_spec = refit_spec if spec is None else (parse_spec(spec) if isinstance(spec, str) else spec)
    codec = fit_codec(new_spec, old, seed=seed)
    written: dict[str, Any] = {}

    def smaller(tmp: Path) -> bool:
        written["bits"] = 8 * tmp.stat().st_size
        with Archive.open(tmp) as arc:
            written["decoded"] = arc.decode()
        written["replaced"] = force or written["bits"] < old_bits
        return bool(written["replaced"])

    with atomic_writer(target, keep=smaller) as fh:  # the archive is written in place, into the temp file
        write_archive(fh, codec, old, ids=ids, model=model, pixels=pixels, block_items=block_items,
                      progress=progress)
    new_bits, new, replaced = written["bits"], written["decoded"], written["replaced"]
    cos = (old * new).sum(axis=1) / np.maximum(np.linalg.norm(old, axis=1) * np.linalg.norm(new, axis=1), 1e-12)
    return {
        "items": len(ids), "old_spec": str(old_spec), "new_spec": str(codec.spec),
        "old_bits_per_item": old_bits / len(ids), "new_bits_per_item": new_bits / len(ids),
        "replaced": replaced, "cos_to_previous": float(cos.mean()),
    }



def purge_collection(path: str | Path, codec: Codec | None = None) -> dict[str, Any]:
    """Rewrite each shard of a collection that holds deleted items (tombstones) without them, as a new
    file `shard-NNNNN-G.smz`: codes are copied (blocks without a deleted item verbatim), the shard's
    IVF index is carried over, and one atomic manifest replacement switches to the new files, after
    which the old ones are removed. A crash before the switch leaves the collection as it was (the new
    files unnamed, removed by the next purge); after it, only old files are left to remove."""
    folder = manifest_path(path).parent
    with collection_lock(folder):
        with ShardedArchive.open(folder, codec=codec, check_hashes=False) as coll:  # hashed below, where read
            manifest, codec = coll.manifest, coll.codec
        _remove_unnamed(folder, manifest)
        if not any(s.get("deleted") for s in manifest["shards"]):
            return {"path": str(folder), "purged": 0, "shards_rewritten": 0, "items": manifest["items"], "indexes": []}
        before = sum(int(s.get("bytes", 0)) for s in manifest["shards"] if s["file"])
        old_files, indexes, purged = [], [], 0
        for record in manifest["shards"]:
            if not record.get("deleted"):
                continue
            old_files.append(folder / record["file"])
            purged += len(record["deleted"])
            indexes.append(_purge_shard(folder, record, codec))
        write_manifest(folder, manifest)  # the switch: from here on the new files are the collection
        for old in old_files:
            old.unlink()
            default_path(old).unlink(missing_ok=True)
    after = sum(int(s.get("bytes", 0)) for s in manifest["shards"] if s["file"])
    return {"path": str(folder), "purged": purged, "shards_rewritten": len(old_files), "items": manifest["items"],
            "bytes_before": before, "bytes_after": after, "indexes": [i for i in indexes if i]}


def _purge_shard(folder: Path, record: dict[str, Any], codec: Codec) -> dict[str, Any]:
    """Write shard `record` without its deleted items under its next generation's name and update
    `record` to describe it (the manifest is not written here); returns its index's carry-over report."""
    deleted = record.pop("deleted")
    record["purged"] = int(record.get("purged", 0)) + len(deleted)
    if len(deleted) == record["items"]:
        for key in ("file", "sha256", "bytes", "first_id", "last_id"):
            record.pop(key, None)
        record.update(items=0, file=None, sha256=None)
        return {}
    if file_sha256(folder / record["file"]) != record["sha256"]:  # nothing damaged is copied on
        raise FormatError(f"collection {str(folder)!r}: shard {record['file']}: SHA-256 differs from the manifest "
                          "(nothing was purged; run `semzip verify` for details)")
    record["generation"] = int(record.get("generation", 0)) + 1
    new = folder / shard_name(int(record["index"]), record["generation"])
    with Archive.open(folder / record["file"], codec=codec) as old:
        drop = np.zeros(old.items, dtype=bool)
        drop[deleted] = True
        kept = write_without(old, drop, new)
        report = carry_index(old, new, codec)
    record.update(file=new.name, items=len(kept), first_id=kept[0], last_id=kept[-1], bytes=new.stat().st_size,
                  sha256=file_sha256(new))
    return report


def _remove_unnamed(folder: Path, manifest: dict[str, Any]) -> None:
    """Shard files and indexes of the folder that the manifest does not name: what a purge that
    crashed left (new files before its switch, old ones after)."""
    named = {s["file"] for s in manifest["shards"] if s["file"]}
    for f in folder.glob("shard-*.smz*"):
        stem = f.name.removesuffix(".ivf")
        if stem.endswith(".smz") and stem not in named and re.fullmatch(r"shard-\d{5,}(-\d+)?\.smz", stem):
            f.unlink()
