"""Sharded collections: a folder of `.smz` shards sharing one codec, described by `manifest.json`.

Written by `semzip.scale` (a Ray pipeline) for collections too big for one archive or one machine;
read here with the light core only. The folder holds `codec.smzc` (the shared codec, saved once),
`shard-00000.smz`, ... (ordinary archives written with `embed_codec=False`) and `manifest.json`,
which lists the finished shards (items, input range, first and last id, size, SHA-256) and the
model, codec hash and format version. The manifest is rewritten atomically after each shard, so it
only ever names complete shards; `ShardedArchive` opens it and reads the shards as one collection,
in shard order, with the interface of `container.Archive` that readers use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._version import WRITER
from ._atomic import atomic_write_bytes
from ._errors import FormatError, InputError
from ._validate import MAX_DIM, MAX_ITEMS
from .codecs import Codec, Codes, check_codec_matches, load_codec
from .container import Archive, ArchiveLike, ItemsById

MANIFEST_NAME = "manifest.json"
CODEC_NAME = "codec.smzc"
MANIFEST_FORMAT = "semzip-collection"
#: The newest manifest version read and written: 2 once a collection has deletes (tombstones, or
#: shards rewritten without deleted items); a collection without them is written as version 1.
MANIFEST_VERSION = 2


def shard_name(index: int, generation: int = 0) -> str:
    """A shard's file: `shard-00003.smz`, then `shard-00003-1.smz`, ... each time `compact` rewrites it."""
    return f"shard-{index:05d}.smz" if generation == 0 else f"shard-{index:05d}-{generation}.smz"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_manifest(path: str | Path) -> bool:
    """True for a `manifest.json` file or a folder holding one (what `open_collection` opens as shards)."""
    p = Path(path)
    return (p.is_dir() and (p / MANIFEST_NAME).is_file()) or (p.suffix == ".json" and p.is_file())


