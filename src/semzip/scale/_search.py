"""Search spread over Ray workers: each archive (a collection's shard) is scanned in its own task,
on its codes, and the driver merges the per-shard top-k.

The merge keeps the single-process order exactly: score (descending), then archive, then position,
so `search_ray` returns the same ids and bitwise the same scores as `Collection.search` over the
same archives (each shard runs the same scorer on the same codes and queries).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError
from ..search._engine import Collection, SearchResult
from ._run import _ray_session


def _search_shard(path: str, deleted: np.ndarray, codec: bytes, Q: np.ndarray, k: int, normalize: bool,
                  rerank: int) -> tuple:
    """One archive's top-k per query: (scores (q, k'), positions (q, k')), k' = min(k, its items),
    its `deleted` items (a collection's tombstones) skipped as the driver skips them. The codec
    travels as its `.smzc` bytes (codec objects hold entropy coders that do not pickle)."""
    from ..codecs import codec_from_bytes
    from ..container import Archive
    from ..search import Collection

    with Archive.open(path, codec=codec_from_bytes(codec), deleted=deleted) as arc, Collection([arc]) as coll:
        found = coll.search(Q, k, normalize=normalize, rerank=rerank)
    return found.scores, found.positions


def search_ray(collection: Collection, queries: Any, k: int = 10, *, normalize: bool = True, rerank: int = 0,
               address: str | None = None) -> SearchResult:
    """`collection.search(queries, k)` with each of its archives scanned in its own Ray task, by path
    (so every node must see the files). Uses a running Ray (`ray.init` already called), else
    `address` / $RAY_ADDRESS, else a local Ray started here."""
    from ..search._engine import _queries

    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    Q = _queries(queries, collection.dim, normalize=False)  # each shard normalises, as one process does
    with _ray_session(address, 1) as ray:
        task = ray.remote(num_cpus=1)(_search_shard)
        q_ref = ray.put(Q)
        codecs: dict[int, Any] = {}  # one object per codec (a collection's shards share theirs)
        futures = [task.remote(str(a.path), a.deleted, codecs.setdefault(id(a.codec), ray.put(a.codec.to_bytes())), q_ref,
                               int(k), normalize, int(rerank)) for a in collection.archives]
        parts = ray.get(futures)
    scores = np.concatenate([p[0] for p in parts], axis=1)
    pos = np.concatenate([p[1] for p in parts], axis=1)
    src = np.concatenate([np.full(p[0].shape, s, dtype=np.int32) for s, p in enumerate(parts)], axis=1)
    return collection.ranked(scores, src, pos, min(int(k), collection.items))
