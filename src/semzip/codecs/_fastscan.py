"""Exact top-k search of 4-bit PQ codes (K=16) through faiss's fast-scan kernel.

faiss's `IndexPQFastScan` scans 4-bit codes with SIMD byte shuffles on lookup tables rounded to 8
bits: far faster than a float table scan, but its scores are approximate and rank by inner product,
while a cosine search divides by each reconstruction's norm n. Here faiss only draws a shortlist per
query and run of items, and a test proves the shortlist complete:

- *Ranking.* faiss ranks by `g = ip - beta*n^2`, which is a sum of per-sub-space table entries (n^2
  is a sum over sub-spaces; n is not): centroids are extended by their squared norm and each query
  sub-vector by `-beta`. With t the score to beat, `beta = t/(lo + hi)` ([lo, hi] bounds the run's
  norms) makes g track `ip - t*n`, i.e. cosine >= t; `beta = 0` for raw inner products.
- *Rounding.* faiss rounds each table entry to `round(a*(x - min))` with one scale
  `a = min(255/largest span, 65535/sum of spans)` (faiss/utils/quantize_lut.cpp), so an approximate
  sum is within `eps = M/(2a)` of the exact one, and every item left out of the shortlist has exact
  `g <= last + eps` (last: the shortlist's smallest approximate g).
- *Test.* A left-out item's score reaches t only if `ip >= t*n`, i.e. `g + beta*n^2 >= t*n`; as
  `t*n - beta*n^2` is concave in n, `last + eps < min(t*lo - beta*lo^2, t*hi - beta*hi^2)` rules that
  out for every n in [lo, hi] (raw inner products: `last + eps < t`).
- *Threshold.* t must not exceed the final k-th best score: it is the engine's running k-th best,
  raised by the shortlist's own exactly re-scored k-th best (any k items' k-th best is a lower
  bound). Before any is known (the first run of a search), the k-th best of a sample of the run
  (every 8th item: an eighth of a scan) gives t. A query whose test fails is searched again with
  4x the shortlist and the raised t, at worst over the whole run.

The shortlist is re-scored with float32 tables and exact norms, so the returned scores equal the
inner products (or cosines) of the decoded vectors to float32 rounding (another summation order, not
the same bits), and the top-k equals exact search up to items whose scores differ by less than that.
Identical codes get identical scores (the same table entries summed in the same order).
"""

from __future__ import annotations

import numpy as np

from ..entropy import pack_nibbles, unpack_nibbles

#: First shortlist length per query by default (at least twice the k asked for): work, not results.
SHORTLIST = 64
#: A run's sample (every _STRIDE-th item) gives a first threshold without a full scan.
_STRIDE = 8
#: Slack added to the quantisation bound for float32 rounding in faiss and here, relative to the
#: largest table entry per sub-space (float32 resolution is ~1.2e-7).
_SLACK = 1e-5
#: Candidate codes gathered at once when re-scoring (bounds memory).
_GATHER = 1 << 23


def _pairs(tables: np.ndarray) -> np.ndarray:
    """Tables (..., M, 16) -> (..., ceil(M/2), 256): entry b of pair j is the sum for the two
    sub-spaces of byte j of a packed code, so a packed code is scored with M/2 lookups."""
    M = tables.shape[-2]
    if M % 2:
        tables = np.concatenate([tables, np.zeros_like(tables[..., :1, :])], axis=-2)
    even, odd = tables[..., 0::2, :], tables[..., 1::2, :]
    return (even[..., None, :] + odd[..., :, None]).reshape(*even.shape[:-1], 256)


def _quantisation_error(tables: np.ndarray) -> np.ndarray:
    """Largest |approximate - exact| of a faiss fast-scan sum, per query, for tables (q, M, 16)."""
    span = tables.max(axis=2) - tables.min(axis=2)
    per_entry = np.maximum(span.max(axis=1) / 255.0, span.sum(axis=1) / 65535.0) / 2
    return tables.shape[1] * (per_entry + _SLACK * np.abs(tables).max(axis=(1, 2))) + 1e-6


