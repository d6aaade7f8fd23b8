"""Entropy coding of code indices with probabilities learned at fit time (constriction's ANS coder).

A `FrequencyTable` holds integer symbol counts, one row per stream (e.g. one per PQ sub-space); all
counts are >= 1 so every symbol stays encodable. The coder model is rebuilt from those integers:
probabilities `counts / counts.sum()` fed to constriction's leakily quantised `Categorical` with
`perfect=False` (24-bit precision of the default `AnsCoder`). So the bitstream depends on the stored
counts and on constriction's float-to-fixed-point quantisation of those probabilities, which semzip
does not control: golden ANS streams for a fixed table and for every entropy-coded codec's tables
(tests/test_entropy.py, tests/test_golden.py) fail if a constriction release changes it. Blocks that ANS would make larger than fixed-width fields are stored raw.
Several tables can share one stream: `encode_symbols` takes (table, symbols)
parts and `SymbolReader` reads them back in the same order.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import constriction
import numpy as np
import numpy.typing as npt

from ._errors import FormatError

#: Largest count stored per symbol; tables are rescaled below it so they fit uint32 comfortably.
_MAX_COUNT = 1 << 24


@dataclass(frozen=True, eq=False)
class FrequencyTable:
    """Learned symbol counts, shape (streams, alphabet), dtype uint32, every entry >= 1."""

    counts: np.ndarray
    _models: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.counts)
        if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 2:
            raise ValueError(f"frequency table must be (streams, alphabet>=2), got shape {c.shape}")
        if not np.issubdtype(c.dtype, np.integer) or c.min() < 1 or c.max() > np.iinfo(np.uint32).max:
            raise ValueError("frequency table counts must be integers in [1, 2**32)")
        object.__setattr__(self, "counts", np.ascontiguousarray(c, dtype=np.uint32))

    @classmethod
    def fit(cls, symbols: np.ndarray, alphabet: int, max_count: int = _MAX_COUNT) -> FrequencyTable:
        """Count each stream's symbols (columns of `symbols`), with add-1/2 smoothing, rescaled (rounded,
        at least 1) so that no count exceeds `max_count` (a format storing counts narrower sets it)."""
        symbols = np.asarray(symbols)
        if symbols.ndim != 2:
            raise ValueError(f"symbols must be (items, streams), got shape {symbols.shape}")
        streams = symbols.shape[1]
        counts = np.zeros((streams, alphabet), dtype=np.int64)
        for s in range(streams):
            counts[s] = np.bincount(symbols[:, s], minlength=alphabet)[:alphabet]
        counts = 2 * counts + 1  # add-1/2 smoothing in integers
        peak = counts.max()
        if peak > max_count:
            counts = np.maximum(1, np.round(counts * (max_count / peak))).astype(np.int64)
        return cls(counts.astype(np.uint32))

    @property
    def streams(self) -> int:
        return int(self.counts.shape[0])

    @property
    def alphabet(self) -> int:
        return int(self.counts.shape[1])

    def probabilities(self) -> np.ndarray:
        c = self.counts.astype(np.float64)
        return c / c.sum(axis=1, keepdims=True)

    def models(self) -> list:
        """One constriction model per stream, built once and cached."""
        if not self._models:
            model = constriction.stream.model.Categorical
            self._models.extend(model(p, perfect=False) for p in self.probabilities())
        return self._models

    def information_bits(self, symbols: np.ndarray) -> np.ndarray:
        """Ideal code length -log2 p(symbols) per item, in bits: an estimate, not a counted rate."""
        symbols = self._check(symbols)
        logp = np.log2(self.probabilities())
        return -logp[np.arange(self.streams)[None, :], symbols].sum(axis=1)

    def entropy_bits(self) -> float:
        """Entropy of the table itself, bits per item (all streams)."""
        p = self.probabilities()
        return float(-(p * np.log2(p)).sum())

    def _check(self, symbols: np.ndarray) -> np.ndarray:
        symbols = np.asarray(symbols)
        if symbols.ndim != 2 or symbols.shape[1] != self.streams:
            raise ValueError(f"symbols must be (items, {self.streams}), got shape {symbols.shape}")
        if symbols.size and (symbols.min() < 0 or symbols.max() >= self.alphabet):
            raise ValueError(f"symbols outside the alphabet [0, {self.alphabet})")
        return symbols


_ANS, _RAW = 0, 1


def _width(alphabet: int) -> int:
    return max(1, (alphabet - 1).bit_length())


def encode_symbols(parts: Sequence[tuple[FrequencyTable, np.ndarray]], *, raw: bool = False) -> bytes:
    """Code several (table, symbols[items, streams]) parts into one stream.

    The stream starts with a little-endian 32-bit mode word: 0 = ANS with the tables' models,
    1 = raw fixed-width fields (ceil(log2 alphabet) bits each, LSB first), chosen when smaller, so
    data unlike the training set never costs more than fixed-length coding plus 64 bits.
    `raw=True` always writes fixed-width fields (no ANS at either end: the fast mode to read).
    """
    checked = [(table, table._check(symbols)) for table, symbols in parts]
    if not raw:
        coder = constriction.stream.stack.AnsCoder()
        # ANS is a stack: push the last symbol first so that decoding reads in natural order.
        for table, symbols in reversed(checked):
            models = table.models()
            for s in reversed(range(table.streams)):
                coder.encode_reverse(np.ascontiguousarray(symbols[:, s], dtype=np.int32), models[s])
        ans = coder.get_compressed().astype("<u4").tobytes()
        raw_bits = sum(symbols.size * _width(table.alphabet) for table, symbols in checked)
        if 8 * len(ans) <= raw_bits:
            return struct.pack("<I", _ANS) + ans
    packed = _pack_fields([(symbols, _width(table.alphabet)) for table, symbols in checked])
    return struct.pack("<I", _RAW) + packed + b"\0" * (-len(packed) % 4)


def _pack_fields(parts: Sequence[tuple[np.ndarray, int]]) -> bytes:
    """Fixed-width fields, LSB first, parts one after the other without padding.

    Fields of 4, 8 or 16 bits that start on byte boundaries are packed with byte arithmetic, other
    widths by expanding every bit: the same bytes either way.
    """
    if all(w in (4, 8, 16) for _, w in parts) and all(s.size * w % 8 == 0 for s, w in parts[:-1]):
        return b"".join(_pack_bytes(s.ravel(), w) for s, w in parts)
    bits = [((s.astype(np.int64)[..., None] >> np.arange(w)) & 1).ravel() for s, w in parts]
    return np.packbits(np.concatenate(bits).astype(np.uint8), bitorder="little").tobytes()


def _pack_bytes(flat: np.ndarray, width: int) -> bytes:
    if width == 8:
        return flat.astype(np.uint8).tobytes()
    if width == 16:
        return flat.astype("<u2").tobytes()
    return pack_nibbles(flat).tobytes()


def pack_nibbles(values: np.ndarray) -> np.ndarray:
    """4-bit values along the last axis -> uint8, two per byte, even positions in the low nibble
    (an odd count is padded with 0): the raw layout of 4-bit fields, and faiss's for 4-bit PQ codes."""
    v = values.astype(np.uint8, copy=False)
    if v.shape[-1] % 2:
        v = np.concatenate([v, np.zeros((*v.shape[:-1], 1), np.uint8)], axis=-1)
    return v[..., 0::2] | (v[..., 1::2] << 4)


