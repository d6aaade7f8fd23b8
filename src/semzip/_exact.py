"""Arithmetic whose result is the same bits on every machine: decoders are built from it.

BLAS sums a matrix product in an order that depends on the kernel (OPENBLAS_CORETYPE), the thread
count and the batch (how many rows it blocks together), so float32 `A @ B` gives other last bits
elsewhere; numpy's transcendental ufuncs (`tanh`, `exp`) differ between SIMD targets (measured:
AVX2 vs SSE4 dispatch). Here:

- `ExactMatrix`: each row of A and each column of B is scaled by a power of two and rounded to an
  integer, with as many bits as leave every partial sum of the product an integer below 2**53. The
  float64 product is then exact, so any summation order gives the same bits. The scale of a row
  depends on that row alone (one item), so a product does not depend on the other rows of a batch.
  Rounding costs at most 2**-bits of each row's and column's largest magnitude (2**-22 at an inner
  size of 512): far below what any codec here quantises away.
- `sigmoid`: the logistic function from IEEE +, *, / and exact scalings only (no libm, no SIMD
  dispatch), accurate to a few float64 ulps.
"""

from __future__ import annotations

import math

import numpy as np

#: Bits of a float64 significand: integers below 2**53 add exactly in any order.
_SIGNIFICAND = 53
#: The same for float32, and the fewest bits `ExactMatrix(single=True)` leaves B before it uses float64.
_FLOAT32_SIGNIFICAND, _SINGLE_BITS = 24, 14


def _bits(inner: int) -> int:
    """Integer bits per operand such that a sum of `inner` products stays below 2**53."""
    return (_SIGNIFICAND - max(1, math.ceil(math.log2(max(inner, 2))))) // 2


