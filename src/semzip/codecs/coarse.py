"""A coarse first stage as a codec: `coarse:bits=8`, one of 2**bits unit centroids per item.

On its own it is a vector quantiser (the nearest of 2**bits spherical k-means centroids, its index
ANS-coded with frequencies counted at fit); its use is as the first stage of a stack
(`coarse:bits=8+rq:M=6,K=256`), where it is also the partition an inverted index takes from the
codes (`semzip index --lists codes`), as faiss's IVF coarse quantiser is.
"""

from __future__ import annotations

import numpy as np

from .._errors import FormatError, InputError, SpecError
from .._validate import l2_normalize
from ..entropy import FrequencyTable
from ._base import Codes
from ._registry import register
from ._stages import CoarseStage, StageCodec


@register
class CoarseCodec(StageCodec):
    """`coarse:bits=8`: the nearest of 2**bits unit centroids (spherical k-means) of each item;
    at most `bits` bits per item, fewer after entropy coding. A first stage to refine with `+`."""

    name = "coarse"
    codec_id = b"CRSE"
    spec_params = {"bits": int}
    rate_params = ("bits",)
    param_help = {"bits": "bits of the index: 2**bits centroids, from 1 to 16"}
    example_specs = ("coarse:bits=3", "coarse:bits=5")
    key = "coarse"
    stage_: CoarseStage

    def __init__(self, bits: int = 8, *, seed: int = 0, threads: int = 1) -> None:
        self.bits = bits
        self.seed = seed
        self.threads = threads

    def _check_params(self) -> None:
        if not 1 <= self.bits <= 16:
            raise SpecError(f"coarse:bits must be in [1, 16], got {self.bits}")

    @property
    def fixed_bits(self) -> float:
        return float(self.bits)

    def _fit(self, X: np.ndarray) -> None:
        size = 1 << self.bits
        if len(X) < size:
            raise InputError(f"coarse:bits={self.bits} needs at least {size} training vectors, got {len(X)}")
        self.stage_ = CoarseStage.fit(l2_normalize(X), size, self.seed, self.threads)
        self.table_ = FrequencyTable.fit(self.stage_.candidates(l2_normalize(X)), size)

    def _quantize(self, X: np.ndarray) -> Codes:
        return {"coarse": self.stage_.candidates(l2_normalize(X))}

    def reconstruct(self, codes: Codes) -> np.ndarray:
        k = np.asarray(codes["coarse"])
        return self.stage_.decode(k, len(k)).copy()

    def partition_centroids(self) -> np.ndarray | None:
        return self.stage_.centroids

    def partition_of(self, codes: Codes) -> np.ndarray:
        return np.asarray(codes["coarse"])[:, 0].astype(np.int64)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"centroids": self.stage_.centroids, "counts": self.table_.counts}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        size, d = 1 << self.bits, self.n_features_in_
        expect = {"centroids": (size, d), "counts": (1, size)}
        if set(state) != set(expect) or any(state[k].shape != s for k, s in expect.items()):
            got = {k: v.shape for k, v in state.items()}
            raise FormatError(f"coarse codec file arrays {got} do not match {self.spec} at width {d}")
        self.stage_ = CoarseStage(state["centroids"])
        self.table_ = FrequencyTable(state["counts"])

    def fit_info(self) -> dict[str, object]:
        return {"seed": self.seed, "threads": self.threads}
