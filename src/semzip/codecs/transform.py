"""A transform coder as a codec: `transform:bits=64`, principal axes quantised to a bit budget.

The PQ-VAE's residual stage on its own (codecs/_stages.TransformStage): the vectors projected on
their principal axes, each axis quantised uniformly with its own step, the symbols ANS-coded. The
steps' common scale is bisected at fit so that held-out training items (10%) cost `bits` bits each
under frequencies counted on the others; new data may cost a little more or less (the codec is not rate-guaranteed: rq is). Its use is as a
later stage of a stack (`rq:M=4,K=256+transform:bits=64`), topping up what earlier stages left.
"""

from __future__ import annotations

import math

import numpy as np

from .._errors import FormatError, InputError, SpecError
from ..entropy import FrequencyTable
from ._base import Codes
from ._registry import register
from ._stages import StageCodec, TransformStage

#: Largest |symbol| (the alphabet is 2 * level + 1); larger values are clipped.
_MAX_LEVEL = 255


@register
class TransformCodec(StageCodec):
    """`transform:bits=64`: principal coordinates, one uniform scalar quantiser per axis, ANS-coded;
    the step scale is chosen at fit so held-out training items cost `bits` bits each."""

    name = "transform"
    codec_id = b"TRNS"
    spec_params = {"bits": int}
    rate_params = ("bits",)
    param_help = {"bits": "bits per item the held-out training items are coded in (2 to 65536)"}
    example_specs = ("transform:bits=24", "transform:bits=96")
    idempotent = False  # the axes' clipping and rounding may move a decoded value to another symbol
    stacking = "any"  # principal axes of whatever it is fitted on: also what earlier stages leave
    key = "symbols"
    stage_: TransformStage

    def __init__(self, bits: int = 64, *, seed: int = 0, holdout: float = 0.1, tilt: float = -0.2) -> None:
        self.bits = bits
        self.seed = seed
        self.holdout = holdout
        self.tilt = tilt

    def _check_params(self) -> None:
        if not 2 <= self.bits <= 65536:
            raise SpecError(f"transform:bits must be in [2, 65536], got {self.bits}")
        if not 0 < self.holdout < 1:
            raise SpecError(f"transform holdout must be a fraction in (0, 1), got {self.holdout}")

    @property
    def fixed_bits(self) -> float:
        table = getattr(self, "table_", None)
        return float(table.streams * math.ceil(math.log2(table.alphabet))) if table else float(self.bits)

    def _fit(self, X: np.ndarray) -> None:
        if len(X) < 4:
            raise InputError(f"transform needs at least 4 training vectors, got {len(X)}")
        order = np.random.default_rng(self.seed).permutation(len(X))
        n_val = min(len(X) // 2, max(1, round(self.holdout * len(X))))
        val_idx, fit_idx = order[:n_val], order[n_val:]
        self.stage_, self.table_, self._spent = TransformStage.fit(X.astype(np.float64), fit_idx, val_idx,
                                                                   float(self.bits), self.tilt, _MAX_LEVEL,
                                                                   count_on_fit=True)

    def _quantize(self, X: np.ndarray) -> Codes:
        return {"symbols": self.stage_.encode(X.astype(np.float64))}

    def reconstruct(self, codes: Codes) -> np.ndarray:
        symbols = np.asarray(codes["symbols"])
        return self.stage_.add_to(np.zeros((len(symbols), len(self.stage_.mean))), symbols).astype(np.float32)

    def get_state(self) -> dict[str, np.ndarray]:
        s = self.stage_
        return {"mean": s.mean, "basis": s.basis, "steps": s.steps, "counts": self.table_.counts}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        d = self.n_features_in_
        alphabet = state["counts"].shape[-1] if "counts" in state else 0
        expect = {"mean": (d,), "basis": (d, d), "steps": (d,), "counts": (d, alphabet)}
        if (set(state) != set(expect) or any(state[k].shape != s for k, s in expect.items())
                or alphabet % 2 == 0 or not 3 <= alphabet <= 2 * _MAX_LEVEL + 1):
            got = {k: v.shape for k, v in state.items()}
            raise FormatError(f"transform codec file arrays {got} do not match {self.spec} at width {d} "
                              f"(an odd alphabet in [3, {2 * _MAX_LEVEL + 1}])")
        if not (state["steps"] > 0).all():
            raise FormatError("transform codec file: steps must be positive")
        self.stage_ = TransformStage(state["mean"], state["basis"], state["steps"], alphabet // 2)
        self.table_ = FrequencyTable(state["counts"])

    def fit_info(self) -> dict[str, object]:
        return {"seed": self.seed, "holdout": self.holdout, "tilt": self.tilt,
                "held_out_bits_per_item": getattr(self, "_spent", None)}