def _to_integers(X: np.ndarray, axis: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """X scaled along `axis` by powers of two and rounded: integers of magnitude <= 2**bits (float64),
    and the exponent s with X ~ integers * 2**-s (per row for axis=1, per column for axis=0)."""
    X = np.asarray(X, dtype=np.float64)
    if X.size:
        peak = np.maximum(X.max(axis=axis, keepdims=True), -X.min(axis=axis, keepdims=True))
    else:
        peak = np.zeros((1, 1))
    shift = bits - np.frexp(peak)[1]  # |X| < 2**e, so |X * 2**(bits - e)| < 2**bits
    out = _times_power_of_two(X, shift)
    return np.rint(out, out=out), shift


#: Exponents |s| below which X * 2.0**s is computed as a product (2**s is then a normal float64):
#: 3x faster than ldexp with broadcast exponents.
_SAFE_EXPONENT = 400


def _times_power_of_two(X: np.ndarray, *shifts: np.ndarray) -> np.ndarray:
    """A new float64 X * 2**(sum of shifts) (each broadcast against X), the same bits as np.ldexp: one
    shift is one correctly rounded product; two are exact for X of integers below 2**53 (sums of
    exact products), as no intermediate then leaves the normal range."""
    if all(np.abs(s).max(initial=0) < _SAFE_EXPONENT for s in shifts):
        out = np.multiply(X, np.ldexp(1.0, shifts[0]))
        for s in shifts[1:]:
            out *= np.ldexp(1.0, s)
        return out
    return np.ldexp(X, sum(shifts))


class ExactMatrix:
    """A right-hand operand B (k, m), prepared once, for products `A @ B` exact to the rounding of
    the operands (see the module docstring); results are float64.

    `left_bits` promises left operands of integers below 2**left_bits in magnitude (codes' levels):
    `integer_product` then uses them as they are, and B keeps every bit the 2**53 bound leaves it.
    With `single`, the bound is float32's 2**24 instead (sums of k products then need log2 k +
    left_bits of its 24 bits, leaving B 14-15 bits at k = 256-512): half the time of float64 products,
    still exact in any order; used when B keeps at least `_SINGLE_BITS` bits, else float64."""

    def __init__(self, B: np.ndarray, left_bits: int | None = None, single: bool = False) -> None:
        B = np.asarray(B)
        if B.ndim != 2:
            raise ValueError(f"ExactMatrix needs a 2-D operand, got shape {B.shape}")
        self.shape = B.shape
        self.left_bits = left_bits
        inner = max(1, math.ceil(math.log2(max(B.shape[0], 2))))
        self._dtype: type[np.floating] = np.float64
        if left_bits is None:
            self._bits = _bits(B.shape[0])
        elif single and _FLOAT32_SIGNIFICAND - inner - left_bits >= _SINGLE_BITS:
            self._bits, self._dtype = _FLOAT32_SIGNIFICAND - inner - left_bits, np.float32
        else:
            self._bits = _SIGNIFICAND - inner - left_bits
        B_int, self._shift = _to_integers(B, 0, self._bits)
        self._B = B_int.astype(self._dtype)

    def gathered(self, blocks: list[np.ndarray]) -> ExactMatrix:
        """The operand whose column block j holds B's rows `blocks[j]`, in B's own integers, column
        scales and bits: for left rows whose scale (largest magnitude) equals that of the rows they
        stand for, with B's other rows met by zeros there, each product is the same exact sum of the
        same integer terms, so the same bits as with B, on fewer operands (a 3x3 convolution over a
        grid of side <= 2 as one dense product, pqvae._infer)."""
        if self.left_bits is not None:
            raise ValueError("gathered is for left_product operands")
        out = object.__new__(ExactMatrix)
        out._B = np.ascontiguousarray(np.concatenate([self._B[rows] for rows in blocks], axis=1))
        out._shift = np.concatenate([self._shift] * len(blocks), axis=1)
        out.shape = out._B.shape
        out.left_bits, out._bits, out._dtype = None, self._bits, self._dtype
        return out

    def integer_product(self, A: np.ndarray) -> np.ndarray:
        """float64 A @ B for A (n, k) of integers below 2**left_bits in magnitude: exact sums of exact
        products, so the same bits whatever the BLAS, threads or batch."""
        if self.left_bits is None:
            raise ValueError("integer_product needs an ExactMatrix made with left_bits")
        out = (np.asarray(A, dtype=self._dtype) @ self._B).astype(np.float64)
        return np.ldexp(out, -self._shift, out=out)

    def left_product(self, A: np.ndarray) -> np.ndarray:
        """float64 A @ B for A (..., k); the same bits whatever the BLAS, threads or batch."""
        A = np.asarray(A)
        lead = A.shape[:-1]
        flat = A.reshape(-1, self.shape[0])
        Ai, shift = _to_integers(flat, 1, self._bits)
        out = _times_power_of_two(Ai @ self._B, -shift, -self._shift)
        return out.reshape(*lead, self.shape[1])


def exact_matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """float64 A @ B, machine-independent (`ExactMatrix` for a B used once)."""
    return ExactMatrix(B).left_product(A)


#: Cody-Waite split of ln 2 (the high part has trailing zero bits, so k * _LN2_HI is exact).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: Taylor coefficients 1/j! of exp on |r| <= ln(2)/2, highest first: truncation error < 1e-17.
_EXP_TAYLOR = tuple(1.0 / math.factorial(j) for j in range(14, -1, -1))


def _exp(t: np.ndarray) -> np.ndarray:
    """exp of float64 t in [-80, 80] with basic arithmetic only."""
    k = np.rint(t * (1.0 / math.log(2.0)))
    r = (t - k * _LN2_HI) - k * _LN2_LO
    p = np.full_like(r, _EXP_TAYLOR[0])
    for c in _EXP_TAYLOR[1:]:
        p = p * r + c
    return np.ldexp(p, k.astype(np.int32))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float64 1 / (1 + exp(-x)), machine-independent; |x| > 80 is saturated (error < 1e-34)."""
    return 1.0 / (1.0 + _exp(-np.clip(np.asarray(x, dtype=np.float64), -80.0, 80.0)))
