"""Stages a codec composes around its core quantiser: a coarse first stage (unit centroids, one
index per item) and a residual transform coder (principal axes, one uniform scalar quantiser per
axis). Each holds its learned arrays (float32, as stored), quantises what the stages before it left
and gives back its part of the reconstruction; the transform stage decodes with exact products
(semzip._exact), so its output is the same bits on every machine.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._clusters import spherical_kmeans
from .._errors import FormatError
from .._exact import ExactMatrix
from ..entropy import FrequencyTable, SymbolReader, encode_symbols
from ._base import Codec, Codes
from ._rate import bisect

#: Rows scored at once when finding the nearest centroids (bounds the (rows, centroids) matrix).
_ROWS = 2048
#: Bisection steps on log2 of the transform stage's step scale.
_BISECTIONS = 40


class CoarseStage:
    """`size` unit centroids (spherical k-means); an item's code is the index of one of them."""

    def __init__(self, centroids: np.ndarray) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)

    @property
    def size(self) -> int:
        return len(self.centroids)

    @classmethod
    def fit(cls, X: np.ndarray, size: int, seed: int, threads: int) -> CoarseStage:
        return cls(spherical_kmeans(X, size, seed=seed, niter=20, threads=threads))

    def candidates(self, X: np.ndarray, m: int = 1) -> np.ndarray:
        """Indices of the m most similar centroids for each unit row of X, most similar first, int32 (n, m)."""
        out = np.empty((len(X), m), dtype=np.int32)
        for i in range(0, len(X), _ROWS):
            S = X[i : i + _ROWS] @ self.centroids.T
            if m == 1:
                out[i : i + _ROWS, 0] = S.argmax(axis=1)
            else:
                top = np.argpartition(-S, m - 1, axis=1)[:, :m]
                order = np.argsort(-np.take_along_axis(S, top, axis=1), axis=1, kind="stable")
                out[i : i + _ROWS] = np.take_along_axis(top, order, axis=1)
        return out

    def decode(self, k: np.ndarray, n: int) -> np.ndarray:
        """The centroids of codes k (n, 1); FormatError on codes that are not n indices below `size`."""
        k = np.asarray(k)
        if k.shape != (n, 1) or (k.size and (k.min() < 0 or k.max() >= self.size)):
            raise FormatError(f"coarse codes must be (n, 1) indices below {self.size}, got {k.shape}")
        return self.centroids[k[:, 0]]


class TransformStage:
    """Residuals projected on learned principal axes, each axis quantised uniformly with its own step
    to symbols 0..2*level (level + round(p / step), clipped)."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray, steps: np.ndarray, level: int) -> None:
        self.mean, self.basis, self.steps = (np.ascontiguousarray(a, dtype=np.float32) for a in (mean, basis, steps))
        self.level = level
        self._to, self._back = ExactMatrix(self.basis), ExactMatrix(self.basis.T)

    @property
    def alphabet(self) -> int:
        return 2 * self.level + 1

    @classmethod
    def fit(cls, R: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, budget: float, tilt: float,
            max_level: int, count_on_fit: bool = False) -> tuple[TransformStage, FrequencyTable, float]:
        """Axes from the `fit_idx` residuals; per-axis steps leaned by the axis variance (`tilt` < 0
        gives high-variance axes finer steps), their common scale found by bisection so that the
        `val_idx` items' symbols cost at most `budget` bits each under a table counted on them (or,
        `count_on_fit`, on the `fit_idx` items: an honest held-out cost when they are few).
        Returns the stage, that table and the bits per item it spends on them."""
        mean = R[fit_idx].mean(axis=0, dtype=np.float64)
        evals, basis = np.linalg.eigh(np.cov(R[fit_idx] - mean, rowvar=False, bias=True))
        evals = np.maximum(evals, 1e-9 * evals.max())
        shape = (evals / evals.mean()) ** (0.5 * tilt)
        P = (R - mean) @ basis

        def trial(scale: float) -> tuple[float, np.ndarray, int, FrequencyTable]:
            steps = scale * shape
            level = int(min(max_level, max(1, np.ceil(2 * np.abs(P[fit_idx] / steps).max()))))
            sym = scalar_quantize(P[val_idx], steps, level)
            table = FrequencyTable.fit(scalar_quantize(P[fit_idx], steps, level) if count_on_fit else sym, 2 * level + 1)
            return float(table.information_bits(sym).mean()), steps, level, table

        # log2 of the step scale, from -12 to 4: the rate falls as it grows
        _, hi = bisect(lambda e: not trial(2.0**e)[0] > budget, -12.0, 4.0, _BISECTIONS)
        spent, steps, level, table = trial(2.0**hi)
        return cls(mean, basis, steps, level), table, spent

    def encode(self, R: np.ndarray) -> np.ndarray:
        """Symbols (n, d) int32 of residuals R (n, d)."""
        return scalar_quantize(self._to.left_product(R - self.mean), self.steps, self.level)

    def add_to(self, Y: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """Y plus the dequantised residual of `symbols` (float64); FormatError on symbols that are
        not (len(Y), d) values below the alphabet."""
        r = np.asarray(symbols)
        d = len(self.mean)
        if r.shape != (len(Y), d) or (r.size and (r.min() < 0 or r.max() > 2 * self.level)):
            raise FormatError(f"residual codes must be (n, {d}) symbols below {self.alphabet}, got {r.shape}")
        return Y + self._back.left_product((r - self.level) * self.steps) + self.mean


def scalar_quantize(P: np.ndarray, steps: np.ndarray, level: int) -> np.ndarray:
    """Symbols in [0, 2*level] of the uniform quantiser with per-axis steps (rounding, clipped)."""
    return (np.clip(np.rint(P / steps), -level, level) + level).astype(np.int32)


class StageCodec(Codec):
    """A stage as a codec of its own (`coarse`, `transform`): its codes are one symbol array
    (`key`, items x streams) coded with one frequency table (`table_`) in one symbol stream."""

    key: ClassVar[str]
    table_: FrequencyTable

    def pack(self, codes: Codes) -> bytes:
        return encode_symbols([(self.table_, codes[self.key])])

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        reader = SymbolReader(data)
        out = {self.key: reader.read(self.table_, n)}
        reader.finish()
        return out

    def estimated_bits(self, X: object) -> np.ndarray:
        return self.table_.information_bits(self.quantize(X)[self.key])
