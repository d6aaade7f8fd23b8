"""Golden v1 files: every later semzip must decode them to the same bits on every machine, read the
same codes from them, and encode the same items to the same bytes (tests/golden/make_golden.py)."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from semzip import load_codec
from semzip.container import Archive, write_archive

from .golden.make_golden import ANS_GOLDENS, BUDGETS, HERE as GOLDEN, ITEMS, MODE_AT, SPECS

NAMES = list(SPECS)

pytestmark = pytest.mark.portability


def test_every_codec_family_has_a_golden():
    from semzip.codecs import available_codecs

    assert sorted(NAMES) == available_codecs()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("threads", [1, 2])
def test_golden_archives_still_decode(name, threads):
    with Archive.open(GOLDEN / f"v1_{name}.smz") as arc, threadpool_limits(threads):
        assert arc.verify() == []
        assert arc.ids == [f"item-{i}" for i in range(20)]
        np.testing.assert_array_equal(arc.decode(), np.load(GOLDEN / f"v1_{name}.decoded.npy"), strict=True)


@pytest.mark.parametrize("name", NAMES)
def test_golden_codes_are_read_exactly(name):
    pinned = np.load(GOLDEN / f"v1_{name}.codes.npz")
    with Archive.open(GOLDEN / f"v1_{name}.smz") as arc:
        for b in range(len(arc.index)):
            payload = bytes(arc.block_payload(b))
            codes = arc.codec.unpack(payload, int(arc.index[b]["items"]))
            assert sorted(f"b{b}_{key}" for key in codes) == sorted(k for k in pinned.files if k.startswith(f"b{b}_"))
            for key, value in codes.items():
                np.testing.assert_array_equal(value, pinned[f"b{b}_{key}"], strict=True)
            assert arc.codec.pack(codes) == payload, f"block {b}: packing the pinned codes changed"


@pytest.mark.parametrize("name", ANS_GOLDENS)
def test_golden_ans_bitstream(name):
    """Pins constriction's quantisation of each codec's stored tables: the same codes, the same ANS bytes."""
    codes = dict(np.load(GOLDEN / f"v1_{name}.ans.npz"))
    data = (GOLDEN / f"v1_{name}.ans.bin").read_bytes()
    at = MODE_AT.get(name, 0)
    assert data[at : at + 4] == b"\0\0\0\0"  # ANS mode, not the fixed-width fallback
    with Archive.open(GOLDEN / f"v1_{name}.smz") as arc:
        assert arc.codec.pack(codes) == data
        back = arc.codec.unpack(data, len(next(iter(codes.values()))))
    for key, value in codes.items():
        np.testing.assert_array_equal(back[key], value)


@pytest.mark.parametrize("name", NAMES)
def test_encoder_reproduces_golden_bytes(name, tmp_path):
    items = np.load(GOLDEN / ITEMS[name])
    if name in BUDGETS:  # written to a budget: the allocation across blocks must be reproduced too
        with Archive.open(GOLDEN / f"v1_{name}.smz") as arc:
            write_archive(tmp_path / "again.smz", arc.codec, items, ids=arc.ids, block_items=8, budget_bits=BUDGETS[name])
            with Archive.open(tmp_path / "again.smz") as again:
                assert bytes(again.data) == bytes(arc.data)
        return
    with Archive.open(GOLDEN / f"v1_{name}.smz") as arc:
        for b in range(len(arc.index)):
            start = int(arc._starts[b])
            block = items[start : start + int(arc.index[b]["items"])]
            assert arc.codec.encode(block) == bytes(arc.block_payload(b)), f"block {b} bitstream changed"


def test_golden_shared_codec_archive():
    codec = load_codec(GOLDEN / "v1_pq_shared.smzc")
    with Archive.open(GOLDEN / "v1_pq_shared.smz", codec=codec) as arc:
        np.testing.assert_array_equal(arc.decode(), np.load(GOLDEN / "v1_pq.decoded.npy"), strict=True)
        assert arc.pixels.tolist() == [i * 1000 + 1 for i in range(20)]
