"""Entropy coding of code indices with probabilities learned at fit time (constriction's ANS coder).

A `FrequencyTable` holds integer symbol counts, one row per stream (e.g. one per PQ sub-space); all
counts are >= 1 so every symbol stays encodable. The coder model is rebuilt from those integers alone:
probabilities `counts / counts.sum()` fed to constriction's leakily quantised `Categorical` with
`perfect=False` (24-bit precision of the default `AnsCoder`), so the bitstream depends on nothing
but the stored counts. Blocks that ANS would make larger than fixed-width fields are stored raw.
Several tables can share one stream: `encode_symbols` takes (table, symbols)
parts and `SymbolReader` reads them back in the same order.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import constriction
import numpy as np

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
            raise FormatError(f"frequency table must be (streams, alphabet>=2), got shape {c.shape}")
        if not np.issubdtype(c.dtype, np.integer) or c.min() < 1 or c.max() > np.iinfo(np.uint32).max:
            raise FormatError("frequency table counts must be integers in [1, 2**32)")
        object.__setattr__(self, "counts", np.ascontiguousarray(c, dtype=np.uint32))

    @classmethod
    def fit(cls, symbols: np.ndarray, alphabet: int) -> FrequencyTable:
        """Count each stream's symbols (columns of `symbols`), with add-1/2 smoothing."""
        symbols = np.asarray(symbols)
        if symbols.ndim != 2:
            raise ValueError(f"symbols must be (items, streams), got shape {symbols.shape}")
        streams = symbols.shape[1]
        counts = np.zeros((streams, alphabet), dtype=np.int64)
        for s in range(streams):
            counts[s] = np.bincount(symbols[:, s], minlength=alphabet)[:alphabet]
        counts = 2 * counts + 1  # add-1/2 smoothing in integers
        peak = counts.max()
        if peak > _MAX_COUNT:
            counts = np.maximum(1, counts * (_MAX_COUNT / peak)).astype(np.int64)
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


def encode_symbols(parts: Sequence[tuple[FrequencyTable, np.ndarray]]) -> bytes:
    """Code several (table, symbols[items, streams]) parts into one stream.

    The stream starts with a little-endian 32-bit mode word: 0 = ANS with the tables' models,
    1 = raw fixed-width fields (ceil(log2 alphabet) bits each, LSB first), chosen when smaller, so
    data unlike the training set never costs more than fixed-length coding plus 64 bits.
    """
    checked = [(table, table._check(symbols)) for table, symbols in parts]
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
    bits = [((symbols.astype(np.int64)[..., None] >> np.arange(_width(table.alphabet))) & 1).ravel()
            for table, symbols in checked]
    packed = np.packbits(np.concatenate(bits).astype(np.uint8), bitorder="little").tobytes()
    return struct.pack("<I", _RAW) + packed + b"\0" * (-len(packed) % 4)


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
            self._bits = np.unpackbits(np.frombuffer(body, dtype=np.uint8), bitorder="little")
            self._pos = 0
        else:
            raise FormatError(f"unknown symbol-stream mode {self._mode}")

    def read(self, table: FrequencyTable, items: int) -> np.ndarray:
        """Decode `items` rows of `table.streams` symbols; returns int32 (items, streams)."""
        if self._mode == _RAW:
            width = _width(table.alphabet)
            need = items * table.streams * width
            if self._pos + need > len(self._bits):
                raise FormatError("raw symbol payload is shorter than its item count")
            chunk = self._bits[self._pos : self._pos + need].reshape(items, table.streams, width)
            self._pos += need
            out = (chunk.astype(np.int32) << np.arange(width, dtype=np.int32)).sum(axis=2, dtype=np.int32)
            if out.size and out.max() >= table.alphabet:
                raise FormatError("raw symbol payload holds a symbol outside the alphabet")
            return out
        out = np.empty((items, table.streams), dtype=np.int32)
        try:
            for s, model in enumerate(table.models()):
                out[:, s] = self._coder.decode(model, items)
        except Exception as exc:
            raise FormatError(f"corrupt entropy-coded payload ({exc})") from None
        return out

    def finish(self) -> None:
        """Check that the payload was consumed exactly (left-over data means corruption)."""
        if self._mode == _RAW:
            rest = self._bits[self._pos :]
            if len(rest) >= 32 or rest.any():
                raise FormatError("raw symbol payload has data left over after its last item")
        elif not self._coder.is_empty():
            raise FormatError("entropy-coded payload has data left over after its last item")
