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
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._atomic import atomic_write_bytes
from ._errors import CodecMismatchError, FormatError, InputError
from .codecs import Codec, Codes, load_codec
from .container import Archive, ItemsById

MANIFEST_NAME = "manifest.json"
CODEC_NAME = "codec.smzc"
MANIFEST_FORMAT = "semzip-collection"
MANIFEST_VERSION = 1
_SHARD_KEYS = ("index", "file", "start", "stop", "items", "first_id", "last_id", "bytes", "sha256", "skipped")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.smz"


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
    """Load and check a manifest (a folder or its manifest.json); shards come back sorted by index."""
    p = manifest_path(path)
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no such manifest: {str(p)!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"cannot read manifest {str(p)!r}: {exc}") from None
    try:
        if manifest["format"] != MANIFEST_FORMAT:
            raise FormatError(f"{str(p)!r} is not a semzip collection manifest (format {manifest['format']!r})")
        if manifest["version"] != MANIFEST_VERSION:
            raise FormatError(f"unsupported manifest version {manifest['version']}; this semzip reads {MANIFEST_VERSION}")
        str(manifest["model"]), str(manifest["codec"]["hash"]), str(manifest["codec"]["spec"])
        int(manifest["shard_items"]), int(manifest["shards_planned"]), bool(manifest["complete"])
        shards = sorted(manifest["shards"], key=lambda s: int(s["index"]))
        for s in shards:
            missing = [k for k in _SHARD_KEYS if k not in s]
            if missing:
                raise FormatError(f"manifest {str(p)!r}: shard {s.get('index')} lacks {', '.join(missing)}")
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"manifest {str(p)!r} is malformed ({exc!r})") from None
    indices = [int(s["index"]) for s in shards]
    if len(set(indices)) != len(indices):
        raise FormatError(f"manifest {str(p)!r} lists a shard twice")
    manifest["shards"] = shards
    return manifest


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Atomically (re)write `folder/manifest.json`, shards sorted and totals recomputed."""
    manifest["shards"] = sorted(manifest["shards"], key=lambda s: int(s["index"]))
    manifest["items"] = sum(int(s["items"]) for s in manifest["shards"])
    manifest["complete"] = len(manifest["shards"]) == int(manifest["shards_planned"])
    manifest["writer"] = f"semzip {__version__}"
    atomic_write_bytes(Path(folder) / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True).encode())


class ShardedArchive(ItemsById):
    """A manifest's shards read as one collection, in shard order. Use `ShardedArchive.open` as a context manager.

    Offers what readers of `Archive` use: `items dim model codec ids pixels decode() get(id)
    position(id) iter_codes() verify() info()`, and `archives` (the opened shards, sharing `codec`)
    for code that works per archive, such as compressed-domain search.
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
    def open(cls, path: str | Path, codec: Codec | None = None, *, partial: bool = False) -> ShardedArchive:
        """Open a collection folder (or its manifest.json) and check every shard against the manifest.

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
                if s["file"] is None:  # every input of this shard failed to embed
                    continue
                archives.append(_open_shard(folder, s, codec))
        except BaseException:
            for a in archives:
                a.close()
            raise
        return cls(folder, manifest, codec, archives)

    @staticmethod
    def _codec_for(folder: Path, manifest: dict[str, Any], given: Codec | None) -> Codec:
        want = manifest["codec"]["hash"]
        if given is not None:
            given._check_fitted()
            if given.state_hash != want:
                raise CodecMismatchError(f"wrong codec: collection {str(folder)!r} was written with "
                                         f"{manifest['codec']['spec']} (hash {want[:12]}), given {given.spec} "
                                         f"(hash {given.state_hash[:12]})")
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
        shard_bits = sum(8 * a.path.stat().st_size for a in self.archives)
        codec_bits = 8 * (self.path / CODEC_NAME).stat().st_size
        manifest_bits = 8 * (self.path / MANIFEST_NAME).stat().st_size
        payload_bits = sum(8 * int(a.index["nbytes"].sum()) for a in self.archives)
        total_bits = shard_bits + codec_bits + manifest_bits
        n = max(self.items, 1)
        out: dict[str, Any] = {
            "path": str(self.path),
            "manifest_version": MANIFEST_VERSION,
            "complete": self.complete,
            "shards": len(self.manifest["shards"]),
            "shards_planned": int(self.manifest["shards_planned"]),
            "items": self.items,
            "skipped_inputs": sum(len(s["skipped"]) for s in self.manifest["shards"]),
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


def _open_shard(folder: Path, record: dict[str, Any], codec: Codec) -> Archive:
    path = folder / record["file"]
    if not path.is_file():
        raise FormatError(f"collection {str(folder)!r}: shard {record['file']} is missing")
    if path.stat().st_size != int(record["bytes"]):
        raise FormatError(f"collection {str(folder)!r}: shard {record['file']} is {path.stat().st_size} bytes, "
                          f"the manifest says {record['bytes']}")
    arc = Archive.open(path, codec=codec)
    if arc.items != int(record["items"]) or arc.ids[0] != record["first_id"] or arc.ids[-1] != record["last_id"]:
        arc.close()
        raise FormatError(f"collection {str(folder)!r}: shard {record['file']} does not hold the items the manifest lists")
    return arc


@contextlib.contextmanager
def open_archives(paths: Sequence[str | Path], codec: Codec | None = None) -> Iterator[list[Archive]]:
    """Archive files and sharded collections, opened as one flat list of archives (a collection
    contributes its shards, with its codec): the input of code that works over several archives,
    such as `semzip.search.Collection`. Everything opened here is closed on exit."""
    opened: list[Archive | ShardedArchive] = []
    try:
        for p in paths:
            opened.append(open_collection(p, codec=codec))
        yield [a for o in opened for a in (o.archives if isinstance(o, ShardedArchive) else [o])]
    finally:
        for o in opened:
            o.close()


def open_collection(path: str | Path, codec: Codec | None = None, *, partial: bool = False) -> Archive | ShardedArchive:
    """An archive file, or a sharded collection (its folder or manifest.json): what `decompress`/`info` read."""
    if is_manifest(path):
        return ShardedArchive.open(path, codec=codec, partial=partial)
    return Archive.open(path, codec=codec)
