"""Test helpers (imported by tests; fixtures stay in conftest.py): seeded synthetic embeddings and
where the real CLIP data is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    """SEMZIP_DATA, else ../shared/data beside the repository; None when absent."""
    env = os.environ.get("SEMZIP_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if (candidate / "clip-vit-b-32").is_dir():
            return candidate
    return None


def unit_rows(n: int, d: int, seed: int = 0, clusters: int = 8) -> np.ndarray:
    """Clustered unit vectors, a cheap stand-in for CLIP embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d))
    X = centers[rng.integers(clusters, size=n)] + 0.5 * rng.standard_normal((n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def write_collection(folder: Path, codec: Any, X: np.ndarray, ids: list[str], size: int, **archive: Any) -> Path:
    """X as a complete sharded collection in `folder`, shards of `size` items laid out as `semzip.scale`
    writes them (shared codec file, `shard-NNNNN.smz`, manifest), without Ray. `archive`: more
    `write_archive` options (pixels per item are sliced per shard)."""
    from semzip.codecs import save_codec
    from semzip.container import write_archive
    from semzip.shards import CODEC_NAME, MANIFEST_FORMAT, MANIFEST_VERSION, file_sha256, shard_name, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    save_codec(codec, folder / CODEC_NAME)
    pixels = archive.pop("pixels", None)
    shards = []
    for index in range(-(-len(X) // size)):
        start, stop = index * size, min(len(X), (index + 1) * size)
        path = folder / shard_name(index)
        write_archive(path, codec, X[start:stop], ids=ids[start:stop], model="m", embed_codec=False,
                      pixels=None if pixels is None else pixels[start:stop], **archive)
        shards.append({"index": index, "start": start, "stop": stop, "items": stop - start, "skipped": [],
                       "file": path.name, "first_id": ids[start], "last_id": ids[stop - 1],
                       "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    write_manifest(folder, {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "model": "m", "dim": X.shape[1],
                            "codec": {"file": CODEC_NAME, "spec": str(codec.spec), "hash": codec.state_hash},
                            "source": {"kind": "npy", "items": len(X)}, "shard_items": size,
                            "shards_planned": len(shards), "shards": shards})
    return folder
