"""The PQ-VAE codec: its stages (coarse k-means, the shared-codebook PQ-VAE, the residual
transform coder), the rate-distortion choice of coarse centroid, entropy coding and state."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..._errors import FormatError, InputError, NotFittedError, SpecError
from ..._exact import ExactMatrix
from ..._validate import l2_normalize
from ...entropy import FrequencyTable, SymbolReader, encode_symbols
from .._base import Codec, Codes
from .._registry import register
from .._stages import CoarseStage, TransformStage
from ._infer import NumpyNet
from ._net import Arch, state_shapes


@register
class PQVAECodec(Codec):
    """`pqvae:dim=16,K=8,grid=5,C=128,H=128,blocks=2,coarse=0,bits=0`: sub-vector length, shared
    codebook size (power of two), latent grid side, latent channels, hidden channels, residual blocks
    per side, bits of the coarse first stage (0 = none, the paper's design), and the total bits per
    item the residual transform-coding stage tops the rate up to (0 = no such stage).

    Fixed rate: coarse + grid*grid*C/dim indices of log2 K bits (+ the residual stage's fixed-width
    fields); the counted rate is lower after entropy coding. `bits` is met on held-out training
    items at fit; new data may cost a little more or less. Not idempotent (see the module docstring).
    """

    name = "pqvae"
    codec_id = b"PQVE"
    spec_params = {"dim": int, "K": int, "grid": int, "C": int, "H": int, "blocks": int, "coarse": int, "bits": int}
    later_params = {"bits": 0}
    rate_params = ("dim", "K", "grid", "C", "coarse", "bits")
    param_help = {"dim": "length of each latent sub-vector quantised against the shared codebook",
                  "K": "shared codebook size, a power of two (log2 K bits per sub-vector)",
                  "grid": "side of the latent grid the embedding is lifted to",
                  "C": "latent channels per grid cell (a multiple of dim); grid*grid*C/dim sub-vectors per item",
                  "H": "hidden channels of the encoder and decoder",
                  "blocks": "residual blocks per side",
                  "coarse": "bits of a spherical k-means first stage (0 = none, the paper's design)",
                  "bits": "total bits per item the residual transform-coding stage tops the rate up to (0 = none)"}
    #: The coarse and residual stages and the entropy-coding tables of all three, set by fit or a
    #: codec file (None: no such stage).
    coarse_stage_: CoarseStage | None
    refine_stage_: TransformStage | None
    table_: FrequencyTable
    coarse_table_: FrequencyTable | None
    refine_table_: FrequencyTable | None
    example_specs = (
        "pqvae:dim=8,K=4,grid=1,C=16,H=16,blocks=1",
        "pqvae:dim=8,K=16,grid=2,C=16,H=16,blocks=1",
        "pqvae:dim=4,K=16,grid=2,C=16,H=16,blocks=1",
    )
    idempotent = False

    def __init__(self, dim: int = 16, K: int = 8, grid: int = 5, C: int = 128, H: int = 128, blocks: int = 2,
                 coarse: int = 0, bits: int = 0, *,
                 seed: int = 0, epochs: int = 30, batch_size: int = 64, lr: float = 3e-3, beta: float = 0.25,
                 mix: float = 0.5, whiten: float = 0.5, whiten_floor: float = 0.1, holdout: float = 0.05,
                 patience: int = 5, tilt: float = -0.2, coarse_search: int = 4, threads: int = 1,
                 progress: bool = False) -> None:
        """Size: a scikit-learn estimator takes every hyper-parameter as a constructor keyword
        (`get_params`/`set_params` read them): the spec's structural ones, then the training options."""
        self.dim = dim
        self.K = K
        self.grid = grid
        self.C = C
        self.H = H
        self.blocks = blocks
        self.coarse = coarse
        self.bits = bits
        self.seed = seed
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.mix = mix
        self.whiten = whiten
        self.whiten_floor = whiten_floor
        self.holdout = holdout
        self.patience = patience
        self.tilt = tilt
        self.coarse_search = coarse_search
        self.threads = threads
        self.progress = progress

    def _check_params(self) -> None:
        if not 1 <= self.dim <= 1024:
            raise SpecError(f"pqvae:dim must be in [1, 1024], got {self.dim}")
        if self.K < 2 or self.K > 65536 or self.K & (self.K - 1):
            raise SpecError(f"pqvae:K must be a power of two in [2, 65536], got {self.K}")
        if not 1 <= self.grid <= 16:
            raise SpecError(f"pqvae:grid must be in [1, 16], got {self.grid}")
        if not 1 <= self.C <= 4096 or self.C % self.dim:
            raise SpecError(f"pqvae:C must be in [1, 4096] and a multiple of dim={self.dim}, got {self.C}")
        if not 1 <= self.H <= 4096:
            raise SpecError(f"pqvae:H must be in [1, 4096], got {self.H}")
        if not 0 <= self.blocks <= 16:
            raise SpecError(f"pqvae:blocks must be in [0, 16], got {self.blocks}")
        if not 0 <= self.coarse <= 16:
            raise SpecError(f"pqvae:coarse must be in [0, 16] (bits of the first stage, 0 = none), got {self.coarse}")
        if self.bits and not self._stage_bits < self.bits <= _MAX_REFINE_BITS:
            raise SpecError(f"pqvae:bits={self.bits} must be 0 (no residual stage) or above the "
                            f"{self._stage_bits:g} fixed bits of the coarse and PQ-VAE stages, at most {_MAX_REFINE_BITS}")

    @property
    def arch(self) -> Arch:
        """The network's spec parameters."""
        return Arch(self.dim, self.K, self.grid, self.C, self.H, self.blocks)

    @property
    def n_sub(self) -> int:
        """Sub-vectors (indices) per item."""
        return self.arch.n_sub

    @property
    def _stage_bits(self) -> float:
        """Fixed bits of the coarse and PQ-VAE indices: known from the spec alone."""
        return float(self.coarse + self.n_sub * math.log2(self.K))

    @property
    def fixed_bits(self) -> float:
        """Bits per item of fixed-width fields: coarse and PQ-VAE indices, plus the residual stage's
        symbols once fitted (its width depends on the alphabet fit chose)."""
        table = getattr(self, "refine_table_", None)
        return self._stage_bits + (table.streams * math.ceil(math.log2(table.alphabet)) if table else 0)

    # ---- training --------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        try:
            from . import _train  # torch is needed for training only
        except ImportError as exc:
            raise ImportError(f"training a pqvae codec needs torch ({exc}); coding with a trained one does not") from None

        if len(X) < 2:
            raise InputError(f"pqvae needs at least 2 training vectors, got {len(X)}")
        X = l2_normalize(X)
        order = np.random.default_rng(self.seed).permutation(len(X))
        n_val = min(len(X) - 1, max(1, round(self.holdout * len(X))))
        fit_idx, val_idx = order[n_val:], order[:n_val]  # held-out items stay unseen by every learned part
        stage = self.coarse_stage_ = self._fit_coarse(X[fit_idx]) if self.coarse else None
        coarse = None if stage is None else stage.centroids
        R = X[fit_idx] if stage is None else X[fit_idx] - stage.centroids[stage.candidates(X[fit_idx])[:, 0]]
        mean = R.mean(axis=0, dtype=np.float64)
        evals, basis = np.linalg.eigh(np.cov(R - mean, rowvar=False, bias=True))
        scale = (np.maximum(evals, 0) + self.whiten_floor * evals.mean()) ** (-0.5 * self.whiten)
        rho = np.linalg.norm((R - mean) @ (basis * scale), axis=1).mean(keepdims=True)
        weights, info = _train.train(self, X[fit_idx], X[val_idx], coarse, mean, basis * scale)
        fixed = {"mean": mean, "basis": basis, "scale": scale, "rho": rho}
        self._load_weights(weights | {k: v.astype(np.float32) for k, v in fixed.items()}, X.shape[1])
        self.refine_stage_, self.refine_table_ = None, None  # the residual stage comes last, on what the others leave
        codes = self._quantize(X)
        self.table_, info["codes_uniform_mix"] = _learned_table(codes["codes"], fit_idx, val_idx, self.K)
        self.coarse_table_ = None
        if self.coarse:
            self.coarse_table_, info["coarse_uniform_mix"] = _learned_table(codes["coarse"], fit_idx, val_idx,
                                                                            1 << self.coarse)
        usage = np.bincount(codes["codes"].ravel(), minlength=self.K) / codes["codes"].size
        nz = usage[usage > 0]
        info["codebook_usage"] = float((usage > 0).mean())
        info["perplexity"] = float(np.exp(-(nz * np.log(nz)).sum()))
        info["entropy_bits_per_item"] = self.table_.entropy_bits() + (
            self.coarse_table_.entropy_bits() if self.coarse_table_ else 0.0)
        if self.bits:
            held_out = self.table_.information_bits(codes["codes"][val_idx]).mean() + (
                self.coarse_table_.information_bits(codes["coarse"][val_idx]).mean() if self.coarse_table_ else 0.0)
            info |= self._fit_refine(X - self._reconstruct_stages(codes), fit_idx, val_idx, float(held_out))
        self._info = info

    def _fit_coarse(self, X: np.ndarray) -> CoarseStage:
        k = 1 << self.coarse
        if len(X) < k:
            raise InputError(f"pqvae:coarse={self.coarse} needs at least {k} training vectors (after the held-out "
                             f"share), got {len(X)}")
        return CoarseStage.fit(X, k, self.seed, self.threads)

    def _fit_refine(self, R: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray,
                    stage_bits: float) -> dict[str, Any]:
        """Residual stage (`TransformStage.fit`) within what `bits` leaves after the other stages'
        held-out bits. Symbol counts come from the held-out items alone: the earlier stages fit the
        training items closely, so their residuals are smaller than a new image's and tables counted
        on them cost far more on new data (measured: 397 vs 308 bits on Caltech)."""
        budget = self.bits - stage_bits
        if budget <= 1:
            raise InputError(f"pqvae:bits={self.bits} leaves nothing for the residual stage: the coarse and "
                             f"PQ-VAE stages already cost {stage_bits:.1f} bits on held-out items")
        self.refine_stage_, self.refine_table_, spent = TransformStage.fit(R, fit_idx, val_idx, budget, self.tilt,
                                                                           _MAX_REFINE_LEVEL)
        return {"refine_levels": self.refine_table_.alphabet, "held_out_bits_per_item": stage_bits + spent}

    def _load_weights(self, weights: dict[str, np.ndarray], d: int) -> None:
        """Keep the network's and the whitening's arrays; derive the numpy network and the whitening
        matrices as exact operands (`ExactMatrix`)."""
        self.weights_ = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self._width = d
        w = self.weights_
        self._net = NumpyNet(w, d, self.arch)
        m = {"white": w["basis"] * w["scale"], "unwhite": (w["basis"] / w["scale"]).T}
        self._mats = {k: ExactMatrix(v) for k, v in m.items()}

    # ---- coding ----------------------------------------------------------------------------------
    def _quantize(self, X: np.ndarray) -> Codes:
        """Codes of every stage. With a coarse and a residual stage, each item tries its
        `coarse_search` most similar coarse centroids and keeps the one of least rate-distortion cost
        `bits + error / lam`, with lam the squared error one bit buys from a uniform quantiser at the
        residual stage's steps (ln 2 / 6 x mean step^2); the decoder is the same whichever was chosen."""
        X = l2_normalize(X)
        if self.coarse_stage_ is None:  # no coarse stage in the spec
            return self._quantize_with(X, None)
        candidates = self.coarse_stage_.candidates(X, self._coarse_tries())
        best = self._quantize_with(X, candidates[:, 0])
        if candidates.shape[1] > 1:
            best_cost = self._rd_cost(X, best)
            for j in range(1, candidates.shape[1]):
                codes = self._quantize_with(X, candidates[:, j])
                c = self._rd_cost(X, codes)
                better = c < best_cost
                best_cost = np.where(better, c, best_cost)
                for key, value in best.items():
                    value[better] = codes[key][better]
        return best

    def _coarse_tries(self) -> int:
        """Coarse centroids tried per item: only a fitted residual stage makes their bits comparable."""
        if self.bits and self.refine_stage_ is not None:  # None only inside fit, before the stage exists
            return max(1, min(int(self.coarse_search), 1 << self.coarse))
        return 1

    def _rd_cost(self, X: np.ndarray, codes: Codes) -> np.ndarray:
        """Bits of each item's codes plus its squared error over the bits-per-error slope."""
        if self.refine_stage_ is None:
            raise NotFittedError("pqvae: the residual stage is not fitted")
        lam = _RD_SLOPE * math.log(2) / 6 * float(np.mean(self.refine_stage_.steps**2))
        return self._code_bits(codes) + ((X - self._refined(codes)) ** 2).sum(axis=1) / lam

    def _code_bits(self, codes: Codes) -> np.ndarray:
        start = np.zeros(len(codes["codes"]))  # + 0.0 changes no sum: the same bits as starting at the first stage
        return sum((table.information_bits(codes[key]) for key, table in self._tables()), start)

    def _quantize_with(self, X: np.ndarray, coarse: np.ndarray | None) -> Codes:
        """Codes of unit vectors X given their coarse indices (None without a coarse stage)."""
        out: Codes = {}
        R = X
        if coarse is not None and self.coarse_stage_ is not None:
            out["coarse"] = coarse.astype(np.int32)[:, None]
            R = X - self.coarse_stage_.centroids[coarse]
        W = self._mats["white"].left_product(R - self.weights_["mean"])
        out["codes"] = self._net.assign(self._net.encode(l2_normalize(W)))
        if self.bits and self.refine_stage_ is not None:
            out["refine"] = self.refine_stage_.encode(X - self._reconstruct_stages(out))
        return out

    def reconstruct(self, codes: Codes) -> np.ndarray:
        Y = l2_normalize(self._refined(codes)) if self.bits else self._reconstruct_stages(codes)
        return Y.astype(np.float32)

    def _refined(self, codes: Codes) -> np.ndarray:
        """Stage reconstruction plus the dequantised residual, before the final normalisation (float64)."""
        if self.refine_stage_ is None:
            raise NotFittedError("pqvae: the residual stage is not fitted")
        return self.refine_stage_.add_to(self._reconstruct_stages(codes), codes["refine"])

    def _reconstruct_stages(self, codes: Codes) -> np.ndarray:
        """Unit vectors (float64) from the coarse and PQ-VAE indices alone (what the residual stage refines)."""
        c = np.asarray(codes["codes"])
        if c.ndim != 2 or c.shape[1] != self.n_sub or (c.size and (c.min() < 0 or c.max() >= self.K)):
            raise FormatError(f"pqvae codes must be (n, {self.n_sub}) indices below {self.K}, got shape {c.shape}")
        w = self.weights_
        Y = w["mean"] + self._mats["unwhite"].left_product(w["rho"] * self._net.decode(w["codebook"][c]))
        if self.coarse_stage_ is not None:
            Y = Y + self.coarse_stage_.decode(codes["coarse"], len(c))
        return l2_normalize(Y)

    def _tables(self) -> list[tuple[str, FrequencyTable]]:
        """(codes key, table) of every stage, in stream order."""
        stages = [("coarse", self.coarse_table_), ("codes", self.table_), ("refine", self.refine_table_)]
        return [(key, table) for key, table in stages if table is not None]

    def pack(self, codes: Codes) -> bytes:
        return encode_symbols([(table, codes[key]) for key, table in self._tables()])

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        reader = SymbolReader(data)
        out = {key: reader.read(table, n) for key, table in self._tables()}
        reader.finish()
        return out

    def estimated_bits(self, X: object) -> np.ndarray:
        return self._code_bits(self.quantize(X))

    # ---- state -----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        stages = {} if self.coarse_stage_ is None else {"coarse_centroids": self.coarse_stage_.centroids}
        if self.refine_stage_ is not None:
            r = self.refine_stage_
            stages |= {"refine_mean": r.mean, "refine_basis": r.basis, "refine_steps": r.steps}
        return {**self.weights_} | stages | {_COUNTS[key]: table.counts for key, table in self._tables()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        alphabet = 0
        if self.bits:
            alphabet = state["refine_counts"].shape[-1] if "refine_counts" in state else -1
            if alphabet % 2 == 0 or not 3 <= alphabet <= 2 * _MAX_REFINE_LEVEL + 1:
                raise FormatError(f"pqvae codec file: residual stage alphabet {alphabet} is not an odd size "
                                  f"in [3, {2 * _MAX_REFINE_LEVEL + 1}]")
        expect = state_shapes(self.n_features_in_, self.arch, self.coarse, alphabet)
        bad = sorted(set(expect) ^ set(state)) or [k for k, s in expect.items() if state[k].shape != s]
        if bad:
            raise FormatError(
                f"pqvae codec file arrays do not match {self.spec} at width {self.n_features_in_}: "
                f"missing, unexpected or misshapen {bad[:5]}"
            )
        weights = {k: v for k, v in state.items() if k not in _COUNTS.values()}
        if not all(np.isfinite(v).all() for v in weights.values()):
            raise FormatError("pqvae codec file has non-finite weights")
        if self.bits and not (weights["refine_steps"] > 0).all():
            raise FormatError("pqvae codec file: residual stage steps must be positive")
        stage_keys = ("coarse_centroids", "refine_mean", "refine_basis", "refine_steps")
        self._load_weights({k: v for k, v in weights.items() if k not in stage_keys}, self.n_features_in_)
        self.coarse_stage_ = CoarseStage(weights["coarse_centroids"]) if self.coarse else None
        self.refine_stage_ = TransformStage(weights["refine_mean"], weights["refine_basis"], weights["refine_steps"],
                                            alphabet // 2) if self.bits else None
        self.table_ = FrequencyTable(state["counts"])
        self.coarse_table_ = FrequencyTable(state["coarse_counts"]) if self.coarse else None
        self.refine_table_ = FrequencyTable(state["refine_counts"]) if self.bits else None

    def partition_centroids(self) -> np.ndarray | None:
        return None if self.coarse_stage_ is None else self.coarse_stage_.centroids

    def partition_of(self, codes: Codes) -> np.ndarray:
        if self.coarse_stage_ is None:
            return super().partition_of(codes)
        return np.asarray(codes["coarse"])[:, 0].astype(np.int64)

    def fit_info(self) -> dict[str, Any]:
        info = {"seed": self.seed, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "beta": self.beta, "mix": self.mix,
                "whiten": self.whiten, "whiten_floor": self.whiten_floor, "holdout": self.holdout, "patience": self.patience,
                "tilt": self.tilt, "coarse_search": self.coarse_search, "threads": self.threads}
        return info | getattr(self, "_info", {})


#: Scale of the rate-distortion slope used to pick a coarse centroid, relative to the uniform
#: quantiser's: 0.5 coded the Caltech val images best at 107 and 253 bits (0.25, 1, 2, 4 tried).
_RD_SLOPE = 0.5
#: Stored count array of each stage's table.
_COUNTS = {"coarse": "coarse_counts", "codes": "counts", "refine": "refine_counts"}
#: Largest |symbol| of the residual stage (its alphabet is 2 * level + 1); larger values are clipped.
_MAX_REFINE_LEVEL = 255
#: Largest `bits` target: beyond it the residual stage would need finer steps than its levels allow.
_MAX_REFINE_BITS = 4096
#: Weights of the uniform distribution tried when mixing it into the learned index frequencies.
_UNIFORM_MIX = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Total of each stored frequency row.
_TABLE_TOTAL = 1 << 20


def _learned_table(codes: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray,
                   alphabet: int) -> tuple[FrequencyTable, float]:
    """Index frequencies learned at fit, mixed with the uniform distribution by the weight that codes
    the held-out items best. Frequencies that only the training items share (a network fitted to
    them uses some codewords more on them than on new images) would otherwise cost more than
    fixed-length codes on new data; weight 1 is fixed-length coding itself."""
    def mixed(rows: np.ndarray, lam: float) -> np.ndarray:
        return (1 - lam) * FrequencyTable.fit(rows, alphabet).probabilities() + lam / alphabet

    def bits(p: np.ndarray, rows: np.ndarray) -> float:
        return float(-np.log2(p[np.arange(rows.shape[1])[None, :], rows]).sum())

    lam = min(_UNIFORM_MIX, key=lambda m: bits(mixed(codes[fit_idx], m), codes[val_idx]))
    counts = np.maximum(1, np.round(mixed(codes, lam) * _TABLE_TOTAL)).astype(np.uint32)
    return FrequencyTable(counts), lam
