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

Inside the shortlist, the best 2k are re-scored first (their k-th best raises t), then only those
whose `g + eps` reaches the bound: the others cannot score t. Inverted lists (`IVFFastScanIndex`)
are searched the same way, with the probed lists of each query as its run (faiss's IVF scan of
them, `search_preassigned`) and the exact norms' range as [lo, hi]; 8-bit codes there are scanned
with float tables, so eps is float rounding only.

The shortlist is re-scored with float32 tables and exact norms, so the returned scores equal the
inner products (or cosines) of the decoded vectors to float32 rounding (another summation order, not
the same bits), and the top-k equals exact search up to items whose scores differ by less than that.
Identical codes get identical scores (the same table entries summed in the same order).
"""

from __future__ import annotations

from typing import Any

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


def _extended(centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid |c|^2 (M, K), its byte tables (bytes per code * 256,), and the centroids extended by it
    (M, K, dsub + 1): the codebook whose inner products with `FastScanRanker._wide` queries are g."""
    sqnorms = (centroids.astype(np.float32) ** 2).sum(axis=2)
    wide = np.concatenate([centroids, sqnorms[..., None]], axis=2).astype(np.float32)
    return sqnorms, _byte_tables(sqnorms).ravel(), wide


def _byte_tables(tables: np.ndarray) -> np.ndarray:
    """Tables (..., M, K) as one 256-entry table per byte of a packed code: pairs of sub-spaces for
    4-bit codes (`_pairs`), the tables themselves for 8-bit ones."""
    return tables if tables.shape[-1] == 256 else _pairs(tables)