class FastScanIndex:
    """4-bit PQ codes of a run of items, as a faiss fast-scan index plus the packed codes themselves.

    Also holds bounds [norm_lo, norm_hi] of the items' reconstruction norms, found with two top-1
    fast-scan searches of +-|x|^2 (no per-item norm is computed), and, for long runs, a `sample`
    index over every `stride`-th item.
    """

    def __init__(self, centroids: np.ndarray, codes: np.ndarray, *, sample: bool = True) -> None:
        import faiss

        M, K, dsub = centroids.shape
        self.M, self.items = M, len(codes)
        self.packed = pack_nibbles(codes)  # faiss's IndexPQ layout for 4-bit codes
        self.sqnorms = (centroids.astype(np.float32) ** 2).sum(axis=2)  # (M, K)
        self.sqpairs = _pairs(self.sqnorms).ravel()  # (ceil(M/2) * 256,)
        wide = np.concatenate([centroids, self.sqnorms[..., None]], axis=2).astype(np.float32)
        pq = faiss.IndexPQ(M * (dsub + 1), M, 4, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(wide.ravel(), pq.pq.centroids)
        faiss.copy_array_to_vector(self.packed.ravel(), pq.codes)
        pq.is_trained, pq.ntotal = True, self.items
        self.index = faiss.IndexPQFastScan(pq)
        probe = np.zeros((2, M, dsub + 1), dtype=np.float32)
        probe[0, :, -1], probe[1, :, -1] = 1.0, -1.0  # tables +|c|^2 and -|c|^2
        top, _ = self.index.search(probe.reshape(2, -1), 1)
        err = float(_quantisation_error(self.sqnorms[None])[0])
        self.norm_lo = float(np.sqrt(max(0.0, -top[1, 0] - err)))
        self.norm_hi = float(np.sqrt(max(0.0, top[0, 0] + err)))
        self.stride = _STRIDE if sample and self.items >= _STRIDE * SHORTLIST else 1
        self.sample = FastScanIndex(centroids, codes[:: self.stride], sample=False) if self.stride > 1 else None

    def codes(self) -> dict[str, np.ndarray]:
        """The run's codes as the codec's `unpack` gives them: {"codes": (items, M) uint8}."""
        return {"codes": unpack_nibbles(self.packed, self.M)}


class FastScanRanker:
    """Queries prepared for `FastScanIndex` runs: `ranker(index, keep, threshold) -> (positions, scores)`.

    `Q` are the queries already rotated into the codec's space (the rotation is orthogonal, so inner
    products are unchanged). For each query the result holds every item of the run whose exact score
    could reach the top `keep` given the running k-th best `threshold` (-inf while fewer than `keep`
    items are known), with exact scores (cosines when `normalize`); rows are padded with position -1
    and score -inf.
    """

    def __init__(self, centroids: np.ndarray, Q: np.ndarray, normalize: bool, shortlist: int | None = None) -> None:
        M, K, dsub = centroids.shape
        self.M, self.K, self.normalize = M, K, normalize
        self.shortlist = SHORTLIST if shortlist is None else shortlist
        self.sub = Q.reshape(len(Q), M, dsub).astype(np.float32)
        by_space = np.matmul(self.sub.transpose(1, 0, 2), centroids.transpose(0, 2, 1).astype(np.float32))
        self.tables = np.ascontiguousarray(by_space.transpose(1, 0, 2))  # (q, M, K) centroid . query
        self.pairs = _pairs(self.tables).reshape(len(Q), -1)  # (q, ceil(M/2) * 256)
        self.offsets = (np.arange((M + 1) // 2) * 256).astype(np.intp)

    def __call__(self, index: FastScanIndex, keep: int, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, n = len(self.sub), index.items
        positions = np.full((q, 0), -1, dtype=np.int64)
        scores = np.full((q, 0), -np.inf, dtype=np.float32)
        floor = np.asarray(threshold, dtype=np.float64).copy()
        length = min(n, max(2 * keep, self.shortlist))
        unknown = np.flatnonzero(np.isneginf(floor))
        if len(unknown) and index.sample is not None and index.sample.items >= keep:
            # any `keep` items' k-th best exact score is a floor; about keep*stride items score above it
            _, found = index.sample.index.search(self._wide(unknown, np.zeros(len(unknown))), keep)
            floor[unknown] = self._exact(index, unknown, found * index.stride).min(axis=1)
        pending = np.arange(q)
        while len(pending):
            t = floor[pending]
            beta = np.maximum(t, 0.0) / max(index.norm_lo + index.norm_hi, 1e-30) if self.normalize else np.zeros_like(t)
            approx, found = index.index.search(self._wide(pending, beta), length)
            exact = self._exact(index, pending, found)
            if length >= keep:  # the shortlist's own k-th best exact score is a floor too
                t = np.maximum(t, np.partition(exact, length - keep, axis=1)[:, length - keep])
                floor[pending] = t
            tables = self.tables[pending] - beta[:, None, None].astype(np.float32) * index.sqnorms[None]
            done = (length >= n) | (approx[:, -1] + _quantisation_error(tables) < self._bound(t, beta, index))
            if length > positions.shape[1]:
                pad = length - positions.shape[1]
                positions = np.pad(positions, ((0, 0), (0, pad)), constant_values=-1)
                scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            rows = pending[done]
            positions[rows, :length], scores[rows, :length] = found[done], exact[done]
            pending = pending[~done]
            length = min(n, 4 * length)
        return positions, scores

    def _wide(self, rows: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Queries for the extended centroids: each sub-vector followed by -beta, (len(rows), M*(dsub+1))."""
        wide = np.empty((len(rows), self.M, self.sub.shape[2] + 1), dtype=np.float32)
        wide[:, :, :-1], wide[:, :, -1] = self.sub[rows], -beta[:, None]
        return wide.reshape(len(rows), -1)

    def _bound(self, t: np.ndarray, beta: np.ndarray, index: FastScanIndex) -> np.ndarray:
        """Items whose g = ip - beta*|x|^2 is below this score below t.

        Cosine: ip <= g + beta*n^2 < t*n must hold for every norm n in [lo, hi]; t*n - beta*n^2 is
        concave in n, so its minimum over the range is at an end. Raw inner products: g = ip < t.
        """
        if not self.normalize:
            return t
        lo, hi = index.norm_lo, index.norm_hi
        with np.errstate(invalid="ignore"):  # -inf * 0 when lo = 0: no floor yet, nothing is ruled out
            bound = np.minimum(t * lo - beta * lo * lo, t * hi - beta * hi * hi)
        return np.where(np.isneginf(t), -np.inf, bound)

    def _exact(self, index: FastScanIndex, rows: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Exact scores (float tables, exact norms) of items `found` (p, length) for queries `rows`."""
        p, length = found.shape
        out = np.empty((p, length), dtype=np.float32)
        width = self.pairs.shape[1]
        step = max(1, _GATHER // max(1, length * len(self.offsets)))
        for i in range(0, p, step):
            idx = index.packed[found[i : i + step]] + self.offsets  # (s, length, M/2): a lookup per byte
            ip = self.pairs.take(idx + (rows[i : i + step] * width)[:, None, None]).sum(axis=2, dtype=np.float32)
            if self.normalize:
                norms = np.sqrt(index.sqpairs.take(idx).sum(axis=2, dtype=np.float32))
                ip /= np.where(norms > 0, norms, np.float32(1.0))
            out[i : i + step] = ip
        return out