def manifest_path(path: str | Path) -> Path:
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() else p


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Load a manifest (a folder or its manifest.json) and check it against the schema; shards come back
    sorted by index. A manifest is as untrusted as the shards it names: every field is type- and range-
    checked, shard files must be the plain `shard-NNNNN.smz` names inside the folder, and the counts
    must add up (a shard dropped from a manifest that still says `complete` is refused)."""
    p = manifest_path(path)
    try:
        if p.stat().st_size > _MAX_MANIFEST_BYTES:
            raise FormatError(f"manifest {str(p)!r} is {p.stat().st_size} bytes; at most {_MAX_MANIFEST_BYTES} are read")
        manifest = json.loads(p.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise InputError(f"no such manifest: {str(p)!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, _Bad) as exc:
        raise FormatError(f"cannot read manifest {str(p)!r}: {type(exc).__name__.lstrip('_')}: {exc}") from None
    try:
        _check_manifest(manifest)
    except _Bad as exc:
        raise FormatError(f"manifest {str(p)!r}: {exc}") from None
    manifest["shards"] = sorted(manifest["shards"], key=lambda s: s["index"])
    return manifest


_MAX_MANIFEST_BYTES = 1 << 28
_HEX64 = frozenset("0123456789abcdef")


class _Bad(Exception):
    """A manifest field that breaks the schema (turned into a FormatError naming the file)."""


def _no_constant(name: str) -> None:
    raise _Bad(f"{name} is not a number a manifest may hold")


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _Bad(f"{where}lacks {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _Bad(f"{where}{key!r} is {value!r}, not {getattr(kind, '__name__', kind)}")
    return value


def _count(obj: Any, key: str, low: int, high: int, where: str = "") -> int:
    value = _field(obj, key, int, where)
    if not low <= value <= high:
        raise _Bad(f"{where}{key!r} is {value}, outside {low}..{high}")
    return value


def _digest(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


def _check_manifest(m: Any) -> None:
    """Raise `_Bad` naming the first field of `m` that breaks the manifest schema (version 1)."""
    if not isinstance(m, dict):
        raise _Bad("is not a JSON object")
    if _field(m, "format", str) != MANIFEST_FORMAT:
        raise _Bad(f"is not a semzip collection manifest (format {m['format']!r})")
    version = _field(m, "version", int)
    if version not in (1, MANIFEST_VERSION):
        raise _Bad(f"unsupported manifest version {version}; this semzip reads 1 and {MANIFEST_VERSION}")
    if not _field(m, "model", str):
        raise _Bad("'model' is empty")
    _count(m, "dim", 1, MAX_DIM)
    codec = _field(m, "codec", dict)
    if _field(codec, "file", str, "codec ") != CODEC_NAME:
        raise _Bad(f"codec file is {codec['file']!r}; a collection's codec is {CODEC_NAME}")
    _field(codec, "spec", str, "codec ")
    if not _digest(_field(codec, "hash", str, "codec ")):
        raise _Bad(f"codec hash {codec['hash']!r} is not a SHA-256 hex digest")
    size = _count(m, "shard_items", 1, MAX_ITEMS)
    planned = _count(m, "shards_planned", 0, MAX_ITEMS)
    shards = _field(m, "shards", list)
    source_items = m.get("source", {}).get("items") if isinstance(m.get("source"), dict) else None
    if isinstance(source_items, int) and not isinstance(source_items, bool) and planned != -(-source_items // size):
        raise _Bad(f"plans {planned} shards, but {source_items} inputs at {size} per shard need {-(-source_items // size)}")
    seen: set[int] = set()
    for s in shards:
        _check_shard(s, size, planned, source_items)
        if version == 1 and _has_deletes(s):
            raise _Bad(f"shard {s['index']} records deletes, which a version-1 manifest cannot hold")
        if s["index"] in seen:
            raise _Bad(f"lists shard {s['index']} twice")
        seen.add(s["index"])
    if _field(m, "complete", bool) != (len(shards) == planned):
        raise _Bad(f"says complete={m['complete']} but lists {len(shards)} of {planned} shards")
    live = sum(s["items"] - len(s.get("deleted", [])) for s in shards)
    if _count(m, "items", 0, MAX_ITEMS) != live:
        raise _Bad(f"says {m['items']} items but its shards hold {live}")


def _has_deletes(s: dict[str, Any]) -> bool:
    """Whether a shard record holds tombstones or was rewritten without deleted items (version 2 only)."""
    return bool(s.get("deleted")) or bool(s.get("purged")) or bool(s.get("generation"))


def _check_shard(s: Any, size: int, planned: int, source_items: Any) -> None:
    if not isinstance(s, dict):
        raise _Bad(f"a shard entry is {s!r}, not an object")
    index = _count(s, "index", 0, max(planned - 1, 0))
    where = f"shard {index} "
    if index >= planned:
        raise _Bad(f"{where}is beyond the {planned} planned")
    start, stop = _field(s, "start", int, where), _field(s, "stop", int, where)
    last = source_items if isinstance(source_items, int) else start + size
    if start != index * size or stop != min(start + size, last) or stop <= start:
        raise _Bad(f"{where}covers inputs [{start}, {stop}), not shard {index}'s range at {size} per shard")
    items = _count(s, "items", 0, stop - start, where)
    skipped = _field(s, "skipped", list, where)
    purged = _count(s, "purged", 0, stop - start, where) if "purged" in s else 0
    if items + len(skipped) + purged != stop - start or not all(
            isinstance(k, list) and len(k) == 2 and all(isinstance(x, str) for x in k) for k in skipped):
        raise _Bad(f"{where}accounts for {items} items, {len(skipped)} skipped inputs and {purged} purged of {stop - start}")
    deleted = _field(s, "deleted", list, where) if "deleted" in s else []
    if not all(type(p) is int for p in deleted) or any(b <= a for a, b in zip(deleted, deleted[1:])) \
            or (deleted and not 0 <= deleted[0] <= deleted[-1] < items):
        raise _Bad(f"{where}deleted positions must be sorted, unique integers in [0, {items})")
    generation = _count(s, "generation", 0, 1 << 30, where) if "generation" in s else 0
    name = s.get("file")
    if items == 0:
        if name is not None or s.get("sha256") is not None:
            raise _Bad(f"{where}holds no items but names a file")
        return
    if name != shard_name(index, generation):
        raise _Bad(f"{where}file is {name!r}; shard {index} is {shard_name(index, generation)!r} in the collection folder")
    for key in ("first_id", "last_id"):
        _field(s, key, str, where)
    _count(s, "bytes", 1, 1 << 62, where)
    if not _digest(s.get("sha256")):
        raise _Bad(f"{where}sha256 {s.get('sha256')!r} is not a SHA-256 hex digest")


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Atomically (re)write `folder/manifest.json`, shards sorted and totals recomputed."""
    manifest["shards"] = sorted(manifest["shards"], key=lambda s: int(s["index"]))
    manifest["items"] = sum(int(s["items"]) - len(s.get("deleted", [])) for s in manifest["shards"])
    manifest["complete"] = len(manifest["shards"]) == int(manifest["shards_planned"])
    manifest["version"] = MANIFEST_VERSION if any(_has_deletes(s) for s in manifest["shards"]) else 1
    manifest["writer"] = WRITER
    atomic_write_bytes(Path(folder) / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True).encode())


