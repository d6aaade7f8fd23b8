"""Per-dimension baseline codecs that need no training: float16, int8 with a per-vector scale, sign bits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._errors import FormatError, InputError
from .._exact import ExactMatrix
from .._validate import l2_normalize
from ._base import Codec, Codes
from ._registry import register


#: Largest finite float16: f16 values and int8 scales above it would be stored as infinity.
_F16_MAX = float(np.finfo(np.float16).max)


def _half(values: np.ndarray, what: str) -> np.ndarray:
    """float16 of float32 values, refusing magnitudes float16 cannot hold (they would decode to inf)."""
    if values.size and float(np.abs(values).max()) > _F16_MAX:
        raise InputError(f"{what}: a magnitude above {_F16_MAX:g} does not fit float16; normalise the "
                         "embeddings first (CLIP embeddings are unit vectors)")
    return values.astype(np.float16)


def _finite_half(data: memoryview, what: str) -> np.ndarray:
    """float16 values read from a payload, refusing inf/NaN (no semzip encoder writes them)."""
    values = np.frombuffer(data, dtype="<f2").astype(np.float16)
    if not np.isfinite(values).all():
        raise FormatError(f"{what} payload holds non-finite float16 values: it was not written by semzip")
    return values


def _expect(data: bytes | memoryview, nbytes: int, what: str) -> memoryview:
    view = memoryview(data).cast("B")
    if len(view) != nbytes:
        raise FormatError(f"{what} payload has {len(view)} bytes, expected {nbytes}")
    return view


class _Parameterless(Codec):
    """Codecs with no parameters; `fit` only records the width."""

    def __init__(self) -> None:
        pass

    def _fit(self, X: np.ndarray) -> None:
        pass


@register
class Float16Codec(_Parameterless):
    """IEEE half precision, 16 bits per dimension: the near-lossless reference point."""

    name = "f16"
    codec_id = b"F16 "
    stacking = "any"
    example_specs = ("f16",)

    @property
    def fixed_bits(self) -> float:
        self.check_is_fitted()
        return 16.0 * self.n_features_in_

    def _quantize(self, X: np.ndarray) -> Codes:
        return {"values": _half(X, "f16")}

    def reconstruct(self, codes: Codes) -> np.ndarray:
        return codes["values"].astype(np.float32)

    def pack(self, codes: Codes) -> bytes:
        return codes["values"].astype("<f2").tobytes()

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        d = self.n_features_in_
        view = _expect(data, 2 * n * d, "f16")
        return {"values": _finite_half(view, "f16").reshape(n, d)}


@register
class Int8Codec(_Parameterless):
    """8 bits per dimension, symmetric, scaled per vector by its largest magnitude (stored as float16)."""

    name = "int8"
    codec_id = b"INT8"
    stacking = "any"
    example_specs = ("int8",)

    @property
    def fixed_bits(self) -> float:
        self.check_is_fitted()
        return 8.0 * self.n_features_in_ + 16.0

    def _quantize(self, X: np.ndarray) -> Codes:
        scale = _half(np.abs(X).max(axis=1), "int8")
        safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
        q = np.clip(np.rint(X / safe[:, None] * 127.0), -127, 127).astype(np.int8)
        return {"scale": scale, "values": q}

    def reconstruct(self, codes: Codes) -> np.ndarray:
        scale = codes["scale"].astype(np.float32) / np.float32(127.0)
        return codes["values"].astype(np.float32) * scale[:, None]

    def _scorer(self, Q: np.ndarray) -> Callable[[Codes], np.ndarray]:
        Qt = ExactMatrix(Q.T / np.float32(127.0))  # exact: an item's score depends on its code alone
        return lambda codes: (Qt.left_product(codes["values"]) * codes["scale"].astype(np.float64)[:, None]).astype(np.float32)

    def norms(self, codes: Codes) -> np.ndarray:
        v = codes["values"].astype(np.float32)
        return np.sqrt(np.einsum("nd,nd->n", v, v)) * (codes["scale"].astype(np.float32) / np.float32(127.0))

    def pack(self, codes: Codes) -> bytes:
        return codes["scale"].astype("<f2").tobytes() + codes["values"].tobytes()

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        d = self.n_features_in_
        view = _expect(data, n * (2 + d), "int8")
        scale = _finite_half(view[: 2 * n], "int8")
        values = np.frombuffer(view[2 * n :], dtype=np.int8).reshape(n, d)
        return {"scale": scale, "values": values}


@register
class SignCodec(_Parameterless):
    """One bit per dimension (the sign); decodes to sign x per-dimension mean magnitude, re-normalised.

    The magnitudes are learned at fit (d floats in the codec, no per-item cost) and lift cosine
    fidelity over plain +-1 vectors.
    """

    name = "sign"
    codec_id = b"SIGN"
    example_specs = ("sign",)

    def _fit(self, X: np.ndarray) -> None:
        self.magnitude_ = np.abs(X).mean(axis=0).astype(np.float32)

    @property
    def fixed_bits(self) -> float:
        self.check_is_fitted()
        return float(self.n_features_in_)

    def _quantize(self, X: np.ndarray) -> Codes:
        return {"bits": np.packbits(X > 0, axis=1, bitorder="little")}

    def reconstruct(self, codes: Codes) -> np.ndarray:
        d = self.n_features_in_
        signs = np.unpackbits(codes["bits"], axis=1, count=d, bitorder="little").astype(np.float32)
        return l2_normalize((2.0 * signs - 1.0) * self.magnitude_)

    def _scorer(self, Q: np.ndarray) -> Callable[[Codes], np.ndarray]:
        """Items are s*m/|m| (s = +-1 signs, m = magnitudes), so x.q = 2 bits.(m*q/|m|) - sum(m*q/|m|)."""
        d = self.n_features_in_
        total = float(np.linalg.norm(self.magnitude_))
        W = (Q * (self.magnitude_ / total if total > 0 else 0.0)).T.astype(np.float32)
        offset = W.sum(axis=0, dtype=np.float64)
        product = ExactMatrix(W)  # exact: an item's score depends on its code alone

        def score(codes: Codes) -> np.ndarray:
            bits = np.unpackbits(codes["bits"], axis=1, count=d, bitorder="little")
            return (2.0 * product.left_product(bits) - offset).astype(np.float32)

        return score

    def norms(self, codes: Codes) -> np.ndarray:
        unit = 1.0 if float(np.linalg.norm(self.magnitude_)) > 0 else 0.0
        return np.full(len(codes["bits"]), unit, dtype=np.float32)

    def pack(self, codes: Codes) -> bytes:
        return codes["bits"].tobytes()

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        row = (self.n_features_in_ + 7) // 8
        view = _expect(data, n * row, "sign")
        return {"bits": np.frombuffer(view, dtype=np.uint8).reshape(n, row)}

    def get_state(self) -> dict[str, np.ndarray]:
        return {"magnitude": self.magnitude_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        mag = state.get("magnitude")
        if mag is None or mag.shape != (self.n_features_in_,):
            raise FormatError(f"sign codec state needs 'magnitude' of shape ({self.n_features_in_},)")
        self.magnitude_ = mag.astype(np.float32)

