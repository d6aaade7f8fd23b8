"""Binary and few-bit codes of whitened principal coordinates: `bq:D=256,b=1`.

Fitting learns the mean and the top D principal directions of the training vectors. An item is coded
as its D principal coordinates, each divided by its standard deviation (whitened) and quantised to b
bits: the sign at b=1, a uniform quantiser with the Gaussian-optimal step (Max, 1960) at b=2..4.
`rotate=1` first applies a random orthogonal rotation to the whitened coordinates, as RaBitQ does,
which spreads each coordinate's error over all of them; `top=T` instead gives the T largest-variance
coordinates one bit more. The rate is exactly D x b + T bits per item on any input, with no per-item
side information.

Decoding (`white=1`, the default) returns the mean plus the coded direction, each kept coordinate
weighted alike (as in whitened space), at the length RaBitQ's inner-product estimator gives it:
|z| / <u, z/|z|> (z the item's coordinates, u its coded unit direction), here one factor for all
items, its mean over the training vectors, so no per-item bits are spent. For classification and
retrieval this measured better than the least-squares decoding (`white=0`: each level times its
coordinate's standard deviation) on the validation splits (`benchmarks/bench_lodo.py`). Products run
through `ExactMatrix` on the integer levels (decoding in float32-exact integers: the decoder keeps
14-17 bits, far below what b-bit levels quantise away), so decoded floats and scores are the same
on every machine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._errors import FormatError, InputError, SpecError
from .._exact import ExactMatrix
from ._base import Codec, Codes
from ._registry import register

#: Step of the optimal uniform quantiser of a unit Gaussian with 2**b levels (Max 1960, table II).
_STEP = {1: 1.5958, 2: 0.9957, 3: 0.5860, 4: 0.3352}


@register
class BinaryCodec(Codec):
    """`bq:D=256,b=1`: D principal coordinates of each item, whitened, b bits each (signs at b=1; the
    first `top` get b+1); exactly D x b + top bits per item, no training beyond a PCA, the fastest to
    encode and decode."""

    name = "bq"
    codec_id = b"BQ  "
    stacking = "any"  # PCA of whatever it is fitted on: also what earlier stages leave
    spec_params = {"D": int, "b": int, "rotate": bool, "white": bool, "top": int}
    rate_params = ("D",)
    param_help = {"D": "principal coordinates kept (rate: D x b bits per item)",
                  "b": "bits per coordinate, 1 (sign) to 4",
                  "rotate": "1: randomly rotate the whitened coordinates before quantising (RaBitQ style)",
                  "white": "1: decode with every coordinate weighted alike; 0: least-squares weights",
                  "top": "the first `top` (largest-variance) coordinates get b+1 bits (rotate=0 only)"}
    example_specs = ("bq:D=16,b=1", "bq:D=32,b=1,rotate=1", "bq:D=32,b=1,top=16", "bq:D=32,b=2")
    idempotent = False  # the decoded direction re-weights coordinates, so levels other than the sign may move

    def __init__(self, D: int = 256, b: int = 1, rotate: bool = False, white: bool = True, top: int = 0, *,
                 seed: int = 0) -> None:
        self.D = D
        self.b = b
        self.rotate = rotate
        self.white = white
        self.top = top
        self.seed = seed

    def _check_params(self) -> None:
        if not 1 <= self.D <= 65536:
            raise SpecError(f"bq:D must be in [1, 65536], got {self.D}")
        if self.b not in _STEP:
            raise SpecError(f"bq:b must be 1, 2, 3 or 4, got {self.b}")
        if not 0 <= self.top <= self.D or (self.top and (self.b == 4 or self.rotate)):
            raise SpecError(f"bq:top must be in [0, D] with b <= 3 and rotate=0 (after a rotation no coordinate "
                            f"stands out), got top={self.top} with b={self.b}, rotate={int(self.rotate)}")

    @property
    def fixed_bits(self) -> float:
        return float(self.D * self.b + self.top)

    @property
    def _groups(self) -> tuple[tuple[int, int], ...]:
        """(coordinates, bits) of the leading group (b+1 bits) and the rest (b bits)."""
        return tuple((k, bits) for k, bits in ((self.top, self.b + 1), (self.D - self.top, self.b)) if k)

    def _per_coordinate(self, table: dict[int, float] | None = None) -> np.ndarray:
        """(D,) bits of each coordinate, or `table[bits]` of each."""
        bits = np.concatenate([np.full(k, b) for k, b in self._groups])
        return bits if table is None else np.array([table[int(b)] for b in bits])

    # ---- training --------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        n, d = X.shape
        if self.D > d:
            raise InputError(f"bq:D={self.D} keeps more coordinates than the {d} the vectors have")
        if n < 2:
            raise InputError(f"bq needs at least 2 training vectors, got {n}")
        X64 = X.astype(np.float64)
        mean = X64.mean(axis=0)
        centred = X64 - mean
        var, vecs = np.linalg.eigh(centred.T @ centred / n)
        order = np.argsort(var)[::-1][: self.D]
        V = vecs[:, order]
        V *= np.where(V[np.abs(V).argmax(axis=0), np.arange(self.D)] < 0, -1.0, 1.0)  # a fixed sign per axis
        sigma = np.sqrt(np.maximum(var[order], 1e-12 * max(float(var.max()), 1e-30)))
        R = np.eye(self.D)
        if self.rotate:
            q, r = np.linalg.qr(np.random.default_rng(self.seed).standard_normal((self.D, self.D)))
            R = q * np.where(np.diag(r) < 0, -1.0, 1.0)
        self.mean_ = mean.astype(np.float32)
        self.encoder_ = ((V / sigma) @ R).astype(np.float32)
        weights = (V @ R) if self.white else (V * sigma) @ R  # level o_j stands for o_j x step_j / 2 (whitened)
        self.decoder_ = (weights.T * (self._per_coordinate(_STEP) / 2)[:, None]).astype(np.float32)
        self.scale_ = np.ones(1, dtype=np.float32)
        self._prepare()
        if self.white:  # RaBitQ's inner-product factor |z| / <u, z/|z|>, one for all items: its training mean
            z = centred @ (V @ R)
            odd = self._odd(self._quantize(X))
            u = odd * self._steps / 2
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            length = np.linalg.norm(z, axis=1)
            align = (u * z).sum(axis=1) / np.maximum(length, 1e-30)
            self.scale_[0] = length.mean() / max(float(align.mean()), 1e-6)

    def _prepare(self) -> None:
        bits = self._per_coordinate()
        self._steps, self._half, self._most = self._per_coordinate(_STEP), 1 << (bits - 1), (1 << bits) - 1
        self._enc = ExactMatrix(self.encoder_)
        self._dec = ExactMatrix(self.decoder_, left_bits=int(self._most.max()).bit_length(), single=True)

    # ---- coding ----------------------------------------------------------------------------------
    def _quantize(self, X: np.ndarray) -> Codes:
        w = self._enc.left_product(X.astype(np.float64) - self.mean_)
        levels = np.clip(np.floor(w / self._steps) + self._half, 0, self._most)
        return {"levels": levels.astype(np.uint8)}

    def _odd(self, codes: Codes) -> np.ndarray:
        """Levels as the odd integers -(2**b_j - 1) .. 2**b_j - 1 (float64, exact)."""
        return 2.0 * codes["levels"].astype(np.float64) - self._most

    def _gain(self, odd: np.ndarray) -> np.ndarray:
        """(n, 1) factor of each item's coded direction: `scale` over its whitened length (white=1),
        or 1 (white=0). Integer sums per group and one sqrt: the same bits everywhere."""
        if not self.white:
            return np.ones((len(odd), 1))
        squared, start = np.zeros((len(odd), 1)), 0
        for k, bits in self._groups:
            squared = squared + (_STEP[bits] / 2) ** 2 * (odd[:, start : start + k] ** 2).sum(axis=1, keepdims=True)
            start += k
        return float(self.scale_[0]) / np.sqrt(squared)

    def reconstruct(self, codes: Codes) -> np.ndarray:
        odd = self._odd(codes)
        out = self._dec.integer_product(odd)
        out *= self._gain(odd)
        out += self.mean_.astype(np.float64)
        return out.astype(np.float32)

    def _scorer(self, Q: np.ndarray) -> Callable[[Codes], np.ndarray]:
        """x.q = mean.q + gain x (levels . (decoder q)): one small product per item, exact."""
        per_query = ExactMatrix(Q.T)
        table = ExactMatrix(per_query.left_product(self.decoder_), left_bits=self._dec.left_bits)
        offset = per_query.left_product(self.mean_[None, :])

        def score(codes: Codes) -> np.ndarray:
            odd = self._odd(codes)
            return (offset + self._gain(odd) * table.integer_product(odd)).astype(np.float32)

        return score

    # ---- bytes -------------------------------------------------------------------------------------
    def pack(self, codes: Codes) -> bytes:
        """One bit string, zero-padded to a byte: every item's first `top` levels at b+1 bits, then
        every item's other levels at b bits, each level LSB first, items in order."""
        levels, parts, start = codes["levels"].astype(np.uint8), [], 0
        for k, bits in self._groups:
            parts.append(((levels[:, start : start + k, None] >> np.arange(bits, dtype=np.uint8)) & 1).ravel())
            start += k
        return np.packbits(np.concatenate(parts), bitorder="little").tobytes()

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        total = int(n * self.fixed_bits)
        view = memoryview(data).cast("B")
        if len(view) != (total + 7) // 8:
            raise FormatError(f"bq payload has {len(view)} bytes, expected {(total + 7) // 8} for {n} items")
        bits = np.unpackbits(np.frombuffer(view, dtype=np.uint8), bitorder="little")
        if bits[total:].any():
            raise FormatError("bq payload has non-zero padding bits: it was not written by semzip")
        parts, at = [], 0
        for k, width in self._groups:
            group = bits[at : at + n * k * width].reshape(n, k, width)
            parts.append((group * (1 << np.arange(width)).astype(np.uint8)).sum(axis=2, dtype=np.uint8))
            at += n * k * width
        return {"levels": np.concatenate(parts, axis=1)}

    # ---- state -----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "encoder": self.encoder_, "decoder": self.decoder_, "scale": self.scale_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        d = self.n_features_in_
        expect = {"mean": (d,), "encoder": (d, self.D), "decoder": (self.D, d), "scale": (1,)}
        if set(state) != set(expect) or any(state[k].shape != s for k, s in expect.items()):
            got = {k: v.shape for k, v in state.items()}
            raise FormatError(f"bq codec file arrays {got} do not match {self.spec} at width {d}")
        self.mean_, self.encoder_, self.decoder_, self.scale_ = (state[k].astype(np.float32) for k in expect)
        self._prepare()

    def fit_info(self) -> dict[str, object]:
        return {"seed": self.seed}