def _quantisation_error(tables: np.ndarray, rounded: bool = True) -> np.ndarray:
    """Largest |approximate - exact| of a faiss sum, per query, for tables (q, M, K): fast-scan's
    8-bit rounding of 4-bit tables (`rounded`), else float rounding only."""
    per_entry: np.ndarray | float = 0.0
    if rounded:
        by_entry = np.ascontiguousarray(np.moveaxis(tables, 2, 0))  # max/min over the first axis: 10x faster
        span = by_entry.max(axis=0) - by_entry.min(axis=0)  # than over a last axis of 16 entries (same values)
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
        self.M, self.items, self.rounded = M, len(codes), True
        self.packed = pack_nibbles(codes)  # faiss's IndexPQ layout for 4-bit codes
        self.sqnorms, self.sqbytes, wide = _extended(centroids)
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

    def search(self, rows: np.ndarray, wide: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's approximate top-k g (distances, positions) of `wide` queries (those numbered `rows`)."""
        return self.index.search(wide, k)

    def norm_range(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi] bounding the norms of the items queries `rows` scan: the run's, for each."""
        return np.full(len(rows), self.norm_lo), np.full(len(rows), self.norm_hi)

    def item_norms(self, idx: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Reconstruction norms of items `found`, from their byte-table indices `idx` (the packed bytes)."""
        return np.sqrt(self.sqbytes.take(idx).sum(axis=-1, dtype=np.float32))

    def codes(self) -> dict[str, np.ndarray]:
        """The run's codes as the codec's `unpack` gives them: {"codes": (items, M) uint8}."""
        return {"codes": unpack_nibbles(self.packed, self.M)}


class IVFFastScanIndex:
    """4-bit or 8-bit PQ codes grouped in inverted lists, as a faiss IVF index over the extended
    centroids (4-bit: `IndexIVFPQFastScan`, 8-bit rounded tables; 8-bit: `IndexIVFPQ`, float tables,
    so only float rounding separates its g from the exact one): `FastScanRanker` searches it as a run
    whose items are those of each query's `nprobe` lists, so its result is exact over the probed
    lists (as a numpy scan of them), not a shortlist.

    `codes` (n, M) are in list order (list l holds rows offsets[l]:offsets[l+1]) and the faiss ids
    are those rows. `list_centroids` (nlist, d) are in the codec's rotated space; `norms` are the
    items' exact reconstruction norms (their range bounds the cosine test). `sample` is the same
    lists over every `stride`-th row, searched first for a threshold that is a floor over the
    probed lists (its items are probed items). `probe` sets each query's lists before a search."""

    def __init__(self, centroids: np.ndarray, codes: np.ndarray, offsets: np.ndarray, list_centroids: np.ndarray,
                 norms: np.ndarray, *, sample: bool = True) -> None:
        M, K, dsub = centroids.shape
        if K not in (16, 256):
            raise ValueError(f"IVF fast-scan needs 4- or 8-bit codes, got K={K}")
        self.M, self.items, self.rounded = M, len(codes), K == 16
        self.packed = pack_nibbles(codes) if self.rounded else np.ascontiguousarray(codes, dtype=np.uint8)
        self.sqnorms, _, wide = _extended(centroids)  # norms are held exactly: no byte tables of |c|^2
        self.norms = np.asarray(norms, dtype=np.float32)
        # each list's norm range, widened by float32 rounding (an empty list: an empty range)
        sizes = np.diff(offsets)
        starts = np.minimum(offsets[:-1], max(len(norms) - 1, 0))
        lo = np.where(sizes > 0, np.minimum.reduceat(self.norms, starts) if len(norms) else 0.0, np.inf)
        hi = np.where(sizes > 0, np.maximum.reduceat(self.norms, starts) if len(norms) else 0.0, -np.inf)
        self._list_lo = np.maximum(0.0, lo.astype(np.float64) * (1 - 1e-6))
        self._list_hi = hi.astype(np.float64) * (1 + 1e-6)
        self.index = self._build(wide, list_centroids, offsets)
        self.stride = _STRIDE if sample and self.items >= _STRIDE * SHORTLIST else 1
        self.sample: IVFFastScanIndex | None = None
        if self.stride > 1:
            rows = np.arange(0, self.items, self.stride)
            sizes = np.diff(np.searchsorted(rows, offsets))  # sampled rows per list
            self.sample = IVFFastScanIndex(centroids, codes[rows], np.concatenate([[0], np.cumsum(sizes)]),
                                           list_centroids, norms[rows], sample=False)

    def _build(self, wide: np.ndarray, list_centroids: np.ndarray, offsets: np.ndarray) -> Any:
        import faiss

        M, _, dw = wide.shape
        nlist = len(list_centroids)
        coarse = np.zeros((nlist, M, dw), dtype=np.float32)  # 0 against the query's -beta slots
        coarse[:, :, :-1] = list_centroids.reshape(nlist, M, dw - 1)
        self._quantizer = faiss.IndexFlatIP(M * dw)  # the index does not own it: kept alive here
        self._quantizer.add(coarse.reshape(nlist, -1))
        ivf = faiss.IndexIVFPQ(self._quantizer, M * dw, nlist, M, 4 if self.rounded else 8, faiss.METRIC_INNER_PRODUCT)
        ivf.by_residual = False
        faiss.copy_array_to_vector(wide.ravel(), ivf.pq.centroids)
        ivf.is_trained = True
        rows = np.arange(self.items, dtype=np.int64)
        for lst in range(nlist):
            lo, hi = int(offsets[lst]), int(offsets[lst + 1])
            if hi > lo:
                ivf.invlists.add_entries(lst, hi - lo, faiss.swig_ptr(rows[lo:hi]), faiss.swig_ptr(self.packed[lo:hi]))
        ivf.ntotal = self.items
        return faiss.IndexIVFPQFastScan(ivf) if self.rounded else ivf

    def probe(self, lists: np.ndarray, scores: np.ndarray) -> None:
        """Each query's lists (q, nprobe) and their centroid scores, for this index and its sample alike
        (the sample's lists must be the probed lists); chosen once per batch, not per faiss call."""
        self._probed = np.ascontiguousarray(lists, dtype=np.int64), np.ascontiguousarray(scores, dtype=np.float32)
        self.index.nprobe = lists.shape[1]
        if self.sample is not None:
            self.sample.probe(lists, scores)

    def search(self, rows: np.ndarray, wide: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's approximate top-k g (distances, rows) of `wide` queries (those numbered `rows`) over
        their probed lists."""
        lists, scores = self._probed
        return self.index.search_preassigned(wide, k, lists[rows], scores[rows])

    def norm_range(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi] bounding the norms of the items queries `rows` scan: over each one's probed lists
        (narrower than the whole archive's, so the cosine test prunes more)."""
        lists = self._probed[0][rows]
        lo, hi = self._list_lo[lists].min(axis=1), self._list_hi[lists].max(axis=1)
        empty = hi < lo  # every probed list empty: nothing to bound
        return np.where(empty, 0.0, lo), np.where(empty, 0.0, hi)

    def item_norms(self, idx: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Reconstruction norms of rows `found` (-1: any), held exactly."""
        return self.norms[found]


class FastScanRanker:
    """Queries prepared for `FastScanIndex` runs or `IVFFastScanIndex` lists:
    `ranker(index, keep, threshold) -> (positions, scores)`.

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
        self.byte_tables = _byte_tables(self.tables).reshape(len(Q), -1)  # (q, bytes per code * 256)
        self.offsets = (np.arange(self.byte_tables.shape[1] // 256) * 256).astype(np.intp)

    def __call__(self, index: FastScanIndex | IVFFastScanIndex, keep: int, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, n = len(self.sub), index.items
        positions = np.full((q, 0), -1, dtype=np.int64)
        scores = np.full((q, 0), -np.inf, dtype=np.float32)
        floor = np.asarray(threshold, dtype=np.float64).copy()
        length = min(n, max(2 * keep, self.shortlist))
        unknown = np.flatnonzero(np.isneginf(floor))
        if len(unknown) and index.sample is not None and index.sample.items >= keep:
            # any `keep` items' k-th best exact score is a floor; about keep*stride items score above it
            _, found = index.sample.search(unknown, self._wide(unknown, np.zeros(len(unknown))), keep)
            floor[unknown] = self._exact(index, unknown[:, None], np.where(found >= 0, found * index.stride, -1)).min(axis=1)
        pending = np.arange(q)
        while len(pending):
            t = floor[pending]
            lo, hi = index.norm_range(pending)
            beta = np.maximum(t, 0.0) / np.maximum(lo + hi, 1e-30) if self.normalize else np.zeros_like(t)
            approx, found = index.search(pending, self._wide(pending, beta), length)
            tables = self.tables[pending] - beta[:, None, None].astype(np.float32) * index.sqnorms[None]
            eps = _quantisation_error(tables, index.rounded)
            exact = np.full(found.shape, -np.inf, dtype=np.float32)
            head = min(length, 2 * keep)  # the best approximate ones first: they give a floor
            exact[:, :head] = self._exact(index, pending[:, None], found[:, :head])
            if length >= keep:  # the shortlist's own k-th best exact score is a floor too
                t = np.maximum(t, np.partition(exact[:, :head], head - keep, axis=1)[:, head - keep])
            bound = self._bound(t, beta, lo, hi)
            # the rest only where the approximate score leaves the floor within reach: others are below it
            need = (found >= 0) & (approx + eps[:, None] >= bound[:, None])
            need[:, :head] = False
            r, c = np.nonzero(need)
            if len(r):
                exact[r, c] = self._exact(index, pending[r], found[r, c])
                if length >= keep:
                    t = np.maximum(t, np.partition(exact, length - keep, axis=1)[:, length - keep])
                    bound = self._bound(t, beta, lo, hi)
            floor[pending] = t
            whole = (length >= n) | (found[:, -1] < 0)  # every item of the run (IVF: of the probed lists) found
            done = whole | (approx[:, -1] + eps < bound)
            if length > positions.shape[1]:
                pad = length - positions.shape[1]
                positions = np.pad(positions, ((0, 0), (0, pad)), constant_values=-1)
                scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            rows = pending[done]
            kept = np.where(np.isneginf(exact), -1, found)  # items ruled out unscored are padding too
            positions[rows, :length], scores[rows, :length] = kept[done], exact[done]
            pending = pending[~done]
            length = min(n, 4 * length)
        return positions, scores

    def _wide(self, rows: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Queries for the extended centroids: each sub-vector followed by -beta, (len(rows), M*(dsub+1))."""
        wide = np.empty((len(rows), self.M, self.sub.shape[2] + 1), dtype=np.float32)
        wide[:, :, :-1], wide[:, :, -1] = self.sub[rows], -beta[:, None]
        return wide.reshape(len(rows), -1)

    def _bound(self, t: np.ndarray, beta: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Items whose g = ip - beta*|x|^2 is below this score below t.

        Cosine: ip <= g + beta*n^2 < t*n must hold for every norm n in [lo, hi]; t*n - beta*n^2 is
        concave in n, so its minimum over the range is at an end. Raw inner products: g = ip < t.
        """
        if not self.normalize:
            return t
        with np.errstate(invalid="ignore"):  # -inf * 0 when lo = 0: no floor yet, nothing is ruled out
            bound = np.minimum(t * lo - beta * lo * lo, t * hi - beta * hi * hi)
        return np.where(np.isneginf(t), -np.inf, bound)

    def _exact(self, index: FastScanIndex | IVFFastScanIndex, rows: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Exact scores (float tables, exact norms) of items `found` for queries `rows` (an array
        broadcast against `found`: (p, 1) for (p, length) items, or one query per item); -inf where
        `found` is -1 (fewer items than asked in the probed lists)."""
        out = np.empty(found.shape, dtype=np.float32)
        width = self.byte_tables.shape[1]
        step = max(1, _GATHER // max(1, (found.size // max(1, len(found))) * len(self.offsets)))
        for i in range(0, len(found), step):
            idx = index.packed[found[i : i + step]] + self.offsets  # (..., M/2): a lookup per byte
            ip = self.byte_tables.take(idx + (rows[i : i + step] * width)[..., None]).sum(axis=-1, dtype=np.float32)
            if self.normalize:
                norms = index.item_norms(idx, found[i : i + step])
                ip /= np.where(norms > 0, norms, np.float32(1.0))
            out[i : i + step] = ip
        return np.where(found >= 0, out, -np.inf).astype(np.float32)
