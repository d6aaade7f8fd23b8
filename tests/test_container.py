import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semzip import CodecMismatchError, FormatError, InputError, SemzipError, WriteError, make_codec
from semzip.container import MAGIC, Archive, append_archive, write_archive

from .utils import unit_rows


@pytest.fixture(scope="module")
def pq():
    return make_codec("pq:M=8,K=16,opq=0").fit(unit_rows(500, 64, seed=11))


def test_write_read_round_trip(tmp_path, pq):
    X = unit_rows(250, 64, seed=12)
    path = tmp_path / "a.smz"
    write_archive(path, pq, X, ids=[f"img{i}.jpg" for i in range(250)], model="ViT-L-14:openai", block_items=64)
    with Archive.open(path) as arc:
        assert (arc.items, arc.dim, arc.model, len(arc.index)) == (250, 64, "ViT-L-14:openai", 4)
        np.testing.assert_array_equal(arc.decode(), pq.decode(pq.encode(X), 250))
        np.testing.assert_array_equal(arc.get("img200.jpg"), arc.decode()[200])
        info = arc.info()
        assert info["total_bits"] == 8 * os.path.getsize(path)
        assert info["payload_bits"] == 8 * int(arc.index["nbytes"].sum())
        assert info["bits_per_item"] == info["total_bits"] / 250
        assert info["codec_bits"] == 8 * len(pq.to_bytes())
        assert arc.verify() == []


def test_pixels_give_bits_per_pixel(tmp_path, pq):
    path = tmp_path / "p.smz"
    write_archive(path, pq, unit_rows(10, 64), pixels=np.full(10, 640 * 480))
    with Archive.open(path) as arc:
        info = arc.info()
    assert info["bpp"] == pytest.approx(info["total_bits"] / (10 * 640 * 480))


def test_append_keeps_old_items_and_order(tmp_path, pq):
    X, Y = unit_rows(100, 64, seed=13), unit_rows(30, 64, seed=14)
    path = tmp_path / "a.smz"
    write_archive(path, pq, X, block_items=40)
    append_archive(path, Y)
    with Archive.open(path) as arc:
        assert arc.ids == [str(i) for i in range(130)]
        np.testing.assert_array_equal(arc.decode(), np.concatenate([pq.decode(pq.encode(X[i:i + 40]), len(X[i:i + 40]))
                                                                     for i in range(0, 100, 40)] + [pq.decode(pq.encode(Y), 30)]))
        assert arc.verify() == []


def test_failed_append_leaves_the_archive_intact(tmp_path, pq):
    path = tmp_path / "a.smz"
    write_archive(path, pq, unit_rows(20, 64), ids=[f"x{i}" for i in range(20)])
    before = path.read_bytes()
    with pytest.raises(InputError, match="ids already in the archive"):
        append_archive(path, unit_rows(2, 64), ids=["x3", "new"])
    with pytest.raises(InputError, match="width 32"):
        append_archive(path, unit_rows(2, 32))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.smz"]  # no temp files left behind


def test_shared_codec_mode(tmp_path, pq):
    path = tmp_path / "s.smz"
    X = unit_rows(10, 64)
    write_archive(path, pq, X, embed_codec=False)
    with Archive.open(path) as arc:
        assert not arc.codec_embedded and arc.info()["codec_bits"] == 0
        with pytest.raises(CodecMismatchError, match="does not embed its codec"):
            arc.decode()
    other = make_codec("pq:M=8,K=16,opq=0").fit(unit_rows(500, 64, seed=99))
    with pytest.raises(CodecMismatchError, match="wrong codec"):
        Archive.open(path, codec=other)
    with Archive.open(path, codec=pq) as arc:
        np.testing.assert_array_equal(arc.decode(), pq.decode(pq.encode(X), 10))


@pytest.mark.parametrize("cut", [0, 5, 17, 40, -1, -30])
def test_truncated_archives_are_refused(tmp_path, pq, cut):
    path = tmp_path / "a.smz"
    write_archive(path, pq, unit_rows(50, 64))
    raw = path.read_bytes()
    path.write_bytes(raw[:cut] if cut >= 0 else raw[:cut])
    with pytest.raises(FormatError):
        with Archive.open(path) as arc:
            arc.decode()


