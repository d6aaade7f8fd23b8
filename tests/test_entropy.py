import json

import numpy as np
import pytest

from semzip import FormatError
from semzip.entropy import FrequencyTable, SymbolReader, encode_symbols


def skewed(n, streams, alphabet, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(alphabet, 0.3), size=streams)
    return np.stack([rng.choice(alphabet, size=n, p=p[s]) for s in range(streams)], axis=1)


def test_round_trip_of_several_parts():
    a, b = skewed(500, 4, 16, seed=1), skewed(500, 1, 300, seed=2)
    ta, tb = FrequencyTable.fit(a, 16), FrequencyTable.fit(b, 300)
    reader = SymbolReader(encode_symbols([(ta, a), (tb, b)]))
    np.testing.assert_array_equal(reader.read(ta, 500), a)
    np.testing.assert_array_equal(reader.read(tb, 500), b)
    reader.finish()


def test_counted_bits_track_information_content():
    symbols = skewed(4000, 8, 64)
    table = FrequencyTable.fit(symbols, 64)
    counted = 8 * len(encode_symbols([(table, symbols)]))
    ideal = table.information_bits(symbols).sum()
    assert ideal <= counted <= ideal + 64 + 0.001 * ideal
    assert counted < 4000 * 8 * 6  # below the fixed-length rate of log2(64) = 6 bits


def test_unseen_symbols_stay_encodable():
    table = FrequencyTable.fit(np.zeros((100, 1), dtype=int), 8)
    symbols = np.arange(8)[:, None]
    np.testing.assert_array_equal(SymbolReader(encode_symbols([(table, symbols)])).read(table, 8), symbols)


def test_damaged_streams_are_reported():
    symbols = skewed(100, 2, 16)
    table = FrequencyTable.fit(symbols, 16)
    data = encode_symbols([(table, symbols)])
    with pytest.raises(FormatError, match="whole number of 32-bit words"):
        SymbolReader(data[:-1])
    with pytest.raises(FormatError, match="unknown symbol-stream mode"):
        SymbolReader(b"\x07\x00\x00\x00" + data[4:])
    reader = SymbolReader(data + b"\x01\x00\x00\x00")
    reader.read(table, 100)
    with pytest.raises(FormatError, match="left over"):
        reader.finish()


def test_bad_tables_are_refused():
    """Programmer misuse is a ValueError; the same counts read from a codec file are a FormatError."""
    with pytest.raises(ValueError):
        FrequencyTable(np.zeros((2, 4), dtype=np.uint32))
    with pytest.raises(ValueError):
        FrequencyTable(np.ones(4, dtype=np.uint32))
    from safetensors.numpy import load, save

    from semzip import make_codec
    from semzip.codecs import codec_from_bytes
    from semzip.codecs._base import _hash_state

    blob = make_codec("pq:M=4,K=16,opq=0").fit(np.random.default_rng(0).standard_normal((200, 16))).to_bytes()
    meta = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])["__metadata__"]
    arrays = dict(load(blob))
    arrays["counts"] = np.zeros_like(arrays["counts"])
    meta["hash"] = _hash_state(meta["codec_id"].encode(), meta["spec"], int(meta["n_features_in"]), arrays)
    with pytest.raises(FormatError, match="frequency table counts"):
        codec_from_bytes(save(arrays, metadata=meta))


def test_data_unlike_the_training_set_falls_back_to_fixed_width():
    table = FrequencyTable.fit(np.zeros((1000, 3), dtype=int), 32)  # learned: always 0
    symbols = np.random.default_rng(3).integers(1, 32, size=(200, 3))
    data = encode_symbols([(table, symbols)])
    assert 8 * len(data) <= 200 * 3 * 5 + 64
    reader = SymbolReader(data)
    np.testing.assert_array_equal(reader.read(table, 200), symbols)
    reader.finish()


@pytest.mark.parametrize("alphabets", [(16,), (256,), (65536,), (16, 16), (16, 5, 256), (3, 16), (1000,)])
@pytest.mark.parametrize("items", [1, 7, 64])
def test_forced_fixed_width_round_trips_bit_exactly(alphabets, items):
    rng = np.random.default_rng(items)
    parts = [(FrequencyTable(np.ones((3, a), dtype=np.uint32)), rng.integers(0, a, size=(items, 3))) for a in alphabets]
    data = encode_symbols(parts, raw=True)
    # the documented layout: mode word 1, then every field LSB first, parts back to back, zero padding
    bits = np.concatenate([((s[..., None] >> np.arange((t.alphabet - 1).bit_length())) & 1).ravel() for t, s in parts])
    expected = np.packbits(bits.astype(np.uint8), bitorder="little").tobytes()
    assert data == b"\x01\0\0\0" + expected + b"\0" * (-len(expected) % 4)
    reader = SymbolReader(data)
    assert reader.raw
    for table, symbols in parts:
        out = reader.read(table, items, dtype=np.uint16 if table.alphabet <= 65536 else np.int32)
        np.testing.assert_array_equal(out, symbols)
    reader.finish()


def test_forced_fixed_width_never_runs_the_entropy_coder(monkeypatch):
    import constriction

    symbols = skewed(300, 4, 16)
    table = FrequencyTable.fit(symbols, 16)

    def refuse(*args, **kwargs):
        raise AssertionError("ANS used")

    monkeypatch.setattr(constriction.stream.stack, "AnsCoder", refuse)
    data = encode_symbols([(table, symbols)], raw=True)
    assert len(data) == 4 + 300 * 4 * 4 // 8
    reader = SymbolReader(data)
    np.testing.assert_array_equal(reader.read(table, 300, dtype=np.uint8), symbols)
    reader.finish()
    with pytest.raises(FormatError, match="left over"):
        reader = SymbolReader(data + b"\x00\x00\x00\x00")
        reader.read(table, 300)
        reader.finish()
    with pytest.raises(FormatError, match="shorter than its item count"):
        SymbolReader(data).read(table, 301)


@pytest.mark.portability
def test_ans_bitstream_of_a_fixed_table_is_pinned():
    """constriction's quantisation of the probabilities is part of the format: these bytes must not change."""
    import hashlib

    table = FrequencyTable(np.array([[1, 5, 1000, 3, 70000, 2, 9, 1], [7, 7, 7, 7, 1, 1, 1, 100]], dtype=np.uint32))
    rng = np.random.default_rng(7)
    p = table.probabilities()
    symbols = np.stack([rng.choice(8, 500, p=p[0]), rng.choice(8, 500, p=p[1])], axis=1)
    data = encode_symbols([(table, symbols)])
    assert data[:4] == b"\0\0\0\0" and len(data) == 100
    assert hashlib.sha256(data).hexdigest() == "e9e1562d622a07152a0ab39584d4f963b60335ec06b1963d2101cddc00ca7872"
