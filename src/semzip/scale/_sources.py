"""What a scale-out run reads: rows of an embedding file, or image files in a folder or object store.

A source lists its items in one deterministic order (sorted paths, file row order), so shard i is
always the same items and a restarted run can skip the shards it already wrote. Sources are
pickled to the Ray workers, which read only their shard's items.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from .._inputs import is_embedding_folder, read_embeddings, split_source
from .._validate import check_embeddings


def ids_digest(ids: list[str]) -> str:
    """SHA-256 of the id list: a restarted run checks it still reads the same inputs."""
    digest = hashlib.sha256()
    for i in ids:
        digest.update(i.encode("utf-8") + b"\0")
    return digest.hexdigest()


@dataclass
class EmbeddingSource:
    """Rows of an `.npy` (memory-mapped; read by every worker, so it must be on a path all nodes see)
    or an `.npz:key` (loaded whole once per worker), with the ids, pixel counts and model id that
    `semzip embed` stores beside the features, when present."""

    arg: str
    ids: list[str] = field(default_factory=list)
    dim: int = 0
    model: str | None = None
    kind: str = "embeddings"

    @classmethod
    def open(cls, arg: str) -> EmbeddingSource:
        path, key = split_source(arg)
        if path.suffix == ".npy" and key is None:
            rows = _mmap_npy(path)
            ids = [str(i) for i in range(len(rows))]
            dim, model = rows.shape[1], None
        else:
            found = read_embeddings(arg)
            ids = found.ids if found.ids is not None else [str(i) for i in range(len(found.features))]
            dim, model = found.features.shape[1], found.model
        if not ids:
            raise InputError(f"{arg!r} holds no rows")
        return cls(str(Path(path).resolve()) + (f":{key}" if key else ""), ids, dim, model)

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict[str, Any]:
        """Identity of the input for resuming: ids, and a spot check of three rows' bytes (not a full hash)."""
        X, _ = self.load()
        probe = np.ascontiguousarray(X[sorted({0, len(X) // 2, len(X) - 1})]).tobytes()
        return {"kind": self.kind, "input": self.arg, "items": len(self.ids), "ids_sha256": ids_digest(self.ids),
                "rows_probe_sha256": hashlib.sha256(probe).hexdigest()}

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(all rows, pixel counts or None): memory-mapped for an .npy, loaded for an .npz (once per worker)."""
        path, key = split_source(self.arg)
        if key is None and path.suffix == ".npy":
            return _mmap_npy(path), None
        found = read_embeddings(self.arg)
        return found.features, found.pixels

    def rows(self, matrix: np.ndarray, start: int, stop: int) -> np.ndarray:
        """float32 rows [start, stop) of `load()`'s matrix, checked (finite, the right width)."""
        return check_embeddings(matrix[start:stop], dim=self.dim, name=f"{self.arg}[{start}:{stop}]")


def _mmap_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"no such embedding file: {str(path)!r}")
    try:
        rows = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {str(path)!r} as .npy ({exc})") from None
    if rows.ndim != 2:
        raise InputError(f"{str(path)!r} must hold a 2-D (items, dim) array, got shape {rows.shape}")
    return rows


@dataclass
class ImageSource:
    """Image files under a local folder or an object-store prefix (`s3://bucket/photos/`, `gs://...`),
    read through pyarrow's filesystems. Ids are paths relative to the folder or prefix."""

    root: str
    locations: list[str] = field(default_factory=list)  # local paths or full URIs, sorted by id
    ids: list[str] = field(default_factory=list)
    kind: str = "images"

    @classmethod
    def open(cls, root: str) -> ImageSource:
        if _is_uri(root):
            locations, ids = _list_uri(root)
        else:
            from ..embed import collect_images

            paths, ids = collect_images([root])
            locations = [str(p.resolve()) for p in paths]
        return cls(root, locations, ids)

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "input": self.root, "items": len(self.ids), "ids_sha256": ids_digest(self.ids)}

    def read(self, position: int) -> bytes:
        loc = self.locations[position]
        if not _is_uri(loc):
            with open(loc, "rb") as fh:
                return fh.read()
        fs, path = _filesystem(loc)
        with fs.open_input_stream(path) as fh:
            return fh.read()


def _is_uri(arg: str) -> bool:
    return "://" in arg


def _filesystem(uri: str) -> tuple[Any, str]:
    try:
        from pyarrow import fs
    except ImportError:
        raise InputError("object-store inputs need pyarrow (pip install 'semzip[ray]')") from None
    try:
        return fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot open {uri!r}: {exc}") from None


def _list_uri(root: str) -> tuple[list[str], list[str]]:
    from pyarrow import fs

    from .._inputs import IMAGE_SUFFIXES

    filesystem, base = _filesystem(root)
    base = base.rstrip("/")
    try:
        infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    except (OSError, FileNotFoundError) as exc:
        raise InputError(f"cannot list {root!r}: {exc}") from None
    prefix = root[: len(root) - len(root.split("://", 1)[1])]  # 's3://' etc.
    found = []
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        rel = info.path[len(base) + 1 :]
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if os.path.splitext(rel)[1].lower() in IMAGE_SUFFIXES:
            found.append((rel, prefix + info.path))
    if not found:
        raise InputError(f"no image files under {root!r}")
    found.sort()
    return [loc for _, loc in found], [rel for rel, _ in found]


def open_source(arg: str) -> EmbeddingSource | ImageSource:
    """An image folder or object-store prefix, else embeddings (`x.npy`, `x.npz[:key]`, or a
    clip-retrieval folder `emb/[:text_emb]`)."""
    if _is_uri(arg) or (Path(arg).is_dir() and not is_embedding_folder(split_source(arg)[0])):
        return ImageSource.open(arg)
    return EmbeddingSource.open(arg)