def unpack_nibbles(packed: np.ndarray, count: int, dtype: npt.DTypeLike = np.uint8) -> np.ndarray:
    """The first `count` 4-bit values along the last axis of `pack_nibbles` output."""
    out = np.empty((*packed.shape[:-1], 2 * packed.shape[-1]), dtype=dtype)
    np.bitwise_and(packed, 15, out=out[..., 0::2], casting="unsafe")
    np.right_shift(packed, 4, out=out[..., 1::2], casting="unsafe")
    return out[..., :count]


def _unpack_bytes(body: np.ndarray, start: int, count: int, width: int, dtype: np.dtype) -> np.ndarray:
    """`count` fields of `width` (4, 8 or 16) bits from byte `start` of `body`."""
    if width == 8:
        return body[start : start + count].astype(dtype)
    if width == 16:
        return body[start : start + 2 * count].view("<u2").astype(dtype)
    return unpack_nibbles(body[start : start + (count + 1) // 2], count, dtype)


class SymbolReader:
    """Reads parts back from a stream written by `encode_symbols`, in the order they were given."""

    def __init__(self, data: bytes | memoryview) -> None:
        if len(data) < 4 or len(data) % 4:
            raise FormatError(f"entropy-coded payload of {len(data)} bytes is not a whole number of 32-bit words")
        (self._mode,) = struct.unpack_from("<I", data)
        body = memoryview(data)[4:]
        if self._mode == _ANS:
            words = np.frombuffer(body, dtype="<u4").astype(np.uint32)
            try:
                self._coder = constriction.stream.stack.AnsCoder(words)
            except Exception as exc:  # constriction rejects some malformed streams outright
                raise FormatError(f"corrupt entropy-coded payload ({exc})") from None
        elif self._mode == _RAW:
            self._body = np.frombuffer(body, dtype=np.uint8)
            self._pos = 0  # in bits
        else:
            raise FormatError(f"unknown symbol-stream mode {self._mode}")

    @property
    def raw(self) -> bool:
        """True when the stream holds fixed-width fields (no entropy decoding)."""
        return self._mode == _RAW

    def read(self, table: FrequencyTable, items: int, dtype: npt.DTypeLike = np.int32) -> np.ndarray:
        """Decode `items` rows of `table.streams` symbols as (items, streams) of `dtype` (int32 by default)."""
        if self._mode == _RAW:
            return self._read_raw(table, items, np.dtype(dtype))
        out = np.empty((items, table.streams), dtype=dtype)
        try:
            for s, model in enumerate(table.models()):
                out[:, s] = self._coder.decode(model, items)
        except Exception as exc:
            raise FormatError(f"corrupt entropy-coded payload ({exc})") from None
        return out

    def _read_raw(self, table: FrequencyTable, items: int, dtype: np.dtype) -> np.ndarray:
        width = _width(table.alphabet)
        count = items * table.streams
        need = count * width
        if self._pos + need > 8 * len(self._body):
            raise FormatError("raw symbol payload is shorter than its item count")
        if width in (4, 8, 16) and self._pos % 8 == 0:
            out = _unpack_bytes(self._body, self._pos // 8, count, width, dtype)
        else:
            first = self._pos // 8
            bits = np.unpackbits(self._body[first : (self._pos + need + 7) // 8], bitorder="little")
            chunk = bits[self._pos - 8 * first :][:need].reshape(count, width).astype(np.int64)
            out = (chunk << np.arange(width)).sum(axis=1).astype(dtype)
        self._pos += need
        if table.alphabet < 1 << width and count and out.max() >= table.alphabet:
            raise FormatError("raw symbol payload holds a symbol outside the alphabet")
        return out.reshape(items, table.streams)

    def finish(self) -> None:
        """Check that the payload was consumed exactly (left-over data means corruption)."""
        if self._mode == _RAW:
            rest = self._body[self._pos // 8 :]
            left = 8 * len(self._body) - self._pos
            if left >= 32 or (len(rest) and (rest[0] >> (self._pos % 8) or rest[1:].any())):
                raise FormatError("raw symbol payload has data left over after its last item")
        elif not self._coder.is_empty():
            raise FormatError("entropy-coded payload has data left over after its last item")
