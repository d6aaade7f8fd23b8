"""Golden v1 files: every later semzip must decode them, and encode the same items to the same bytes."""

from pathlib import Path

import numpy as np
import pytest

from semzip import load_codec
from semzip.container import Archive

GOLDEN = Path(__file__).parent / "golden"
NAMES = ["f16", "int8", "sign", "pq"]


@pytest.mark.parametrize("name", NAMES)
def test_golden_archives_still_decode(name):
    with Archive.open(GOLDEN / f"v1_{name}.smz") as arc:
        assert arc.verify() == []
        assert arc.ids == [f"item-{i}" for i in range(20)]
        np.testing.assert_array_equal(arc.decode(), np.load(GOLDEN / f"v1_{name}.decoded.npy"))


@pytest.mark.parametrize("name", NAMES)
def test_encoder_reproduces_golden_bytes(name):
    items = np.load(GOLDEN / "items.npy")
    with Archive.open(GOLDEN / f"v1_{name}.smz") as arc:
        for b in range(len(arc.index)):
            start = int(arc._starts[b])
            block = items[start : start + int(arc.index[b]["items"])]
            assert arc.codec.encode(block) == bytes(arc.block_payload(b)), f"block {b} bitstream changed"


def test_golden_shared_codec_archive():
    codec = load_codec(GOLDEN / "v1_pq_shared.smzc")
    with Archive.open(GOLDEN / "v1_pq_shared.smz", codec=codec) as arc:
        np.testing.assert_array_equal(arc.decode(), np.load(GOLDEN / "v1_pq.decoded.npy"))
        assert arc.pixels.tolist() == [i * 1000 + 1 for i in range(20)]