@contextlib.contextmanager
def collection_lock(folder: Path) -> Iterator[None]:
    """Create the folder and hold an exclusive lock on it: two writers never change one collection."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"output {str(folder)!r} exists and is not a folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another run is writing {str(folder)!r}") from None
        yield
    finally:
        os.close(fd)


def delete_from_collection(path: str | Path, ids: Sequence[str], codec: Codec | None = None) -> dict[str, Any]:
    """Delete items of a sharded collection by id with tombstones: the manifest records each deleted
    item's position in its shard and is replaced atomically; no shard file is written (their ids are
    read to find the items), so the shards' hashes and IVF indexes stay valid.

    Every reader skips the deleted items (ids, decodes, search, export); their bytes stay in the
    shards until `compaction.purge_collection` (`semzip compact FOLDER`) rewrites the shards holding
    them. Unknown ids, unfinished collections and deleting every item are refused, nothing changed."""
    folder = manifest_path(path).parent
    with collection_lock(folder):
        with ShardedArchive.open(folder, codec=codec, check_hashes=False) as coll:
            unique = list(dict.fromkeys(ids))
            if not unique:
                raise InputError("no ids to delete")
            found, unknown = [], []
            for item in unique:
                try:
                    found.append(coll.stored_position(item))
                except InputError:
                    unknown.append(item)
            if unknown:
                raise InputError(f"{len(unknown)} id(s) not in {str(folder)!r}: {', '.join(map(repr, unknown[:5]))} "
                                 "(nothing was deleted)")
            if len(unique) == coll.items:
                raise InputError(f"deleting all {coll.items} items would leave an empty collection; remove the folder instead")
            manifest = coll.manifest
            by_file = {s["file"]: s for s in manifest["shards"] if s["file"] is not None}
            touched: set[str] = set()
            for arc, stored in found:
                by_file[arc.path.name].setdefault("deleted", []).append(stored)
                touched.add(arc.path.name)
            for name in touched:
                by_file[name]["deleted"] = sorted(by_file[name]["deleted"])
            write_manifest(folder, manifest)
    return {"deleted": len(unique), "items": manifest["items"], "shards_touched": len(touched),
            "tombstones": sum(len(s.get("deleted", [])) for s in manifest["shards"])}


class ShardedArchive(ItemsById):
    """A manifest's shards read as one collection, in shard order. Use `ShardedArchive.open` as a context manager.

    Satisfies `ArchiveLike`, the reader interface of `Archive`; its `archives` are the opened
    shards, sharing `codec`.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], codec: Codec, archives: list[Archive]) -> None:
        self.path = folder
        self.manifest = manifest
        self.archives = archives
        self._codec = codec
        self.items = sum(a.items for a in archives)
        self.dim = int(manifest.get("dim") or codec.n_features_in_)
        self.model = str(manifest["model"])
        self.codec_spec = str(manifest["codec"]["spec"])
        self.codec_hash = str(manifest["codec"]["hash"])
        self.complete = bool(manifest["complete"])
        self._starts = np.concatenate([[0], np.cumsum([a.items for a in archives], dtype=np.int64)])
        self.ids = [i for a in archives for i in a.ids]
        if len(set(self.ids)) != len(self.ids):
            raise FormatError(f"collection {str(folder)!r}: an item id appears in two shards")

    @classmethod
    def open(cls, path: str | Path, codec: Codec | None = None, *, partial: bool = False,
             check_hashes: bool = True) -> ShardedArchive:
        """Open a collection folder (or its manifest.json) and check every shard against the manifest:
        a plain file in the folder (no symlink), its size, SHA-256 (unless `check_hashes` is False, for a
        quick look at a huge collection), item count and first and last id.

        An unfinished run is refused unless `partial`, which opens the shards finished so far.
        """
        mpath = manifest_path(path)
        folder = mpath.parent
        manifest = read_manifest(mpath)
        if not manifest["complete"] and not partial:
            raise InputError(f"collection {str(folder)!r} is unfinished ({len(manifest['shards'])} of "
                             f"{manifest['shards_planned']} shards): resume the run that writes it")
        codec = cls._codec_for(folder, manifest, codec)
        archives: list[Archive] = []
        try:
            for s in manifest["shards"]:
                if s["file"] is None or len(s.get("deleted", [])) == s["items"]:  # no input embedded, or all deleted
                    continue
                archives.append(_open_shard(folder, s, codec, check_hashes))
        except BaseException:
            for a in archives:
                a.close()
            raise
        return cls(folder, manifest, codec, archives)

    @staticmethod
    def _codec_for(folder: Path, manifest: dict[str, Any], given: Codec | None) -> Codec:
        want = manifest["codec"]["hash"]
        if given is not None:
            check_codec_matches(given, manifest["codec"]["spec"], want, f"collection {str(folder)!r}")
            return given
        path = folder / CODEC_NAME
        if not path.is_file():
            raise FormatError(f"collection {str(folder)!r} lacks its codec file {CODEC_NAME}")
        codec = load_codec(path)
        if codec.state_hash != want:
            raise FormatError(f"collection {str(folder)!r}: {CODEC_NAME} does not match the manifest's codec hash")
        return codec

    def close(self) -> None:
        for a in self.archives:
            a.close()

    def __enter__(self) -> ShardedArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def codec(self) -> Codec:
        return self._codec

    @property
    def pixels(self) -> np.ndarray | None:
        """Pixel counts of all items (0 where a shard recorded none), or None when no shard has any."""
        if all(a.pixels is None for a in self.archives):
            return None
        return np.concatenate([a.pixels if a.pixels is not None else np.zeros(a.items, np.uint64)
                               for a in self.archives])

    def iter_codes(self) -> Iterator[tuple[int, Codes]]:
        """(first item index in the collection, codes) for every block of every shard, in order."""
        for start, arc in zip(self._starts.tolist(), self.archives):
            for offset, codes in arc.iter_codes():
                yield start + offset, codes

    def decode(self, progress: bool = False) -> np.ndarray:
        """All items as float32 (items, dim), shard after shard."""
        from ._progress import progress_bar

        out = np.empty((self.items, self.dim), dtype=np.float32)
        with progress_bar("decoding", total=self.items, enabled=progress) as advance:
            for start, arc in zip(self._starts.tolist(), self.archives):
                out[start : start + arc.items] = arc.decode()
                advance(arc.items)
        return out

    def stored_position(self, item_id: str) -> tuple[Archive, int]:
        """The shard holding an item and the item's position as stored in that shard's file."""
        i = self.position(item_id)
        s = int(np.searchsorted(self._starts, i, side="right") - 1)
        arc = self.archives[s]
        return arc, arc.stored_position(i - int(self._starts[s]))

    def get(self, item_id: str) -> np.ndarray:
        """One item's vector by id, decoding only its block of its shard."""
        i = self.position(item_id)
        s = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self.archives[s].get(item_id)

    def verify(self) -> list[str]:
        """Every shard's SHA-256 against the manifest, then every checksum and block (empty list = intact)."""
        problems = []
        for s in self.manifest["shards"]:
            if s["file"] is not None and file_sha256(self.path / s["file"]) != s["sha256"]:
                problems.append(f"{s['file']}: SHA-256 differs from the manifest")
        for arc in self.archives:
            problems += [f"{arc.path.name}: {p}" for p in arc.verify()]
        return problems

    def info(self) -> dict[str, Any]:
        """Counted sizes over all shards, the codec file and the manifest (every figure from bytes on disk)."""
        shard_bits = sum(8 * (self.path / s["file"]).stat().st_size for s in self.manifest["shards"] if s["file"])
        codec_bits = 8 * (self.path / CODEC_NAME).stat().st_size
        manifest_bits = 8 * (self.path / MANIFEST_NAME).stat().st_size
        payload_bits = sum(8 * int(a.index["nbytes"].sum()) for a in self.archives)
        total_bits = shard_bits + codec_bits + manifest_bits
        n = max(self.items, 1)
        out: dict[str, Any] = {
            "path": str(self.path),
            "manifest_version": int(self.manifest["version"]),
            "complete": self.complete,
            "shards": len(self.manifest["shards"]),
            "shards_planned": int(self.manifest["shards_planned"]),
            "items": self.items,
            "skipped_inputs": sum(len(s["skipped"]) for s in self.manifest["shards"]),
            "deleted": sum(len(s.get("deleted", [])) for s in self.manifest["shards"]),
            "purged": sum(int(s.get("purged", 0)) for s in self.manifest["shards"]),
            "dim": self.dim,
            "model": self.model,
            "codec": self.codec_spec,
            "codec_hash": self.codec_hash,
            "payload_bits": payload_bits,
            "codec_bits": codec_bits,
            "shard_bits": shard_bits,
            "manifest_bits": manifest_bits,
            "total_bits": total_bits,
            "bits_per_item": total_bits / n,
            "payload_bits_per_item": payload_bits / n,
            "fixed_bits_per_item": self._codec.fixed_bits,
        }
        pixels = self.pixels
        if pixels is not None and int(pixels.sum()) > 0:
            out["pixels"] = int(pixels.sum())
            out["bpp"] = total_bits / int(pixels.sum())
        return out


