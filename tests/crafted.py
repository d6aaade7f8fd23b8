"""Crafted archives with valid checksums: what a hostile file looks like once its maker fixed the CRCs.

`mutate(rng, data)` takes a valid `.smz` and changes one thing on purpose (a header field, a block
table entry, the ids, the embedded codec's arrays or metadata, block bytes), then recomputes every
block CRC and section CRC so that only semzip's own checks can refuse it. Used by the test suite
(tests/test_crafted.py) and by benchmarks/fuzz_archives.py for long runs.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

_PREAMBLE = struct.Struct("<8sHHI")
_SECTION = struct.Struct("<4sQI")
_INDEX = np.dtype([("offset", "<u8"), ("nbytes", "<u4"), ("items", "<u4"), ("crc", "<u4")])
_BIG = [0, 1, 2, 7, 255, 65535, 2**31 - 1, 2**32 - 1, 2**40, 2**63 - 1, 2**64 + 5, -1, -(2**40)]


def split(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(preamble magic+version+flags, [(tag, payload)]) of a well-formed archive."""
    magic, version, flags, count = _PREAMBLE.unpack_from(data)
    pos, sections = _PREAMBLE.size, []
    for _ in range(count):
        tag, length, _crc = _SECTION.unpack_from(data, pos)
        pos += _SECTION.size
        sections.append((tag, data[pos : pos + length]))
        pos += length
    return struct.pack("<8sHH", magic, version, flags), sections


