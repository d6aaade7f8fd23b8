"""Refinements: the stages a receiver of a cut rq archive lacks, sent later (docs/FORMAT.md).

A sender keeps the full archive and sends a cut (`truncate_archive`); when the link allows, it sends a
refinement that grows each item of the receiver's archive by more of its own stages, up to a new
budget, and the receiver patches its archive with it. A refinement names the exact archive it grows
(checksums of its data and ids) and the archive it makes (checksum of the new data), so a patch on
the wrong archive is refused and a patched archive is the same bytes the sender computed: the same
as cutting the full archive to the new stage counts.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_writer, writer_lock
from ._errors import CodecMismatchError, FormatError, InputError
from ._version import WRITER
from .codecs import Codec, ProgressiveCodec, as_progressive
from ._layout import INDEX, PREAMBLE, SECTION
from .container import FORMAT_VERSION, _MAX_HEAD_BYTES, Archive, _check_budget, _piece, _read_sections, _Writer

MAGIC = b"\x89SMR\r\n\x1a\n"
_TAGS = (b"HEAD", b"INDX", b"DATA")


def refine_archive(full: str | Path, have: str | Path, output: str | Path, budget_bits: float,
                   codec: Codec | None = None) -> dict[str, Any]:
    """Write the refinement `output` that grows `have`, a cut of the rq archive `full`, to at most
    `budget_bits` payload bits per item (the refined archive's rate, as `truncate_archive` counts it).

    Every item keeps its stages and gains the next ones of its full code worth their bits, each block
    within what the blocks before it left of the budget. Returns the counted rates: the refinement's
    bytes (what the link carries) and the payload before and after.
    """
    _check_budget(budget_bits)
    if Path(output).exists() and any(Path(output).resolve() == Path(p).resolve() for p in (full, have)):
        raise InputError(f"output {str(output)!r} is one of the archives: write the refinement to another file")
    with Archive.open(full, codec=codec) as src, Archive.open(have, codec=codec) as dst:
        codec = _check_pair(src, dst)
        rows: list[tuple[int, int, int, int]] = []
        pieces: list[bytes] = []
        results: list[int] = []
        crc, spent, offset = 0, 0, 0
        for b, row in enumerate(src.index):
            n = int(row["items"])
            whole, held = src.block_codes(b), dst.block_codes(b)
            if not codec.is_cut_of(held, whole):
                raise CodecMismatchError(f"block {b} of the archive to refine is not a cut of the full archive's codes")
            stages = codec.refine_within(held, whole, budget_bits * (int(src._starts[b]) + n) - spent)
            grown = codec.with_stages(whole, stages)
            result = codec.pack(grown)
            spent += 8 * len(result)
            crc = zlib.crc32(result, crc)
            results.append(len(result))
            piece = codec.pack_refinement(codec.stage_counts(held), grown)
            rows.append((offset, len(piece), n, zlib.crc32(piece)))
            pieces.append(piece)
            offset += len(piece)
        index = np.array(rows, dtype=INDEX)
        head = {"format": FORMAT_VERSION, "kind": "rq refinement", "items": src.items,
                "codec": {"spec": src.codec_spec, "hash": src.codec_hash}, "base": _fingerprint(dst),
                "result": {"data_crc": crc, "data_bytes": sum(results)}, "budget_bits": budget_bits, "writer": WRITER}
        before = dst.sections[b"DATA"].length
        with atomic_writer(output) as fh:
            fh.write(PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(_TAGS)))
            for tag, payload in ((b"HEAD", json.dumps(head, sort_keys=True).encode()), (b"INDX", index.tobytes()),
                                 (b"DATA", b"".join(pieces))):
                fh.write(SECTION.pack(tag, len(payload), zlib.crc32(payload)))
                fh.write(payload)
        n = src.items
    size = Path(output).stat().st_size
    return {"items": n, "refinement_bytes": size, "refinement_bits_per_item": 8 * size / n,
            "refinement_payload_bits_per_item": 8 * offset / n,
            "payload_bits_per_item_before": 8 * before / n, "payload_bits_per_item_after": 8 * sum(results) / n}


def patch_archive(have: str | Path, refinement: str | Path, output: str | Path,
                  codec: Codec | None = None) -> dict[str, Any]:
    """Write `output`: the archive `have` grown by `refinement`; `output` may be `have` itself (replaced
    atomically). Refused, with nothing written, when the refinement was made for another archive or
    the result differs from what its sender computed."""
    head, index, data = _read_refinement(Path(refinement))
    with writer_lock(output), Archive.open(have, codec=codec) as dst:
        if head["base"] != _fingerprint(dst):
            raise CodecMismatchError(f"{str(refinement)!r} refines another archive than {str(have)!r} (its data, ids or "
                                     "codec differ): patch the exact archive the sender cut, or an earlier patch of it")
        if len(index) != len(dst.index) or (index["items"] != dst.index["items"]).any():
            raise FormatError(f"{str(refinement)!r} has blocks that do not match the archive's")
        dst.check_sections()
        codec = as_progressive(dst.codec, "refined")
        pieces, crc = [], 0
        for b, row in enumerate(index):
            chunk = data[int(row["offset"]) : int(row["offset"]) + int(row["nbytes"])]
            if zlib.crc32(chunk) != int(row["crc"]):
                raise FormatError(f"refinement is damaged: checksum mismatch in block {b}")
            grown = codec.apply_refinement(dst.block_codes(b), chunk)
            payload = codec.pack(grown)
            crc = zlib.crc32(payload, crc)
            pieces.append(_piece(payload, int(row["items"])))
        if crc != head["result"]["data_crc"] or sum(len(p) for p, _ in pieces) != head["result"]["data_bytes"]:
            raise FormatError(f"patching {str(have)!r} with {str(refinement)!r} does not give the archive its sender "
                              "computed; nothing was written")
        before = dst.sections[b"DATA"].length
        with atomic_writer(output) as fh:
            _Writer(fh).write(dict(dst.head, writer=WRITER), dst.codec_section, pieces, None, list(dst.ids), dst.pixels)
        n = dst.items
    return {"items": n, "payload_bits_per_item_before": 8 * before / n,
            "payload_bits_per_item_after": 8 * int(head["result"]["data_bytes"]) / n}


def _check_pair(src: Archive, dst: Archive) -> ProgressiveCodec:
    """The shared codec of `src` and `dst`, a cut of it; refused unless progressive and a true cut."""
    codec = as_progressive(src.codec, "refined")
    for what, mine, theirs in (("codec", src.codec_hash, dst.codec_hash), ("ids", src.ids, dst.ids),
                               ("blocks", src.index["items"].tolist(), dst.index["items"].tolist())):
        if mine != theirs:
            raise CodecMismatchError(f"{dst.path} is not a cut of {src.path}: its {what} differ")
    src.check_sections()
    dst.check_sections()
    return codec


def _fingerprint(arc: Archive) -> dict[str, Any]:
    """What identifies the exact archive a refinement grows: its codec, data and ids."""
    return {"codec_hash": arc.codec_hash, "items": arc.items, "data_crc": arc.sections[b"DATA"].crc,
            "data_bytes": arc.sections[b"DATA"].length, "ids_crc": arc.sections[b"IDS_"].crc}


def _read_refinement(path: Path) -> tuple[dict[str, Any], np.ndarray, memoryview]:
    try:
        view = memoryview(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"no such refinement: {str(path)!r}") from None
    except OSError as exc:
        raise InputError(f"cannot read refinement {str(path)!r}: {exc.strerror}") from None
    sections = _read_sections(view, MAGIC, _TAGS, _TAGS, "refinement")
    raw = {}
    for tag, sec in sections.items():
        raw[tag] = view[sec.offset : sec.offset + sec.length]
        if zlib.crc32(raw[tag]) != sec.crc:
            raise FormatError(f"refinement is damaged: checksum mismatch in section {tag.decode()}")
    if len(raw[b"HEAD"]) > _MAX_HEAD_BYTES:
        raise FormatError("refinement header is too large")
    try:
        head = json.loads(bytes(raw[b"HEAD"]))
        ok = head["kind"] == "rq refinement" and isinstance(head["base"], dict) and \
            all(type(head["result"][k]) is int for k in ("data_crc", "data_bytes"))
    except (ValueError, RecursionError, KeyError, TypeError):
        ok = False
    if not ok:
        raise FormatError(f"{str(path)!r} has a malformed refinement header")
    if len(raw[b"INDX"]) % INDEX.itemsize:
        raise FormatError("refinement block table has a partial entry")
    index = np.frombuffer(raw[b"INDX"], dtype=INDEX)
    ends = index["offset"].astype(np.int64) + index["nbytes"]
    if len(index) and (ends.max() > len(raw[b"DATA"]) or (index["offset"][1:] != ends[:-1]).any() or index["offset"][0]):
        raise FormatError("refinement block table points outside its data")
    return head, index, raw[b"DATA"]