def _open_shard(folder: Path, record: dict[str, Any], codec: Codec, check_hash: bool) -> Archive:
    path = folder / record["file"]  # the schema allows only shard-NNNNN.smz names, so `path` is in `folder`
    where = f"collection {str(folder)!r}: shard {record['file']}"
    if path.is_symlink():
        raise FormatError(f"{where} is a symlink; a collection's shards are plain files in its folder")
    if not path.is_file():
        raise FormatError(f"{where} is missing")
    if path.stat().st_size != record["bytes"]:
        raise FormatError(f"{where} is {path.stat().st_size} bytes, the manifest says {record['bytes']}")
    if check_hash and file_sha256(path) != record["sha256"]:
        raise FormatError(f"{where}: SHA-256 differs from the manifest (run `semzip verify` for details)")
    arc = Archive.open(path, codec=codec)
    if arc.items != record["items"] or arc.ids[0] != record["first_id"] or arc.ids[-1] != record["last_id"]:
        arc.close()
        raise FormatError(f"{where} does not hold the items the manifest lists")
    arc.tombstone(record.get("deleted", []))
    return arc


@contextlib.contextmanager
def open_archives(paths: Sequence[str | Path], codec: Codec | None = None) -> Iterator[list[Archive]]:
    """Archive files and sharded collections, opened as one flat list of archives (a collection
    contributes its shards, with its codec): the input of code that works over several archives,
    such as `semzip.search.Collection`. Everything opened here is closed on exit."""
    opened: list[ArchiveLike] = []
    try:
        for p in paths:
            opened.append(open_collection(p, codec=codec))
        yield [a for o in opened for a in o.archives]
    finally:
        for o in opened:
            o.close()


def open_collection(path: str | Path, codec: Codec | None = None, *, partial: bool = False) -> ArchiveLike:
    """An archive file, or a sharded collection (its folder or manifest.json): what `decompress`/`info` read."""
    if is_manifest(path):
        return ShardedArchive.open(path, codec=codec, partial=partial)
    return Archive.open(path, codec=codec)
