"""Decoders are deterministic by design: an item's decoded float32 is a function of its code and the
codec state alone, not of the BLAS kernel, the thread count, the block size or the other items of a
batch. `.ci/run` reruns every `portability` test under several OpenBLAS kernels."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from semzip import make_codec
from semzip.codecs import available_codecs, codec_class

from .utils import unit_rows

pytestmark = pytest.mark.portability

#: Every registry example at 64-d, plus wide codecs whose products BLAS splits across threads.
CASES = [(spec, 64) for name in available_codecs() for spec in codec_class(name).example_specs] + [
    ("pq:M=16,K=16,opq=1", 512),
    ("pqvae:dim=8,K=16,grid=2,C=16,H=32,blocks=1,coarse=2,bits=150", 512),
    ("smic:atoms=64,k=4,coef=4,dbits=4,bits=0.0,cos=0.0", 512),
]
IDS = [f"{spec}@{d}" for spec, d in CASES]


@pytest.fixture(scope="module")
def fitted():
    return {(spec, d): make_codec(spec).fit(unit_rows(800, d, seed=1)) for spec, d in CASES}


def _slice(codes, items):
    return {key: value[items] for key, value in codes.items()}


@pytest.mark.parametrize(("spec", "d"), CASES, ids=IDS)
def test_decoding_a_block_equals_decoding_item_by_item(fitted, spec, d):
    codec = fitted[spec, d]
    codes = codec.quantize(unit_rows(150, d, seed=2))
    whole = codec.reconstruct(codes)
    singles = np.concatenate([codec.reconstruct(_slice(codes, slice(i, i + 1))) for i in range(150)])
    np.testing.assert_array_equal(whole, singles, strict=True)
    for size in (7, 64):  # other block sizes, through the bytes
        parts = [codec.decode(codec.pack(_slice(codes, slice(i, i + size))), len(whole[i : i + size]))
                 for i in range(0, 150, size)]
        np.testing.assert_array_equal(np.concatenate(parts), whole, strict=True)
    perm = np.random.default_rng(3).permutation(150)
    np.testing.assert_array_equal(codec.reconstruct(_slice(codes, perm)), whole[perm], strict=True)


@pytest.mark.parametrize(("spec", "d"), CASES, ids=IDS)
def test_identical_codes_decode_identically_in_one_batch(fitted, spec, d):
    codec = fitted[spec, d]
    codes = codec.quantize(unit_rows(3, d, seed=4))
    tiled = codec.reconstruct({key: np.repeat(value, 300, axis=0) for key, value in codes.items()})
    np.testing.assert_array_equal(tiled, np.repeat(codec.reconstruct(codes), 300, axis=0), strict=True)


@pytest.mark.parametrize(("spec", "d"), CASES, ids=IDS)
def test_decoding_does_not_depend_on_the_thread_count(fitted, spec, d):
    codec = fitted[spec, d]
    data = codec.encode(unit_rows(2000, d, seed=5))
    with threadpool_limits(1):
        one = codec.decode(data, 2000)
    with threadpool_limits(2):
        two = codec.decode(data, 2000)
    np.testing.assert_array_equal(one, two, strict=True)


def test_exact_products_are_exact_and_close():
    """ExactMatrix: the same bits under any batch or thread count, within 2**-20 of the float64 product."""
    from semzip._exact import ExactMatrix, sigmoid

    rng = np.random.default_rng(6)
    A, B = rng.standard_normal((700, 512)), rng.standard_normal((512, 96))
    E = ExactMatrix(B)
    with threadpool_limits(2):
        whole = E.left_product(A)
    rows = np.concatenate([E.left_product(A[i : i + 1]) for i in range(0, 700, 1)])
    np.testing.assert_array_equal(whole, rows)
    bound = 2.0**-20 * np.abs(A).sum(axis=1, keepdims=True) * np.abs(B).max()
    assert (np.abs(whole - A @ B) <= bound).all()
    x = np.linspace(-30, 30, 10001)
    np.testing.assert_allclose(sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-14)


def test_power_of_two_scaling_is_ldexp():
    """The products that scale operands and results by powers of two give ldexp's bits, on rows of
    every magnitude (zero, subnormal, huge) and past the exponents where they fall back to ldexp."""
    from semzip._exact import ExactMatrix, _times_power_of_two, _to_integers

    rng = np.random.default_rng(8)
    X = rng.standard_normal((64, 40)) * np.exp2(rng.integers(-300, 300, size=(64, 1)))
    X[0], X[1], X[2, :3] = 0.0, 1e-310, (3e-320, -1e300, 1e-300)
    for shifts in ((rng.integers(-399, 400, size=(64, 1)),), (np.full((64, 1), 1100),)):
        with np.errstate(over="ignore"):  # 2**1100 x 1e300: inf either way
            np.testing.assert_array_equal(_times_power_of_two(X, *shifts), np.ldexp(X, sum(shifts)))
    sums = np.rint(rng.uniform(-1, 1, size=(64, 40)) * 2.0 ** rng.integers(0, 53, size=(64, 1)))  # as Ai @ B
    sums[:, :2] = 0.0, 1.0
    two = rng.integers(-399, 400, size=(64, 1)), rng.integers(-399, 400, size=(1, 40))
    np.testing.assert_array_equal(_times_power_of_two(sums, *two), np.ldexp(sums, two[0] + two[1]))
    ints, shift = _to_integers(X, 1, 21)
    np.testing.assert_array_equal(ints, np.rint(np.ldexp(X, shift)))
    B = rng.standard_normal((40, 8))
    E = ExactMatrix(B)
    Ai, s = _to_integers(X, 1, E._bits)
    np.testing.assert_array_equal(E.left_product(X), np.ldexp(Ai @ E._B, -(s + E._shift)))


def test_integer_products_are_exact_in_any_summation_order():
    """ExactMatrix(left_bits=b).integer_product: integer levels below 2**b times B, the same bits
    when the inner axis is permuted (BLAS sums in another order) and within 2**-35 of float64."""
    from semzip._exact import ExactMatrix

    rng = np.random.default_rng(7)
    A = (2 * rng.integers(0, 8, size=(300, 256)) - 7).astype(np.float64)  # odd levels, |A| < 2**3
    B = rng.standard_normal((256, 64))
    perm = rng.permutation(256)
    E, P = ExactMatrix(B, left_bits=3), ExactMatrix(B[perm], left_bits=3)
    with threadpool_limits(2):
        whole = E.integer_product(A)
    np.testing.assert_array_equal(whole, P.integer_product(A[:, perm]))
    np.testing.assert_array_equal(whole, np.concatenate([E.integer_product(A[i : i + 1]) for i in range(300)]))
    assert (np.abs(whole - A @ B) <= 2.0**-35 * np.abs(A).sum(axis=1, keepdims=True) * np.abs(B).max()).all()
    with pytest.raises(ValueError, match="left_bits"):
        ExactMatrix(B).integer_product(A)
    # with single=True: 24 - 8 - 3 = 13 bits are too few for B, so float64 products, the same bits
    np.testing.assert_array_equal(ExactMatrix(B, left_bits=3, single=True).integer_product(A), whole)
    levels, C, order = (2 * rng.integers(0, 4, size=(300, 128)) - 3).astype(np.float64), B[:128], rng.permutation(128)
    single = ExactMatrix(C, left_bits=2, single=True)  # 24 - 7 - 2 = 15 bits: float32 products
    np.testing.assert_array_equal(single.integer_product(levels),
                                  ExactMatrix(C[order], left_bits=2, single=True).integer_product(levels[:, order]))
    assert (np.abs(single.integer_product(levels) - levels @ C)
            <= 2.0**-14 * np.abs(levels).sum(axis=1, keepdims=True) * np.abs(C).max()).all()


@pytest.mark.parametrize("grid", [1, 2])
def test_small_grid_convolution_as_one_dense_product_is_the_same_bits(grid):
    """pqvae on grids of side <= 2: the 3x3 convolution as one dense product over the gathered
    integer weights equals the im2col product bit for bit, whatever the rows' magnitudes."""
    from semzip._exact import ExactMatrix
    from semzip.codecs.pqvae._infer import _conv3, _dense_taps

    rng = np.random.default_rng(9)
    ci, co = 6, 5
    w = ExactMatrix(rng.standard_normal((co, ci, 3, 3)).transpose(2, 3, 1, 0).reshape(9 * ci, co))
    h = rng.standard_normal((40, grid, grid, ci)) * np.exp2(rng.integers(-30, 30, size=(40, 1, 1, 1)))
    h[0] = 0.0
    dense = w.gathered(_dense_taps(grid, ci)).left_product(h.reshape(40, -1)).reshape(40, grid, grid, co)
    np.testing.assert_array_equal(dense, _conv3(h, w), strict=True)
