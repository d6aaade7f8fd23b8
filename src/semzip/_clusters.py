"""Nearest-centroid assignment and spherical k-means, shared by the codecs and the inverted index.

Assignment is argmax_c x.c - |c|^2/2 (the nearest centroid in Euclidean distance) computed as one
product [x, 1] @ [C^T; -|c|^2/2], so every caller breaks near-ties the same way.
"""

from __future__ import annotations

import numpy as np

from ._validate import l2_normalize


def assignment_matrix(C: np.ndarray) -> np.ndarray:
    """[C^T; -|c|^2/2] of centroids C (..., K, d): float32 (..., d+1, K), the operand of `nearest`."""
    C = np.asarray(C, dtype=np.float32)
    bias = -0.5 * (C**2).sum(axis=-1, keepdims=True)
    return np.ascontiguousarray(np.concatenate([C, bias], axis=-1).swapaxes(-1, -2))


def nearest(X: np.ndarray, scorer: np.ndarray, rows: int = 4096) -> np.ndarray:
    """Index of the nearest centroid of each row of X (..., n, d), `scorer` from `assignment_matrix`
    (..., d+1, K) with the same leading axes; int64 (..., n). Scored `rows` rows at a time."""
    n = X.shape[-2]
    out = np.empty(X.shape[:-1], dtype=np.int64)
    for i in range(0, n, rows):
        blk = X[..., i : i + rows, :]
        ones = np.ones((*blk.shape[:-1], 1), dtype=np.float32)
        out[..., i : i + rows] = np.matmul(np.concatenate([blk, ones], axis=-1), scorer).argmax(axis=-1)
    return out


def spherical_kmeans(X: np.ndarray, k: int, *, seed: int, niter: int, max_points_per_centroid: int = 1 << 30,
                     threads: int | None = None) -> np.ndarray:
    """Unit centroids (k, d) of the unit vectors X by faiss's seeded spherical k-means, on `threads`
    threads (None: faiss's setting) and at most `max_points_per_centroid` sampled points each."""
    import faiss

    old = faiss.omp_get_max_threads()
    if threads is not None:
        faiss.omp_set_num_threads(threads)
    try:
        km = faiss.Kmeans(X.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=max_points_per_centroid)
        km.train(np.ascontiguousarray(X, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(old)
    return l2_normalize(km.centroids.astype(np.float32))
