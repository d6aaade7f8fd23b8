"""Crafted payloads reach each codec's own parser: the archive's CRCs only stop accidents, so any
byte string a block may hold must decode to n finite vectors or raise FormatError, never crash."""

import zlib

import numpy as np
import pytest

from semzip import FormatError, make_codec
from semzip.codecs import available_codecs, codec_class

from .utils import unit_rows

SPECS = [spec for name in available_codecs() for spec in codec_class(name).example_specs]
CASES_PER_SPEC = 300


@pytest.fixture(scope="module")
def fitted():
    X = unit_rows(600, 64, seed=1)
    return {spec: make_codec(spec).fit(X) for spec in SPECS}


def _crafted(rng: np.random.Generator, valid: bytes) -> bytes:
    """A payload made on purpose: random, or the valid one mutated, truncated, extended or re-moded."""
    kind = rng.integers(6)
    data = bytearray(valid)
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 2 * len(valid) + 16)))
    if kind == 1 and data:
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 9))):
            data[pos] = int(rng.integers(256))
    elif kind == 2:
        del data[int(rng.integers(0, len(data) + 1)):]
    elif kind == 3:
        data += rng.bytes(int(rng.integers(1, 64)))
    elif kind == 4 and len(data) >= 4:
        data[:4] = int(rng.choice([0, 1, 2, 0xFFFFFFFF])).to_bytes(4, "little")
    elif kind == 5 and data:  # a valid header with a body of one repeated byte (extreme symbol runs)
        data[4:] = bytes([int(rng.integers(256))]) * (len(data) - 4)
    return bytes(data)


@pytest.mark.parametrize("spec", SPECS)
def test_crafted_payloads_decode_or_raise_format_error(fitted, spec):
    codec = fitted[spec]
    rng = np.random.default_rng(zlib.crc32(spec.encode()))
    X = unit_rows(40, 64, seed=2)
    valid = codec.encode(X)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(CASES_PER_SPEC):
        data = _crafted(rng, valid)
        n = int(rng.choice([40, 39, 41, 1, 400]))
        try:
            Y = codec.decode(data, n)
        except FormatError:
            outcomes["refused"] += 1
            continue
        assert Y.shape == (n, 64) and Y.dtype == np.float32
        assert np.isfinite(Y).all(), f"{spec}: a crafted payload decoded to non-finite values"
        outcomes["decoded"] += 1
    assert outcomes["refused"] > 0