def test_every_single_bit_flip_is_detected(tmp_path, pq):
    path = tmp_path / "a.smz"
    write_archive(path, pq, unit_rows(40, 64), block_items=16)
    raw = path.read_bytes()
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(raw), size=150, replace=False):
        damaged = bytearray(raw)
        damaged[pos] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(damaged))
        try:
            with Archive.open(path) as arc:
                assert arc.verify(), f"flip at byte {pos} went unnoticed"
        except FormatError:
            pass


def test_unknown_version_and_magic(tmp_path, pq):
    path = tmp_path / "a.smz"
    write_archive(path, pq, unit_rows(5, 64))
    raw = bytearray(path.read_bytes())
    raw[8:10] = struct.pack("<H", 9)
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="unsupported archive version 9"):
        Archive.open(path)
    path.write_bytes(b"PK\x03\x04" + bytes(raw[4:]))
    with pytest.raises(FormatError, match="bad magic"):
        Archive.open(path)


def test_bad_inputs(tmp_path, pq):
    with pytest.raises(InputError, match="unique"):
        write_archive(tmp_path / "a.smz", pq, unit_rows(3, 64), ids=["a", "b", "a"])
    with pytest.raises(InputError, match="2 ids given for 3 items"):
        write_archive(tmp_path / "a.smz", pq, unit_rows(3, 64), ids=["a", "b"])
    with pytest.raises(InputError, match="no such archive"):
        Archive.open(tmp_path / "missing.smz")
    with pytest.raises(WriteError, match="cannot write"):
        write_archive(tmp_path / "no" / "dir" / "a.smz", pq, unit_rows(3, 64))
    with Archive.open(_small(tmp_path, pq)) as arc, pytest.raises(InputError, match="no item with id 'zz'"):
        arc.get("zz")


def _small(tmp_path, pq):
    path = tmp_path / "small.smz"
    write_archive(path, pq, unit_rows(3, 64))
    return path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_bytes_only_raise_semzip_errors(tmp_path, pq, data):
    """No byte string makes the reader fail with anything but semzip's own error."""
    base = _small(tmp_path, pq).read_bytes()
    choice = data.draw(st.sampled_from(["random", "mutate", "splice"]))
    if choice == "random":
        blob = MAGIC + data.draw(st.binary(max_size=300))
    elif choice == "mutate":
        blob = bytearray(base)
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    else:
        cut = data.draw(st.integers(0, len(base)))
        blob = base[:cut] + data.draw(st.binary(max_size=40)) + base[cut:]
    path = tmp_path / "fuzz.smz"
    path.write_bytes(blob)
    try:
        with Archive.open(path) as arc:
            arc.verify()
            arc.decode()
            arc.info()
    except SemzipError:
        pass


def test_ids_cost_little(tmp_path, pq):
    X = unit_rows(200, 64)
    write_archive(tmp_path / "d.smz", pq, X)
    names = [f"photos/2026/IMG_{i:05d}.jpg" for i in range(200)]
    write_archive(tmp_path / "n.smz", pq, X, ids=names)
    with Archive.open(tmp_path / "d.smz") as arc:
        assert arc.info()["ids_bits"] == 0 and arc.ids[-1] == "199"
    with Archive.open(tmp_path / "n.smz") as arc:
        assert arc.ids == names
        assert arc.info()["ids_bits"] < 0.25 * 8 * sum(len(n) for n in names)
    with pytest.raises(InputError, match="NUL"):
        write_archive(tmp_path / "z.smz", pq, X[:2], ids=["a", "b\0c"])


@pytest.mark.parametrize("n", [5, 1024, 3000])
def test_overhead_model_covers_what_the_container_writes(tmp_path, n):
    """What rate control allows for (`_layout.overhead_bytes`) is at least what an archive spends
    beside its codec state and payload, and not far above it, whatever the block count."""
    from semzip._layout import STREAM_BYTES, overhead_bytes

    X = unit_rows(n, 32, seed=5)
    codec = make_codec("pq:M=4,K=16,opq=0").fit(unit_rows(200, 32, seed=6))
    path = tmp_path / "a.smz"
    write_archive(path, codec, X, model="ViT-L-14-336:openai")
    with Archive.open(path) as arc:
        blocks = len(arc.index)
        payload, state = int(arc.index["nbytes"].sum()), arc.sections[b"CODC"].length
    spent = path.stat().st_size - state - payload + STREAM_BYTES * blocks  # each block's own framing
    assert spent <= overhead_bytes(n) <= spent + 400