def join(head: bytes, sections: list[tuple[bytes, bytes]]) -> bytes:
    """An archive from its parts with every block CRC (where the table points inside DATA) and every
    section CRC recomputed: only semzip's own checks can refuse it."""
    parts = dict(sections)
    if b"INDX" in parts and b"DATA" in parts and len(parts[b"INDX"]) % _INDEX.itemsize == 0:
        index = np.frombuffer(parts[b"INDX"], dtype=_INDEX).copy()
        for row in index:
            start, end = int(row["offset"]), int(row["offset"]) + int(row["nbytes"])
            if end <= len(parts[b"DATA"]):
                row["crc"] = zlib.crc32(parts[b"DATA"][start:end])
        parts[b"INDX"] = index.tobytes()
    out = [head, struct.pack("<I", len(sections))]
    for tag, _ in sections:
        payload = parts[tag]
        out.append(_SECTION.pack(tag, len(payload), zlib.crc32(payload)) + payload)
    return b"".join(out)


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One crafted change to a valid archive, checksums fixed up."""
    head, sections = split(data)
    parts = [list(s) for s in sections]
    tags = [t for t, _ in parts]
    kind = int(rng.integers(7))
    if kind == 0:  # a header field
        h = json.loads(parts[tags.index(b"HEAD")][1])
        key = str(rng.choice(["items", "dim", "block_items", "model", "format", "codec"]))
        h[key] = _odd_value(rng)
        parts[tags.index(b"HEAD")][1] = _dumps(rng, h)
    elif kind == 1:  # a block table entry
        i = tags.index(b"INDX")
        index = np.frombuffer(parts[i][1], dtype=_INDEX).copy()
        if len(index):
            row = int(rng.integers(len(index)))
            field = str(rng.choice(["offset", "nbytes", "items"]))
            index[row][field] = int(rng.choice([0, 1, 3, 2**20, 2**31, 2**32 - 1])) % (2**64 if field == "offset" else 2**32)
        parts[i][1] = index.tobytes()
    elif kind == 2:  # the ids
        i = tags.index(b"IDS_")
        choice = int(rng.integers(4))
        if choice == 0:
            parts[i][1] = zlib.compress(b"\0" * int(rng.choice([10, 10**6, 10**7])), 9)  # a zlib bomb
        elif choice == 1:
            parts[i][1] = zlib.compress("\0".join(f"x{j}" for j in range(int(rng.integers(1, 50)))).encode())
        elif choice == 2:
            parts[i][1] = zlib.compress(b"\xff\xfe" * 10)
        else:
            parts[i][1] = rng.bytes(int(rng.integers(0, 64)))
    elif kind == 3 and b"CODC" in tags:  # the embedded codec: arrays and metadata
        i = tags.index(b"CODC")
        parts[i][1] = mutate_codec(rng, parts[i][1])
    elif kind == 4:  # block bytes
        i = tags.index(b"DATA")
        payload = bytearray(parts[i][1])
        for pos in rng.integers(0, max(1, len(payload)), size=int(rng.integers(1, 6))):
            if payload:
                payload[pos] = int(rng.integers(256))
        parts[i][1] = bytes(payload)
    elif kind == 5:  # items claimed far beyond what the payload holds
        h = json.loads(parts[tags.index(b"HEAD")][1])
        i = tags.index(b"INDX")
        index = np.frombuffer(parts[i][1], dtype=_INDEX).copy()
        extra = int(rng.choice([1, 1000, 10**6, 2**31]))
        index[-1]["items"] = (int(index[-1]["items"]) + extra) % 2**32
        h["items"] = int(index["items"].sum(dtype=np.int64))
        h["block_items"] = max(h["block_items"], int(index["items"].max()))
        parts[i][1] = index.tobytes()
        parts[tags.index(b"HEAD")][1] = _dumps(rng, h)
    else:  # a section cut or padded
        i = int(rng.integers(len(parts)))
        payload = parts[i][1]
        parts[i][1] = payload[: int(rng.integers(0, len(payload) + 1))] if rng.random() < 0.5 else payload + rng.bytes(8)
    return join(head, [(t, p) for t, p in parts])


def _odd_value(rng: np.random.Generator):  # noqa: ANN202 - any JSON value
    pick = int(rng.integers(8))
    if pick == 0:
        return int(rng.choice(_BIG))
    if pick == 1:
        return float(rng.choice([1e308, 0.5, -3.0]))
    if pick == 2:
        return None
    if pick == 3:
        return "x" * int(rng.choice([0, 3, 600, 5000]))
    if pick == 4:
        return [1, 2]
    if pick == 5:
        return {"a": 1}
    if pick == 6:
        return "<img src=x onerror=alert(1)>"
    return True


def _dumps(rng: np.random.Generator, head: dict) -> bytes:
    text = json.dumps(head)
    pick = int(rng.integers(4))
    if pick == 0:  # deep nesting
        depth = int(rng.choice([100, 5000, 100000]))
        text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    elif pick == 1:
        text = text.replace('"items": ', '"items": Infinity, "x": ', 1)
    elif pick == 2:
        text = text.replace('"dim": ', '"dim": NaN, "y": ', 1)
    return text.encode()


def mutate_codec(rng: np.random.Generator, blob: bytes) -> bytes:
    """A .smzc with one array's bytes, dtype or shape, or a metadata field changed, hash fixed up."""
    from safetensors.numpy import load, save

    from semzip.codecs._base import _hash_state

    header_len = int.from_bytes(blob[:8], "little")
    meta = json.loads(blob[8 : 8 + header_len]).get("__metadata__", {})
    arrays = dict(load(blob))
    pick = int(rng.integers(5)) if arrays else 3 + int(rng.integers(2))
    name = str(rng.choice(sorted(arrays))) if arrays else ""
    arr = arrays.get(name)
    if pick == 0 and arr.dtype.kind == "f":
        arr = arr.copy()
        arr.flat[int(rng.integers(arr.size))] = float(rng.choice([np.nan, np.inf, 1e30]))
    elif pick == 1:
        arr = arr.reshape(-1)[: max(1, arr.size // 2)].copy()
    elif pick == 2:
        arr = arr.astype(str(rng.choice(["float64", "int8", "uint32", "float16"])))
    elif pick == 3:
        meta["n_features_in"] = str(int(rng.choice([0, 1, 63, 65, 10**9])))
    else:
        meta["fit_info"] = str(rng.choice(['{"a": Infinity}', "[" * 5000 + "]" * 5000, "not json"]))
    if arr is not None:
        arrays[name] = arr
    meta["hash"] = _hash_state(meta["codec_id"].encode(), meta["spec"], int(meta["n_features_in"]), arrays)
    return save(arrays, metadata=meta)
