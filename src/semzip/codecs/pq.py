"""Product quantisation with an optional learned rotation (OPQ) and entropy-coded indices.

Training uses faiss (OPQ rotation, k-means per sub-space). Encoding assigns codes with batched BLAS
matrix products in numpy, which on one core is several times faster than faiss's own encoder for
16-dimensional sub-spaces. Indices are ANS-coded with per-sub-space frequencies counted on the
training set, so skewed centroid usage lowers the counted rate below M x log2 K; `raw=1` stores
them fixed-width instead (M x log2 K bits, no entropy decoding: the fast mode to search).
Codes are uint8 for K <= 256 (uint16 above), so codes kept in memory take M or 2M bytes per item.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._clusters import assignment_matrix, nearest
from .._errors import FormatError, InputError, SpecError
from .._exact import ExactMatrix
from .._threads import limited_threads
from ..entropy import FrequencyTable, SymbolReader, encode_symbols
from ._base import Codec, Codes
from ._fastscan import FastScanIndex, FastScanRanker
from ._registry import register

#: Elements of the (M, batch, K) score block; bounds memory and keeps blocks cache-friendly.
_SCORE_BLOCK = 1 << 20
#: Rows whose reconstruction norms are summed at once (bounds memory).
_NORM_ROWS = 1 << 16


@register
class PQCodec(Codec):
    """`pq:M=32,K=256,opq=1`: M sub-spaces, K centroids each (a power of two), OPQ rotation on/off;
    `raw=1` stores indices fixed-width (M log2 K bits, no ANS): nothing to entropy-decode to search."""

    name = "pq"
    codec_id = b"PQ  "
    stacking = "any"
    spec_params = {"M": int, "K": int, "opq": bool, "raw": bool}
    later_params = {"raw": False}  # written only when 1: specs and hashes from before it stay canonical
    rate_params = ("M",)
    param_help = {"M": "sub-spaces; must divide the width (rate: M x log2 K bits before entropy coding)",
                  "K": "centroids per sub-space, a power of two (16: 4-bit codes, fastest search; 256: 8-bit)",
                  "opq": "learn a rotation first (OPQ): better fidelity, a d x d matrix more in the codec file",
                  "raw": "store indices fixed-width instead of ANS-coded: a few bits more, nothing to decode to search"}
    example_specs = ("pq:M=4,K=16,opq=0", "pq:M=8,K=16,opq=1", "pq:M=16,K=16,opq=1", "pq:M=16,K=16,opq=1,raw=1")

    def __init__(self, M: int = 32, K: int = 256, opq: bool = True, raw: bool = False, *, seed: int = 0,
                 niter: int = 25, opq_iter: int = 50, max_train: int = 65536, threads: int = 1) -> None:
        """Size: a scikit-learn estimator takes every hyper-parameter as a constructor keyword
        (`get_params`/`set_params` read them): the spec's structural ones, then the training options."""
        self.M = M
        self.K = K
        self.opq = opq
        self.raw = raw
        self.seed = seed
        self.niter = niter
        self.opq_iter = opq_iter
        self.max_train = max_train
        self.threads = threads

    def _check_params(self) -> None:
        if not 1 <= self.M <= 4096:
            raise SpecError(f"pq:M must be in [1, 4096], got {self.M}")
        if self.K < 2 or self.K > 65536 or self.K & (self.K - 1):
            raise SpecError(f"pq:K must be a power of two in [2, 65536], got {self.K}")

    @property
    def nbits(self) -> int:
        return int(math.log2(self.K))

    @property
    def _dtype(self) -> type:
        return np.uint8 if self.K <= 256 else np.uint16

    @property
    def fixed_bits(self) -> float:
        return float(self.M * self.nbits)

    # ---- training --------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        with limited_threads(self.threads):  # faiss k-means and OPQ give other results at other thread counts
            self._train(X)

    def _train(self, X: np.ndarray) -> None:
        import faiss

        n, d = X.shape
        if d % self.M:
            raise InputError(f"pq:M={self.M} must divide the embedding width {d}")
        if n < self.K:
            raise InputError(f"pq:K={self.K} needs at least {self.K} training vectors, got {n}")
        if self.opq and n < d:  # faiss's OPQ crashes the process below this
            raise InputError(f"pq:opq=1 needs at least as many training vectors as dimensions ({d}), "
                             f"got {n}; use opq=0 or more training data")
        rng = np.random.default_rng(self.seed)
        train = X if n <= self.max_train else X[rng.choice(n, self.max_train, replace=False)]
        if self.opq:
            opq = faiss.OPQMatrix(d, self.M)
            opq.niter = self.opq_iter
            opq_pq = self._faiss_pq(d, niter=4)  # seeded, and quiet on small training sets
            opq.pq = opq_pq
            opq.train(train)
            self.rotation_ = faiss.vector_to_array(opq.A).reshape(d, d).astype(np.float32)
        else:
            self.rotation_ = None
        pq = self._faiss_pq(d, niter=self.niter)
        pq.train(self.rotate(train))
        self.centroids_ = faiss.vector_to_array(pq.centroids).reshape(self.M, self.K, d // self.M)
        self._prepare()
        self.table_ = self._uniform() if self.raw else FrequencyTable.fit(self._assign(self.rotate(X)), self.K)

    def _uniform(self) -> FrequencyTable:
        """The table of `raw=1` codecs: it only tells the fixed-width coder the alphabet; not stored."""
        return FrequencyTable(np.ones((self.M, self.K), dtype=np.uint32))

    def _faiss_pq(self, d: int, niter: int) -> Any:
        import faiss

        pq = faiss.ProductQuantizer(d, self.M, self.nbits)
        pq.cp.seed = self.seed
        pq.cp.niter = niter
        pq.cp.min_points_per_centroid = 1  # small training sets are the caller's choice, not a warning
        return pq

    def _prepare(self) -> None:
        """Derived arrays: transposed centroids with -|c|^2/2 as an extra row (assignment),
        centroids viewed as one opaque row each with per-sub-space offsets (a single fast gather),
        centroid norms^2 (reconstruction norms) and the exact inverse rotation (machine-independent
        decoding, see semzip._exact)."""
        c = np.ascontiguousarray(self.centroids_, dtype=np.float32)
        self._assigner = assignment_matrix(c)
        self._rows = c.reshape(self.M * self.K, -1).view(np.dtype((np.void, 4 * c.shape[2]))).ravel()
        self._offsets = np.arange(self.M, dtype=np.int64) * self.K
        self._sqnorms = (c**2).sum(axis=2).ravel()  # centroid |c|^2 at the same flat index, for reconstruction norms
        self._unrotate = None if self.rotation_ is None else ExactMatrix(self.rotation_)

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """X (n, d) in the space the sub-quantisers work in: OPQ-rotated, or as given without OPQ."""
        return X if self.rotation_ is None else X @ self.rotation_.T

    def _assign(self, Y: np.ndarray) -> np.ndarray:
        """Nearest centroid per sub-space: argmax of y.c - |c|^2/2, one batched product per block."""
        n, d = Y.shape
        M = self.M
        per_space = np.asarray(Y, dtype=np.float32).reshape(n, M, d // M).transpose(1, 0, 2)
        rows = max(16, _SCORE_BLOCK // (M * self.K))
        return nearest(per_space, self._assigner, rows).T.astype(self._dtype)

    # ---- coding ----------------------------------------------------------------------------------
    def _quantize(self, X: np.ndarray) -> Codes:
        return {"codes": self._assign(self.rotate(X))}

    def reconstruct(self, codes: Codes) -> np.ndarray:
        Y = np.take(self._rows, codes["codes"] + self._offsets).view(np.float32)
        return Y if self._unrotate is None else self._unrotate.left_product(Y).astype(np.float32)

    # ---- compressed-domain search -----------------------------------------------------------------
    def _scorer(self, Q: np.ndarray) -> Callable[[Codes], np.ndarray]:
        """Asymmetric distance computation: one (M*K, q) lookup table of centroid-query products.

        An item's score is the sum of its M table rows: for one query a gather-and-sum per sub-space,
        for several a sparse one-hot (n, M*K) matrix times the table (faster from two queries on):
        n*M*q additions instead of decoding (n*d) and rotating (n*d*d).
        """
        import scipy.sparse

        q = len(Q)
        lut = self._lut(Q)
        per_space = lut.reshape(self.M, self.K, q)[..., 0]

        def score(codes: Codes) -> np.ndarray:
            c = codes["codes"]
            if q == 1:
                out = np.zeros(len(c), dtype=np.float32)
                for m in range(self.M):
                    out += per_space[m][c[:, m]]
                return out[:, None]
            rows = scipy.sparse.csr_matrix(
                (np.ones(c.size, np.float32), (c + self._offsets).ravel(), np.arange(0, c.size + 1, self.M)),
                shape=(len(c), self.M * self.K))
            return np.asarray(rows @ lut, dtype=np.float32)

        return score

    def _lut(self, Q: np.ndarray) -> np.ndarray:
        """(M*K, q) float32 products of every centroid with its sub-space of each rotated query."""
        sub = self.rotate(Q).reshape(len(Q), self.M, -1)
        return np.ascontiguousarray(np.einsum("mkd,qmd->mkq", self.centroids_, sub).reshape(-1, len(Q)))

    def query_tables(self, Q: np.ndarray) -> np.ndarray:
        """(q, M, K) lookup tables, each made from its query alone, as `scorer` makes one query's:
        with `pair_scores`, a query's scores do not depend on the other queries of its batch."""
        return np.stack([self._lut(Q[i : i + 1]).reshape(self.M, self.K) for i in range(len(Q))])

    def pair_scores(self, tables: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(q, w) float32 scores of item codes (q, w, M), row i scored with query i's table: the
        same sums, in the same order, as one query's `scorer`."""
        rows = np.arange(len(tables))[:, None]
        out = np.zeros(codes.shape[:2], dtype=np.float32)
        for m in range(self.M):
            out += tables[rows, m, codes[..., m]]
        return out

    @property
    def has_fast_index(self) -> bool:
        """4-bit codes (K=16) are searched through faiss fast-scan (codecs/_fastscan.py)."""
        return self.K == 16

    def _fast_index(self, codes: Codes) -> FastScanIndex:
        return FastScanIndex(self.centroids_, codes["codes"])

    def _fast_ranker(self, Q: np.ndarray, normalize: bool, shortlist: int | None) -> FastScanRanker:
        return FastScanRanker(self.centroids_, self.rotate(Q), normalize, shortlist)

    def norms(self, codes: Codes) -> np.ndarray:
        """Exact: sub-spaces are disjoint and the rotation is orthogonal, so |x|^2 = sum of centroid |c|^2.
        In runs of rows: the table indices and terms take 16 bytes per code, 5 GB at once for 10M items."""
        c = codes["codes"]
        out = np.empty(len(c), dtype=np.float32)
        for i in range(0, len(c), _NORM_ROWS):  # each row is summed alone: the same values in any runs
            part = c[i : i + _NORM_ROWS]
            out[i : i + len(part)] = np.sqrt(np.take(self._sqnorms, part + self._offsets).sum(axis=1))
        return out

    def pack(self, codes: Codes) -> bytes:
        return encode_symbols([(self.table_, codes["codes"])], raw=self.raw)

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        reader = SymbolReader(data)
        if self.raw and not reader.raw:
            raise FormatError("pq raw=1 payload is entropy-coded: it was not written by this codec")
        codes = reader.read(self.table_, n, dtype=self._dtype)
        reader.finish()
        return {"codes": codes}

    def estimated_bits(self, X: object) -> np.ndarray:
        if self.raw:
            return super().estimated_bits(X)
        return self.table_.information_bits(self.quantize(X)["codes"])

    # ---- state -----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        state = {"centroids": self.centroids_}
        if not self.raw:
            state["counts"] = self.table_.counts
        if self.rotation_ is not None:
            state["rotation"] = self.rotation_
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        d = self.n_features_in_
        if d % self.M:
            raise FormatError(f"pq codec file: M={self.M} does not divide width {d}")
        expect: dict[str, tuple[int, ...]] = {"centroids": (self.M, self.K, d // self.M)}
        if not self.raw:
            expect["counts"] = (self.M, self.K)
        if self.opq:
            expect["rotation"] = (d, d)
        if set(state) != set(expect) or any(state[k].shape != s for k, s in expect.items()):
            got = {k: v.shape for k, v in state.items()}
            raise FormatError(f"pq codec file arrays {got} do not match {self.spec} at width {d}")
        self.centroids_ = state["centroids"].astype(np.float32)
        self.rotation_ = state["rotation"].astype(np.float32) if self.opq else None
        self.table_ = self._uniform() if self.raw else FrequencyTable(state["counts"])
        self._prepare()

    def fit_info(self) -> dict[str, object]:
        return {"seed": self.seed, "niter": self.niter, "opq_iter": self.opq_iter, "max_train": self.max_train,
                "threads": self.threads}
