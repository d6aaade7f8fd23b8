"""Search spread over Ray workers: each archive (a collection's shard) is scanned in its own task,
on its codes, and the driver merges the per-shard top-k.

The merge keeps the single-process order exactly: score (descending), then archive, then position,
so `search_ray` returns the same ids and bitwise the same scores as `Collection.search` over the
same archives (each shard runs the same scorer on the same codes and queries).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from ..collection import open_archives
from ..search._engine import SearchResult
from ._run import _ray_session


def _search_shard(path: str, codec: bytes, Q: np.ndarray, keep: int, normalize: bool, rerank: int) -> tuple:
    """One archive's top-`keep` per query: (scores (q, keep), positions (q, keep), ids per row).
    The codec travels as its `.smzc` bytes (codec objects hold entropy coders that do not pickle)."""
    from ..codecs import codec_from_bytes
    from ..container import Archive
    from ..search import Collection

    with Archive.open(path, codec=codec_from_bytes(codec)) as arc, Collection([arc]) as coll:
        found = coll.search(Q, min(keep, arc.items), normalize=normalize, rerank=rerank)
    return found.scores, found.positions, found.ids


def search_ray(paths: Sequence[str | Path], queries: Any, k: int = 10, *, codec: Any = None, normalize: bool = True,
               rerank: int = 0, address: str | None = None) -> SearchResult:
    """Top-k per query over archives and sharded collections, one Ray task per archive. Uses a running
    Ray (`ray.init` already called), else `address` / $RAY_ADDRESS, else a local Ray started here."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    with open_archives(paths, codec=codec) as arcs:
        first = arcs[0]
        for a in arcs[1:]:
            if a.dim != first.dim or a.model != first.model:
                raise InputError(f"cannot search {a.path} with {first.path}: width or embedding model differ")
        jobs = [(str(a.path), a.codec, a.items) for a in arcs]
    Q = np.asarray(queries, dtype=np.float32)
    Q = Q[None, :] if Q.ndim == 1 else Q
    if Q.ndim != 2 or Q.shape[1] != first.dim:
        raise InputError(f"queries must have shape ({first.dim},) or (q, {first.dim}), got {np.shape(queries)}")
    with _ray_session(address, 1) as ray:
        task = ray.remote(num_cpus=1)(_search_shard)
        q_ref = ray.put(Q)
        codecs: dict[int, Any] = {}  # one object per codec (a collection's shards share theirs)
        futures = [task.remote(path, codecs.setdefault(id(c), ray.put(c.to_bytes())), q_ref, int(k), normalize,
                               int(rerank)) for path, c, _ in jobs]
        parts = ray.get(futures)
    return merge_top(parts, int(k))


def merge_top(parts: list[tuple[np.ndarray, np.ndarray, list[list[str]]]], k: int) -> SearchResult:
    """The best k of per-archive top lists (archive s = parts[s]), ties to the earlier archive and position."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    pos = np.concatenate([p[1] for p in parts], axis=1)
    src = np.concatenate([np.full(p[0].shape, s, dtype=np.int32) for s, p in enumerate(parts)], axis=1)
    ids = [sum((p[2][i] for p in parts), []) for i in range(len(scores))]
    order = np.lexsort((pos, src, -scores), axis=1)[:, :k]
    top_ids = [[row[j] for j in o] for row, o in zip(ids, order.tolist())]
    return SearchResult(top_ids, *(np.take_along_axis(x, order, axis=1) for x in (scores, src, pos)))
