"""Residual quantisation with beam search: an embedded (progressive) code with a rate guarantee.

Stage m quantises what stages 0..m-1 left (faiss `ResidualQuantizer`, progressive training, beam
search to encode), so every prefix of an item's code is itself a code: an item can stop after any
stage and still decode. Each item of a block carries its own number of stages, chosen to meet a
budget (`encode_within`; `write_archive(budget_bits=B)`, block overhead included) by Lagrangian
rate-distortion allocation: the stages that remove the most squared error per bit are kept, over
the whole block. The bytes written are then measured and the allocation tightened until the block
fits, so the budget holds on any input (familiar, unfamiliar, random) or the block is refused.
Stage indices are ANS-coded with per-stage frequencies learned at fit time (raw fixed-width when
that is smaller), stage counts with the block's own histogram. Decoding adds codebook rows in
stage order, element-wise: the same floats on every machine.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from .._errors import FormatError, InputError, SpecError
from .._threads import limited_threads
from .._validate import check_embeddings, l2_normalize
from ..entropy import FrequencyTable, SymbolReader, encode_symbols
from ._base import Codes, ProgressiveCodec
from ._registry import register

#: Tightening rounds before a block that will not fit its budget is refused.
_ROUNDS = 12
_LAYOUT = struct.Struct("<I")


@register
class RQCodec(ProgressiveCodec):
    """`rq:M=32,K=256,beam=8`: up to M residual stages of K centroids (log2 K bits each before entropy
    coding); with a budget, each item keeps the stages worth their bits, and every block fits it."""

    name = "rq"
    codec_id = b"RQ  "
    stacking = "any"
    spec_params = {"M": int, "K": int, "beam": int}
    rate_params = ("M",)
    param_help = {"M": "most stages per item (rate without a budget: about M x log2 K bits before entropy coding)",
                  "K": "centroids per stage, a power of two from 2 to 4096",
                  "beam": "beam width of the encoder (and of training): wider finds better codes, more slowly"}
    example_specs = ("rq:M=4,K=16,beam=4", "rq:M=8,K=64,beam=4", "rq:M=16,K=256,beam=8")
    idempotent = False  # beam search may code a reconstruction with another, no worse, code

    def __init__(self, M: int = 32, K: int = 256, beam: int = 8, *, seed: int = 0, niter: int = 20,
                 max_train: int = 50_000, threads: int = 1) -> None:
        self.M = M
        self.K = K
        self.beam = beam
        self.seed = seed
        self.niter = niter
        self.max_train = max_train
        self.threads = threads

    def _check_params(self) -> None:
        if not 1 <= self.M <= 255:
            raise SpecError(f"rq:M must be in [1, 255], got {self.M}")
        if self.K < 2 or self.K > 4096 or self.K & (self.K - 1):
            raise SpecError(f"rq:K must be a power of two in [2, 4096], got {self.K}")
        if not 1 <= self.beam <= 256:
            raise SpecError(f"rq:beam must be in [1, 256], got {self.beam}")

    @property
    def nbits(self) -> int:
        return int(math.log2(self.K))

    @property
    def fixed_bits(self) -> float:
        return float(self.M * self.nbits)

    # ---- training --------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        import faiss

        n, d = X.shape
        if n < self.K:
            raise InputError(f"rq:K={self.K} needs at least {self.K} training vectors, got {n}")
        rng = np.random.default_rng(self.seed)
        train = X if n <= self.max_train else X[np.sort(rng.choice(n, self.max_train, replace=False))]
        with limited_threads(self.threads):  # faiss k-means gives other results at other thread counts
            rq = faiss.ResidualQuantizer(d, self.M, self.nbits)
            rq.train_type = faiss.ResidualQuantizer.Train_progressive_dim
            rq.max_beam_size = self.beam
            rq.cp.seed = self.seed
            rq.cp.niter = self.niter
            rq.cp.min_points_per_centroid = 1
            rq.verbose = False
            rq.train(np.ascontiguousarray(train))
        self.codebooks_ = faiss.vector_to_array(rq.codebooks).reshape(self.M, self.K, d).astype(np.float32)
        self._prepare()
        self.table_ = FrequencyTable.fit(self._beam_codes(X), self.K)
        self._bits_of: np.ndarray | None = None  # derived from the table on first use

    def _prepare(self) -> None:
        """A faiss quantizer holding the codebooks (beam-search encoding)."""
        import faiss

        d = self.codebooks_.shape[2]
        rq = faiss.ResidualQuantizer(d, self.M, self.nbits)
        rq.max_beam_size = self.beam
        faiss.copy_array_to_vector(np.ascontiguousarray(self.codebooks_).ravel(), rq.codebooks)
        rq.is_trained = True
        self._rq = rq

    def _beam_codes(self, X: np.ndarray) -> np.ndarray:
        """(n, M) stage indices found by faiss's beam search, unpacked from its LSB-first bit strings.

        The search scores candidates from the codebooks' cross products (faiss `use_beam_LUT`, made
        on the first encode, not on load: M(M-1)/2 x K^2 floats, 130 MB at M=32, K=256), 4-6x
        faster than distances in full width (bench_speed: 4.4k -> 26k vectors/s at M=8); the codes
        it finds are the same up to float ties (20,000 of 20,000 at M=32, 19,998 at M=8)."""
        with limited_threads(self.threads):
            if not self._rq.use_beam_LUT:
                self._rq.use_beam_LUT = 1
                self._rq.compute_codebook_tables()
            packed = self._rq.compute_codes(np.ascontiguousarray(X))
        bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : self.M * self.nbits]
        weights = (1 << np.arange(self.nbits)).astype(np.int64)
        return (bits.reshape(len(X), self.M, self.nbits) @ weights).astype(np.uint16)

    # ---- coding ----------------------------------------------------------------------------------
    def _quantize(self, X: np.ndarray) -> Codes:
        return {"codes": self._beam_codes(X), "stages": np.full(len(X), self.M, dtype=np.uint8)}

    def encode_within(self, X: object, max_bits: float) -> bytes:
        """Bytes of X's codes in at most `max_bits` bits (the block's share of a budget), measured:
        stages are allocated for the target, the block packed and the target tightened by any excess
        (the stage counts' cost, rounding) until it fits; InputError when one stage each does not."""
        self.check_is_fitted()
        X = check_embeddings(X, dim=self.n_features_in_)
        codes = self._beam_codes(X)
        return self._pack_within(codes, self._gains(codes, X), max_bits)[0]

    def truncate_within(self, codes: Codes, max_bits: float) -> bytes:
        """Coded items cut to at most `max_bits` bits, without the originals: each item keeps a prefix
        of its stages, chosen by the error each stage removes from its full stored reconstruction
        (the best reference left), with the same allocation and measurement as `encode_within`."""
        return self._pack_within(codes["codes"], self._stored_gains(codes), max_bits)[0]

    def refine_within(self, have: Codes, full: Codes, max_bits: float) -> np.ndarray:
        """Stage counts (n,) that grow `have`, a cut of `full`, to at most `max_bits` bits for the block:
        each item keeps what it has and gains the stages of `full` worth their bits, allocated and
        measured as in `truncate_within`; InputError when what it has already spends more."""
        return self._pack_within(full["codes"], self._stored_gains(full), max_bits, low=have["stages"])[1]

    def pack_refinement(self, have_stages: np.ndarray, codes: Codes) -> bytes:
        """What a receiver holding `have_stages` stages per item lacks of `codes`: M+1 u16 counts of
        items by number of new stages (padded to 4 bytes), then one symbol stream: each item's number
        of new stages (with that histogram), then stage m's index of every item gaining stage m."""
        have, new = have_stages.astype(np.int64), codes["stages"].astype(np.int64)
        hist = np.bincount(new - have, minlength=self.M + 1)
        if hist.max(initial=0) >= 1 << 16:
            raise InputError(f"rq: blocks hold at most {(1 << 16) - 1} items")
        head = hist.astype("<u2").tobytes()
        gained = [(self._stage_table(m), codes["codes"][(have <= m) & (m < new), m : m + 1]) for m in range(self.M)]
        return head + b"\0" * (-len(head) % 4) + encode_symbols([(_histogram_table(hist), (new - have)[:, None]), *gained])

    def apply_refinement(self, have: Codes, data: bytes | memoryview) -> Codes:
        """`have` grown by a `pack_refinement` payload: its own stages kept, the new ones read."""
        n, view = len(have["stages"]), memoryview(data)
        size = 2 * (self.M + 1) + (-2 * (self.M + 1) % 4)
        if len(view) < size:
            raise FormatError("refinement payload is shorter than its histogram")
        hist = np.frombuffer(view[: 2 * (self.M + 1)], dtype="<u2").astype(np.int64)
        if hist.sum() != n:
            raise FormatError(f"refinement payload counts {hist.sum()} items, the block {n}")
        reader = SymbolReader(view[size:])
        old = have["stages"].astype(np.int64)
        new = old + reader.read(_histogram_table(hist), n, dtype=np.int64)[:, 0]
        if (np.bincount(new - old, minlength=self.M + 1) != hist).any() or (n and new.max() > self.M):
            raise FormatError(f"refinement payload's stage counts disagree with its histogram or pass {self.M} stages")
        codes = have["codes"].copy()
        for m in range(self.M):
            gain = (old <= m) & (m < new)
            codes[gain, m] = reader.read(self._stage_table(m), int(gain.sum()), dtype=np.uint16)[:, 0]
        reader.finish()
        return {"codes": codes, "stages": new.astype(np.uint8)}

    def stage_counts(self, codes: Codes) -> np.ndarray:
        return np.asarray(codes["stages"])

    def with_stages(self, full: Codes, stages: np.ndarray) -> Codes:
        return {"codes": full["codes"], "stages": stages}

    def is_cut_of(self, held: Codes, full: Codes) -> bool:
        stages = held["stages"].astype(np.int64)
        kept = np.arange(self.M)[None, :] < stages[:, None]
        return bool((stages <= full["stages"]).all() and (held["codes"][kept] == full["codes"][kept]).all())

    def _stored_gains(self, codes: Codes) -> np.ndarray:
        """Each stored stage's gain against the full stored reconstruction; -inf for stages it lacks."""
        gains = self._gains(codes["codes"], self.reconstruct(codes))
        gains[np.arange(self.M)[None, :] >= codes["stages"][:, None]] = -np.inf
        return gains

    def _pack_within(self, codes: np.ndarray, gains: np.ndarray, max_bits: float,
                     low: np.ndarray | None = None) -> tuple[bytes, np.ndarray]:
        """The block packed within `max_bits`, and its stage counts (each at least `low`, default 1)."""
        target = max_bits
        floor = np.ones(len(codes), dtype=np.uint8) if low is None else low.astype(np.uint8)
        for _ in range(_ROUNDS):
            stages = self._allocate_from(gains, codes, target, floor)
            data = self.pack({"codes": codes, "stages": stages})
            if 8 * len(data) <= max_bits:
                return data, stages
            if (stages == floor).all():
                break
            target -= 8 * len(data) - max_bits + 8
        n = len(codes)
        least = "one stage each" if low is None else "only the stages the receiver holds"
        raise InputError(f"rq: {max_bits / n:.1f} bits per item are below what this codec reaches on this block of "
                         f"{n} items ({8 * len(data) / n:.1f} bits per item with {least}, block overhead "
                         "included); raise the budget, or use larger blocks")

    def _gains(self, codes: np.ndarray, X: np.ndarray) -> np.ndarray:
        """(n, M) squared error each stage removes, given the stages before it."""
        residual = X.astype(np.float64)
        err = (residual**2).sum(axis=1)
        gains = np.empty(codes.shape, dtype=np.float64)
        for m in range(self.M):
            residual -= self.codebooks_[m][codes[:, m]]
            new = (residual**2).sum(axis=1)
            gains[:, m] = err - new
            err = new
        return gains

    def _allocate_from(self, gains: np.ndarray, codes: np.ndarray, target_bits: float, low: np.ndarray) -> np.ndarray:
        """Stages per item (low..M) maximising the error removed within `target_bits` for the block: for
        a Lagrange multiplier `lam`, each item keeps the prefix maximising sum(gain - lam x bits);
        `lam` is bisected until the estimated bits (stage symbols' -log2 p) fit the target."""
        cost = self._symbol_bits(codes)
        cum_cost = np.cumsum(cost, axis=1)
        too_short = np.arange(self.M)[None, :] < low[:, None].astype(np.int64) - 1

        def stages_at(lam: float) -> np.ndarray:
            value = np.cumsum(gains - lam * cost, axis=1)
            value[too_short] = -np.inf
            return (value.argmax(axis=1) + 1).astype(np.uint8)

        def bits_of(stages: np.ndarray) -> float:
            return float(cum_cost[np.arange(len(stages)), stages.astype(np.int64) - 1].sum())

        full = stages_at(0.0)
        if bits_of(full) <= target_bits:
            return full
        lo, hi = 0.0, 1.0
        while bits_of(stages_at(hi)) > target_bits and hi < 1e12:
            hi *= 4.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if bits_of(stages_at(mid)) > target_bits:
                lo = mid
            else:
                hi = mid
        return stages_at(hi)

    def _symbol_bits(self, codes: np.ndarray) -> np.ndarray:
        """(n, M) ideal code length of each stage index under its stage's learned frequencies."""
        if self._bits_of is None:  # with Python's log2, not numpy's SIMD one: the same
            counts = self.table_.counts.astype(np.int64)  # allocation, so the same bytes, on every CPU
            self._bits_of = np.array([[math.log2(int(row.sum())) - math.log2(int(c)) for c in row] for row in counts])
        return self._bits_of[np.arange(self.M)[None, :], codes.astype(np.int64)]

    def reconstruct(self, codes: Codes) -> np.ndarray:
        c, stages = codes["codes"], codes["stages"]
        out = np.zeros((len(c), self.codebooks_.shape[2]), dtype=np.float32)
        row = np.empty_like(out)
        for m in range(self.M):  # in stage order, element-wise: the same floats everywhere
            has = stages > m
            if has.all():
                out += self.codebooks_[m].take(c[:, m], axis=0, out=row)
            elif has.any():
                out[has] += self.codebooks_[m][c[has, m]]
        return out

    # ---- bytes -------------------------------------------------------------------------------------
    def pack(self, codes: Codes) -> bytes:
        """A u32 layout word, then one symbol stream. Layout 0: every item has all M stages, and the
        stream holds stage m's index of every item, stage after stage. Layouts 1 and 2: the stream
        starts with each item's stage count, then stage m's index of every item that has stage m;
        the counts are coded with the block's own histogram (layout 1: M u16 counts, padded to 4
        bytes, follow the layout word) or as uniform over 1..M (layout 2: no histogram, for small
        blocks), whichever is smaller."""
        c, stages = codes["codes"], codes["stages"].astype(np.int64)
        if (stages == self.M).all():
            return _LAYOUT.pack(0) + encode_symbols([(self.table_, c)])
        hist = np.bincount(stages - 1, minlength=self.M)
        if hist.max(initial=0) >= 1 << 16:
            raise InputError(f"rq: blocks hold at most {(1 << 16) - 1} items")
        indices = [(self._stage_table(m), c[stages > m, m : m + 1]) for m in range(self.M)]
        counts = (stages - 1)[:, None]
        head = hist.astype("<u2").tobytes()
        with_hist = _LAYOUT.pack(1) + head + b"\0" * (-len(head) % 4) + encode_symbols(
            [(self._count_table(hist), counts), *indices])
        uniform = _LAYOUT.pack(2) + encode_symbols([(self._count_table(None), counts), *indices])
        return min(with_hist, uniform, key=len)

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        view = memoryview(data)
        if len(view) < 4:
            raise FormatError("rq payload is shorter than its layout word")
        (layout,) = _LAYOUT.unpack_from(view)
        if layout == 0:
            reader = SymbolReader(view[4:])
            codes = reader.read(self.table_, n, dtype=np.uint16)
            reader.finish()
            return {"codes": codes, "stages": np.full(n, self.M, dtype=np.uint8)}
        if layout == 1:
            size = 2 * self.M + (-2 * self.M % 4)
            if len(view) < 4 + size:
                raise FormatError("rq payload is shorter than its stage histogram")
            hist = np.frombuffer(view[4 : 4 + 2 * self.M], dtype="<u2").astype(np.int64)
            if hist.sum() != n:
                raise FormatError(f"rq payload's stage histogram counts {hist.sum()} items, the block {n}")
            reader = SymbolReader(view[4 + size :])
            stages = reader.read(self._count_table(hist), n, dtype=np.int64)[:, 0] + 1
            if (np.bincount(stages - 1, minlength=self.M) != hist).any():
                raise FormatError("rq payload's stage counts do not match its histogram")
        elif layout == 2:
            reader = SymbolReader(view[4:])
            stages = reader.read(self._count_table(None), n, dtype=np.int64)[:, 0] + 1
            if n and stages.max() > self.M:
                raise FormatError(f"rq payload gives an item more than {self.M} stages")
        else:
            raise FormatError(f"rq payload has unknown layout {layout}")
        codes = np.zeros((n, self.M), dtype=np.uint16)
        for m in range(self.M):
            has = stages > m
            codes[has, m] = reader.read(self._stage_table(m), int(has.sum()), dtype=np.uint16)[:, 0]
        reader.finish()
        return {"codes": codes, "stages": stages.astype(np.uint8)}

    def _count_table(self, hist: np.ndarray | None) -> FrequencyTable:
        """Stage counts' table: the block's histogram (+1 each), or uniform (None)."""
        if self.M == 1:
            return _TWO
        return _histogram_table(np.zeros(self.M, dtype=np.int64) if hist is None else hist)

    def _stage_table(self, m: int) -> FrequencyTable:
        return FrequencyTable(self.table_.counts[m : m + 1])

    def estimated_bits(self, X: object) -> np.ndarray:
        return self._symbol_bits(self.quantize(X)["codes"]).sum(axis=1)  # every stage, as quantize gives

    # ---- state -----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        return {"codebooks": self.codebooks_, "counts": self.table_.counts}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        d = self.n_features_in_
        expect = {"codebooks": (self.M, self.K, d), "counts": (self.M, self.K)}
        if set(state) != set(expect) or any(state[k].shape != s for k, s in expect.items()):
            got = {k: v.shape for k, v in state.items()}
            raise FormatError(f"rq codec file arrays {got} do not match {self.spec} at width {d}")
        self.codebooks_ = state["codebooks"].astype(np.float32)
        self.table_ = FrequencyTable(state["counts"])
        self._bits_of = None
        self._prepare()

    def partition_centroids(self) -> np.ndarray:
        return l2_normalize(self.codebooks_[0])

    def partition_of(self, codes: Codes) -> np.ndarray:
        return np.asarray(codes["codes"])[:, 0].astype(np.int64)

    def fit_info(self) -> dict[str, object]:
        return {"seed": self.seed, "niter": self.niter, "max_train": self.max_train, "threads": self.threads}


#: Stage-count table of one-stage codecs (every count is 1; the alphabet must still hold 2 symbols).
_TWO = FrequencyTable(np.ones((1, 2), dtype=np.uint32))


def _histogram_table(hist: np.ndarray) -> FrequencyTable:
    """A one-row table from a block's histogram (+1 each, so every symbol stays codable)."""
    return FrequencyTable((hist + 1)[None, :].astype(np.uint32))
