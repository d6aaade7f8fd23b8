"""The `.smz` archive format, version 1 (specified in docs/FORMAT.md).

An archive is a 16-byte preamble followed by CRC-32-checked sections: HEAD (JSON), CODC (the codec,
optional), DATA (per-block codec payloads), INDX (block table with per-block CRCs), IDS_ (item ids)
and PIXL (optional pixel counts). Items are coded in blocks so entropy-coder overhead is shared and
any item can be read by decoding only its block. Files are read through mmap, so a large archive is
never loaded whole; every write goes to a temp file renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np

from ._layout import DEFAULT_BLOCK_ITEMS, INDEX, PREAMBLE, SECTION
from ._version import WRITER
from ._atomic import atomic_writer, writer_lock
from ._errors import CodecMismatchError, FormatError, InputError
from ._progress import progress_bar
from ._validate import MAX_DIM, MAX_ITEMS, check_embeddings
from .codecs import Codec, Codes, ProgressiveCodec, as_progressive, check_codec_matches, codec_from_bytes

MAGIC = b"\x89SMZ\r\n\x1a\n"
FORMAT_VERSION = 1
#: The CLIP model `semzip embed` loads when none is named.
DEFAULT_MODEL = "ViT-B-32:openai"
#: The model id of vectors whose embedding model nobody recorded: never a guess.
UNKNOWN_MODEL = "unknown"

_REQUIRED = (b"HEAD", b"DATA", b"INDX", b"IDS_")
#: Bounds a reader applies before trusting a header: its size, the counts it may claim, the bytes an
#: id may take, and how much larger than the file its decoded items may be (a 16-bit SMIC archive of
#: 512-d items is ~1000x; beyond this the counts are refused, not allocated).
_MAX_HEAD_BYTES = 1 << 20
_MAX_ID_BYTES = 4096
_MAX_EXPANSION = 1 << 16
_KNOWN = (*_REQUIRED, b"CODC", b"PIXL")


# ---- writing ---------------------------------------------------------------------------------------
def write_archive(
    path: str | Path | BinaryIO,
    codec: Codec,
    X: Any,
    *,
    ids: Sequence[str] | None = None,
    model: str = UNKNOWN_MODEL,
    embed_codec: bool = True,
    pixels: Any = None,
    block_items: int = DEFAULT_BLOCK_ITEMS,
    progress: bool = False,
    budget_bits: float | None = None,
) -> None:
    """Encode X (n, d) with a fitted codec and write a new archive at `path` atomically.

    `embed_codec=False` writes a shared-codec archive that names the codec by hash only; decoding
    it then needs the same codec file. `pixels` (n,) records each source image's pixel count so
    bits per pixel can be reported. `path` may also be an open binary file, for a caller that stages
    the write itself (compaction) and so owns its atomicity.

    `budget_bits` B is a rate guarantee: the payload (every block's bytes, block overhead included)
    is at most B bits per item, or InputError and nothing is written. A progressive codec (`rq`)
    meets it by coding each item with the stages worth their bits, each block within what the
    blocks before it left of B x items; any other codec is measured and refused when over.

    Size: what an archive records beside the codes (ids, model, pixels) and how it is written are
    keyword-only options, each defaulted to the common case.
    """
    codec.check_is_fitted()
    X = check_embeddings(X, dim=codec.n_features_in_)
    n = len(X)
    ids = _check_ids(ids, n, start=0)
    pixels = _check_pixels(pixels, n)
    _check_model(model)
    if not 1 <= block_items <= 1 << 24:
        raise InputError(f"block_items must be in [1, 2**24], got {block_items}")
    if budget_bits is not None:
        _check_budget(budget_bits)
    head = {
        "format": FORMAT_VERSION,
        "items": n,
        "dim": codec.n_features_in_,
        "model": model,
        "codec": {"id": codec.codec_id.decode("ascii"), "spec": str(codec.spec), "hash": codec.state_hash},
        "block_items": block_items,
        "writer": WRITER,
    }
    with atomic_writer(path) if isinstance(path, str | Path) else contextlib.nullcontext(path) as fh:
        new = _NewBlocks(codec, X, block_items, budget_bits, progress)
        _Writer(fh).write(head, codec.to_bytes() if embed_codec else None, [], new, ids, pixels)


def append_archive(
    path: str | Path,
    X: Any,
    *,
    ids: Sequence[str] | None = None,
    pixels: Any = None,
    codec: Codec | None = None,
    progress: bool = False,
) -> None:
    """Add items to an existing archive, coded with its codec; old blocks are copied verbatim.

    The old file is replaced only once the new one is complete, so a failure leaves it intact; a
    concurrent writer of the same archive is refused (BusyError), so no append loses another's items.
    """
    with writer_lock(path), Archive.open(path, codec=codec) as old:
        old.check_sections()
        X = check_embeddings(X, dim=old.dim)
        new_ids = _check_ids(ids, len(X), start=old.items)
        clash = set(new_ids) & set(old.ids)
        if clash:
            raise InputError(f"ids already in the archive: {sorted(clash)[:5]}")
        new_pixels = _check_pixels(pixels, len(X))
        if old.pixels is None and new_pixels is None:
            all_pixels = None
        else:
            all_pixels = np.concatenate([
                old.pixels if old.pixels is not None else np.zeros(old.items, np.uint64),
                new_pixels if new_pixels is not None else np.zeros(len(X), np.uint64),
            ])
        head = dict(old.head, items=old.items + len(X), writer=WRITER)
        with atomic_writer(path) as fh:
            new = _NewBlocks(old.codec, X, int(old.head["block_items"]), progress=progress)
            _Writer(fh).write(head, old.codec_section, [(old.data, old.index)], new, list(old.ids) + new_ids, all_pixels)


def merge_archives(sources: Sequence[str | Path], output: str | Path) -> None:
    """Concatenate archives written with the same codec into a new one, blocks copied verbatim.

    Refuses archives whose codec (state hash), width or embedding model differ, and ids that are not
    unique across the sources. No codec is needed: nothing is decoded. The codec is embedded when
    any source embeds it. `output` is written atomically and may not be one of the sources.
    """
    paths = [Path(p) for p in sources]
    if len(paths) < 2:
        raise InputError(f"merging needs at least two archives, got {len(paths)}")
    if any(Path(output).resolve() == p.resolve() for p in paths):
        raise InputError(f"output {str(output)!r} is one of the archives being merged; write a new file")
    with contextlib.ExitStack() as stack:
        arcs = [stack.enter_context(Archive.open(p)) for p in paths]
        first = arcs[0]
        for a in arcs[1:]:
            for what, mine, theirs in (("codec", f"{a.codec_spec} hash {a.codec_hash[:12]}", f"{first.codec_spec} hash {first.codec_hash[:12]}"),
                                       ("width", a.dim, first.dim), ("embedding model", a.model, first.model)):
                if mine != theirs:
                    raise CodecMismatchError(f"cannot merge {a.path} into {first.path}: {what} differs "
                                             f"({mine} vs {theirs}); blocks can only be copied between archives of one codec")
        ids = [i for a in arcs for i in a.ids]
        dup = _first_duplicate(ids)
        if dup is not None:
            owners = [str(a.path) for a in arcs if dup in a.ids]
            raise InputError(f"cannot merge: id {dup!r} appears in more than one item ({', '.join(owners)}); ids must stay unique")
        for a in arcs:
            a.check_sections()
        pixels = None
        if any(a.pixels is not None for a in arcs):
            pixels = np.concatenate([a.pixels if a.pixels is not None else np.zeros(a.items, np.uint64) for a in arcs])
        codec_bytes = next((a.codec_section for a in arcs if a.codec_embedded), None)
        head = dict(first.head, items=len(ids), writer=WRITER)
        with atomic_writer(output) as fh:
            _Writer(fh).write(head, codec_bytes, [(a.data, a.index) for a in arcs], None, ids, pixels)


def delete_items(path: str | Path, ids: Sequence[str], codec: Codec | None = None) -> dict[str, int]:
    """Remove items by id, rewriting the archive atomically; returns items deleted and kept, bytes
    before and after, and whether the default ids 0..n-1, free until now, must be stored (they have gaps).

    Blocks without a deleted item are copied verbatim; a block holding one is unpacked to codes and
    re-packed without it, so every kept item keeps its exact code and decodes to the same vector (no
    re-quantisation). Nothing is left behind to filter: every reader, search and merge sees only
    the kept items (a sharded collection records tombstones instead: `shards.delete_from_collection`).
    Unknown ids and deleting every item are refused; a shared-codec archive needs its codec to re-pack blocks.
    """
    with writer_lock(path), Archive.open(path, codec=codec) as old:
        old.check_sections()
        unique = list(dict.fromkeys(ids))
        if not unique:
            raise InputError("no ids to delete")
        where = {i: p for p, i in enumerate(old.ids)}
        unknown = [i for i in unique if i not in where]
        if unknown:
            raise InputError(f"{len(unknown)} id(s) not in {str(path)!r}: {', '.join(map(repr, unknown[:5]))} "
                             "(nothing was deleted)")
        if len(unique) == old.items:
            raise InputError(f"deleting all {old.items} items would leave no archive; remove the file instead")
        drop = np.zeros(old.items, dtype=bool)
        drop[[where[i] for i in unique]] = True
        before = Path(path).stat().st_size
        kept_ids = write_without(old, drop, path)
    return {"deleted": len(unique), "items": len(kept_ids), "bytes_before": before, "bytes_after": Path(path).stat().st_size,
            "ids_now_stored": _default_ids(old.ids) and not _default_ids(kept_ids)}


def write_without(old: Archive, drop: np.ndarray, output: str | Path) -> list[str]:
    """Write `output` atomically: the archive `old` (opened as stored) without the items where `drop`
    is True; returns the kept ids. Blocks without a dropped item are copied verbatim, the others
    unpacked and re-packed without them, so every kept item keeps its exact code."""
    pieces: Pieces = []
    for b, row in enumerate(old.index):
        start, n = int(old._starts[b]), int(row["items"])
        gone = drop[start : start + n]
        if not gone.any():
            payload: memoryview | bytes = old.block_payload(b)
        elif gone.all():
            continue
        else:
            codes = old.block_codes(b)
            payload = old.codec.pack({k: v[~gone] for k, v in codes.items()})
        pieces.append(_piece(payload, n - int(gone.sum())))
    keep = ~drop
    kept_ids = [i for i, k in zip(old.ids, keep) if k]
    head = dict(old.head, items=len(kept_ids), writer=WRITER)
    with atomic_writer(output) as fh:
        _Writer(fh).write(head, old.codec_section, pieces, None, kept_ids, None if old.pixels is None else old.pixels[keep])
    return kept_ids


def truncate_archive(path: str | Path, output: str | Path, budget_bits: float, codec: Codec | None = None) -> None:
    """Write `output`: the archive at `path` with each item's code cut to a prefix of its stages, so that
    the payload is at most `budget_bits` per item; needs a progressive codec (`rq`) and no originals.

    What a thin link sends first: the sender keeps the full archive and sends cuts of it; items,
    ids, model and codec are unchanged, each block fits what the blocks before it left of the budget.
    """
    if Path(output).exists() and Path(output).resolve() == Path(path).resolve():
        raise InputError(f"output {str(output)!r} is the archive itself: write the cut to another file")
    _check_budget(budget_bits)
    with Archive.open(path, codec=codec) as old:
        codec = as_progressive(old.codec, "cut to a lower rate")
        old.check_sections()
        pieces: Pieces = []
        spent = 0
        for b, row in enumerate(old.index):
            n = int(row["items"])
            share = budget_bits * (int(old._starts[b]) + n) - spent
            payload = codec.truncate_within(old.block_codes(b), share)
            spent += 8 * len(payload)
            pieces.append(_piece(payload, n))
        head = dict(old.head, writer=WRITER)
        with atomic_writer(output) as fh:
            _Writer(fh).write(head, old.codec_section, pieces, None, list(old.ids), old.pixels)


def _piece(payload: memoryview | bytes, items: int) -> tuple[memoryview | bytes, np.ndarray]:
    """One block as `_Writer` copies it: its bytes and its index row (offset relative to the bytes)."""
    return payload, np.array([(0, len(payload), items, zlib.crc32(payload))], dtype=INDEX)


def _check_budget(bits: float) -> None:
    if not (math.isfinite(bits) and bits > 0):
        raise InputError(f"a bit budget must be a positive number of bits per item, got {bits}")


#: Coded blocks to copy as they are: (DATA bytes, their index rows with offsets into those bytes).
Pieces = list[tuple[memoryview | bytes, np.ndarray]]


@dataclass(frozen=True)
class _NewBlocks:
    """Vectors to encode into blocks of `block_items`, after any copied ones; within `budget_bits`
    payload bits per item when given (see `write_archive`)."""

    codec: Codec
    X: np.ndarray
    block_items: int
    budget_bits: float | None = None
    progress: bool = False


class _Writer:
    """Streams one archive to `fh`: sections in order, DATA's header patched once its length is known.
    DATA is the copied blocks, then the encoded new ones, if any."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def write(self, head: dict[str, Any], codec_bytes: bytes | None, old: Pieces, new: _NewBlocks | None,
              ids: list[str], pixels: np.ndarray | None) -> None:
        count = len(_REQUIRED) + (codec_bytes is not None) + (pixels is not None)
        self.fh.write(PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, count))
        self._section(b"HEAD", json.dumps(head, sort_keys=True, separators=(",", ":")).encode())
        if codec_bytes is not None:
            self._section(b"CODC", codec_bytes)
        index = self._data(old, new)
        self._section(b"INDX", index.tobytes())
        self._section(b"IDS_", _pack_ids(ids))
        if pixels is not None:
            self._section(b"PIXL", pixels.astype("<u8").tobytes())

    def _section(self, tag: bytes, payload: bytes) -> None:
        self.fh.write(SECTION.pack(tag, len(payload), zlib.crc32(payload)))
        self.fh.write(payload)

    def _data(self, old: Pieces, new: _NewBlocks | None) -> np.ndarray:
        """Write the DATA section; its index rows, offsets relative to it."""
        header_at = self.fh.tell()
        self.fh.write(SECTION.pack(b"DATA", 0, 0))
        self._crc, self._offset = 0, 0
        rows = []
        for data, index in old:
            shifted = index.copy()
            shifted["offset"] += self._offset  # block offsets are relative to the DATA section they came from
            rows.append(shifted)
            self._put(data)
        if new is not None:
            rows.append(self._encode(new))
        end = self.fh.tell()
        self.fh.seek(header_at)
        self.fh.write(SECTION.pack(b"DATA", self._offset, self._crc))
        self.fh.seek(end)
        return np.concatenate(rows).astype(INDEX) if rows else np.zeros(0, dtype=INDEX)

    def _put(self, data: memoryview | bytes) -> None:
        self.fh.write(data)
        self._crc = zlib.crc32(data, self._crc)
        self._offset += len(data)

    def _encode(self, new: _NewBlocks) -> np.ndarray:
        """Encode `new` block by block (each within what the blocks before it left of the budget, for a
        progressive codec); the index rows of its blocks."""
        codec, X, budget = new.codec, new.X, new.budget_bits
        starts = range(0, len(X), new.block_items)
        rows = np.zeros(len(starts), dtype=INDEX)
        spent = 0
        with progress_bar("encoding", total=len(X), enabled=new.progress) as advance:
            for b, start in enumerate(starts):
                block = X[start : start + new.block_items]
                if budget is not None and isinstance(codec, ProgressiveCodec):
                    payload = codec.encode_within(block, budget * (start + len(block)) - spent)
                else:
                    payload = codec.encode(block)
                spent += 8 * len(payload)
                rows[b] = (self._offset, len(payload), len(block), zlib.crc32(payload))
                self._put(payload)
                advance(len(block))
        if budget is not None and spent > budget * len(X):
            raise InputError(f"{codec.spec} spends {spent / len(X):.1f} payload bits per item on this input, over the "
                             f"budget of {budget:g}; nothing was written. A progressive codec (rq) meets any "
                             "budget it can reach: e.g. --codec rq:M=32,K=256 --bits B")
        return rows


def _first_duplicate(ids: Sequence[str]) -> str | None:
    """The first id that repeats an earlier one, or None when all are unique."""
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None


# ---- reading ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Section:
    offset: int  # of the payload, in the file
    length: int
    crc: int


@runtime_checkable
class ArchiveLike(Protocol):
    """The reader interface of a collection of coded items: `Archive` (one `.smz` file) and
    `semzip.shards.ShardedArchive` (a folder of shards with a manifest) both satisfy it, and code
    that reads either (`open_collection`, decompress, info, verify, export) types against it.
    `archives` is the files themselves, in order (an archive is its own only file), for code that
    works per file, such as compressed-domain search."""

    @property
    def path(self) -> Path: ...
    @property
    def items(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def model(self) -> str: ...
    @property
    def codec_spec(self) -> str: ...
    @property
    def codec_hash(self) -> str: ...
    @property
    def ids(self) -> list[str]: ...
    @property
    def codec(self) -> Codec: ...
    @property
    def pixels(self) -> np.ndarray | None: ...
    @property
    def archives(self) -> list[Archive]: ...

    def position(self, item_id: str) -> int: ...
    def get(self, item_id: str) -> np.ndarray: ...
    def iter_codes(self) -> Iterator[tuple[int, Codes]]: ...
    def decode(self, progress: bool = False) -> np.ndarray: ...
    def verify(self) -> list[str]: ...
    def info(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def __enter__(self) -> ArchiveLike: ...
    def __exit__(self, *exc: object) -> None: ...


class ItemsById:
    """Position of an item from its id (`ids` and `path` set by the subclass), indexed on first use."""

    ids: list[str]
    path: Path
    _positions: dict[str, int] | None = None

    def position(self, item_id: str) -> int:
        if self._positions is None:
            self._positions = {k: i for i, k in enumerate(self.ids)}
        try:
            return self._positions[item_id]
        except KeyError:
            raise InputError(f"no item with id {item_id!r} in {str(self.path)!r}") from None


class Archive(ItemsById):
    """A memory-mapped, read-only view of a `.smz` archive. Use `Archive.open(path)` as a context manager."""

    def __init__(self, path: Path, buf: mmap.mmap | bytes, codec: Codec | None) -> None:
        self.path = path
        self._buf = buf
        self._view = memoryview(buf)
        self.sections = _read_sections(self._view)
        self.head = self._head()
        self.items = int(self.head["items"])
        self.dim = int(self.head["dim"])
        self.model = str(self.head["model"])
        self.codec_spec = str(self.head["codec"]["spec"])
        self.codec_hash = str(self.head["codec"]["hash"])
        self.codec_embedded = b"CODC" in self.sections
        self.index = self._index()
        self._starts = np.concatenate([[0], np.cumsum(self.index["items"], dtype=np.int64)])
        self.ids = self._ids()
        self.pixels = self._pixels()
        self._codec = self._resolve_codec(codec)
        self.stored_items = self.items
        self.deleted = np.zeros(0, dtype=np.int64)
        self._kept: np.ndarray | None = None  # stored positions of the items read, when some are deleted
        self.live = np.ones(0, dtype=bool)  # per stored item: read (not deleted), when some are deleted
        self._live_starts = self._starts

    @classmethod
    def open(cls, path: str | Path, codec: Codec | None = None, *, deleted: Any = None) -> Archive:
        """Open and check the archive's structure and metadata checksums (block CRCs are checked on use).

        `deleted`: stored positions of items to read as absent (a collection's tombstones,
        docs/FORMAT.md): ids, items, codes, rows and decodes then skip them, while the file, its
        blocks and checksums (`verify`, `index`, `block_codes`, `stored_items`) stay as stored."""
        p = Path(path)
        try:
            with open(p, "rb") as fh:
                size = fh.seek(0, 2)
                buf: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except FileNotFoundError:
            raise InputError(f"no such archive: {str(p)!r}") from None
        except IsADirectoryError:
            raise InputError(f"{str(p)!r} is a folder, not an archive (nor a sharded collection: it has no "
                             "manifest.json)") from None
        except OSError as exc:
            raise InputError(f"cannot read archive {str(p)!r}: {exc.strerror}") from None
        try:
            arc = cls(p, buf, codec)
            if deleted is not None:
                arc.tombstone(deleted)
            return arc
        except BaseException:
            if isinstance(buf, mmap.mmap):
                with contextlib.suppress(BufferError):  # views in the traceback; GC unmaps later
                    buf.close()
            raise

    def tombstone(self, deleted: Any) -> None:
        """Read the items at stored positions `deleted` (sorted, unique; not every item) as absent from now on."""
        gone = np.asarray(deleted, dtype=np.int64).reshape(-1)
        if gone.size and (gone.min() < 0 or gone.max() >= self.stored_items or (np.diff(gone) <= 0).any()
                          or gone.size == self.stored_items or self._kept is not None):
            raise FormatError(f"deleted positions of {str(self.path)!r} must be sorted, unique, in [0, "
                              f"{self.stored_items}), leave an item, and be given once")
        if not gone.size:
            return
        live = np.ones(self.stored_items, dtype=bool)
        live[gone] = False
        self.deleted = gone
        self._kept = np.flatnonzero(live)
        self.items = len(self._kept)
        self.ids = [self.ids[i] for i in self._kept.tolist()]
        self.pixels = None if self.pixels is None else self.pixels[self._kept]
        self.live = live
        self._live_starts = np.concatenate([[0], np.cumsum(np.add.reduceat(live.astype(np.int64), self._starts[:-1]))])

    def close(self) -> None:
        """Unmap the file; views still held by callers keep it mapped until they are dropped."""
        if isinstance(self._buf, mmap.mmap):
            with contextlib.suppress(BufferError):
                self._view.release()
                self._buf.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- structure -----------------------------------------------------------------------------
    def _payload(self, tag: bytes, check: bool = True) -> memoryview:
        sec = self.sections[tag]
        view = self._view[sec.offset : sec.offset + sec.length]
        if check and zlib.crc32(view) != sec.crc:
            raise FormatError(f"archive is damaged: checksum mismatch in section {tag.decode()}")
        return view

    def _head(self) -> dict:
        """The HEAD section, checked field by field: a file from elsewhere is hostile until checked."""
        raw = self._payload(b"HEAD")
        if len(raw) > _MAX_HEAD_BYTES:
            raise FormatError(f"archive header is {len(raw)} bytes; at most {_MAX_HEAD_BYTES} are read")
        try:
            head = json.loads(bytes(raw), parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise FormatError(f"archive header is not valid JSON ({type(exc).__name__})") from None
        if not isinstance(head, dict) or not isinstance(head.get("codec"), dict):
            raise FormatError("archive header is malformed (not an object with a codec object)")
        if head.get("format") != FORMAT_VERSION:
            raise FormatError(f"unsupported archive version {head.get('format')!r}; this semzip reads {FORMAT_VERSION}")
        for key, low, high in (("items", 1, MAX_ITEMS), ("dim", 1, MAX_DIM), ("block_items", 1, 1 << 24)):
            value = head.get(key)
            if type(value) is not int or not low <= value <= high:
                raise FormatError(f"archive header field {key!r} must be an integer in [{low}, {high}], got {value!r}")
        codec = head["codec"]
        for where, value, limit in (("model", head.get("model"), 512), ("codec id", codec.get("id"), 4),
                                    ("codec spec", codec.get("spec"), 4096), ("codec hash", codec.get("hash"), 64)):
            if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
                raise FormatError(f"archive header {where} must be a printable string of at most {limit} "
                                  f"characters, got {str(value)[:80]!r}")
        return head

    def _index(self) -> np.ndarray:
        raw = self._payload(b"INDX")
        if len(raw) % INDEX.itemsize:
            raise FormatError("archive block table has a partial entry")
        index = np.frombuffer(raw, dtype=INDEX).copy()
        data_len = self.sections[b"DATA"].length
        ends = index["offset"].astype(np.int64) + index["nbytes"]
        if int(index["items"].sum(dtype=np.int64)) != self.items or (index["items"] == 0).any():
            raise FormatError("archive block table does not add up to the item count")
        if len(index) and int(index["items"].max()) > int(self.head["block_items"]):
            raise FormatError("archive block table has a block larger than the header's block size")
        decoded = 4 * self.items * self.dim
        if decoded > _MAX_EXPANSION * max(len(self._view), 1 << 16):
            raise FormatError(f"archive claims {self.items} items of width {self.dim} ({decoded / 2**30:.1f} GiB "
                              f"decoded) in {len(self._view)} bytes: more than {_MAX_EXPANSION}x expansion, so "
                              "its counts are not to be trusted")
        if len(index) and (ends.max() > data_len or (index["offset"][1:] != ends[:-1]).any() or index["offset"][0]):
            raise FormatError("archive block table points outside the data section")
        return index

    def _ids(self) -> list[str]:
        ids = _unpack_ids(self._payload(b"IDS_"), self.items)
        if len(set(ids)) != len(ids):
            raise FormatError("archive item ids are not unique")
        return ids

    def _pixels(self) -> np.ndarray | None:
        if b"PIXL" not in self.sections:
            return None
        raw = self._payload(b"PIXL")
        if len(raw) != 8 * self.items:
            raise FormatError("archive pixel-count section has the wrong length")
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64)

    def _resolve_codec(self, given: Codec | None) -> Codec | None:
        """The codec to decode with (given, else embedded), checked against the header's hash and width."""
        codec = given
        if self.codec_embedded:
            embedded = codec_from_bytes(bytes(self._payload(b"CODC")))
            if embedded.state_hash != self.codec_hash:
                raise FormatError("archive is damaged: embedded codec does not match the header's codec hash")
            codec = codec or embedded
        if given is not None:
            check_codec_matches(given, self.codec_spec, self.codec_hash, "archive")
        if codec is not None and codec.n_features_in_ != self.dim:
            raise FormatError(f"archive header says width {self.dim} but its codec codes width {codec.n_features_in_}")
        return codec

    @property
    def codec(self) -> Codec:
        """The archive's codec; a shared-codec archive needs it passed to `open`."""
        if self._codec is None:
            raise CodecMismatchError(
                f"archive {str(self.path)!r} does not embed its codec ({self.codec_spec}, hash "
                f"{self.codec_hash[:12]}): pass the codec file it was written with (--codec FILE.smzc)"
            )
        return self._codec

    @property
    def archives(self) -> list[Archive]:
        """The files of this collection of items: the archive itself (see `ArchiveLike`)."""
        return [self]

    @property
    def codec_section(self) -> bytes | None:
        return bytes(self._payload(b"CODC")) if self.codec_embedded else None

    @property
    def data(self) -> memoryview:
        """The DATA section's bytes (not checked; block CRCs are checked when blocks are read)."""
        return self._payload(b"DATA", check=False)

    # ---- access --------------------------------------------------------------------------------
    def block_payload(self, b: int) -> memoryview:
        """Bytes of block b, after checking its CRC."""
        row = self.index[b]
        start = self.sections[b"DATA"].offset + int(row["offset"])
        view = self._view[start : start + int(row["nbytes"])]
        if zlib.crc32(view) != int(row["crc"]):
            raise FormatError(f"archive is damaged: checksum mismatch in block {b} (items {self._starts[b]}..)")
        return view

    def block_codes(self, b: int) -> Codes:
        return self.codec.unpack(self.block_payload(b), int(self.index[b]["items"]))

    def iter_codes(self, start: int = 0) -> Iterator[tuple[int, Codes]]:
        """(first item index, codes) for each block in order, from the block holding item `start` on
        (none when `start` is the item count): the entry point for compressed-domain search."""
        first = int(np.searchsorted(self._live_starts, start, side="right")) - 1
        for b in range(max(first, 0), len(self.index)):
            if self._kept is None:
                yield int(self._starts[b]), self.block_codes(b)
                continue
            live = self.live[self._starts[b] : self._starts[b + 1]]
            if live.any():
                codes = self.block_codes(b)
                yield int(self._live_starts[b]), codes if live.all() else {k: v[live] for k, v in codes.items()}

    def decode(self, progress: bool = False) -> np.ndarray:
        """All items as float32 (items, dim), in archive order."""
        out = np.empty((self.items, self.dim), dtype=np.float32)
        with progress_bar("decoding", total=self.items, enabled=progress) as advance:
            for start, codes in self.iter_codes():
                rows = self.codec.reconstruct(codes)
                out[start : start + len(rows)] = rows
                advance(len(rows))
        return out

    def stored_position(self, position: int) -> int:
        """Where the item read at `position` is stored in the file: the same unless items are deleted."""
        return position if self._kept is None else int(self._kept[position])

    def get(self, item_id: str) -> np.ndarray:
        """One item's vector by id, decoding only its block."""
        return self.rows([self.position(item_id)])[0]

    def rows(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (len(positions), dim) vectors of the items at these positions; each block decoded once."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < 0 or pos.max() >= self.items):
            raise InputError(f"item positions must be in [0, {self.items}), got {pos.min()}..{pos.max()}")
        if self._kept is not None:
            pos = self._kept[pos]
        out = np.empty((len(pos), self.dim), dtype=np.float32)
        blocks = np.searchsorted(self._starts, pos, side="right") - 1
        for b in np.unique(blocks).tolist():
            sel = blocks == b
            out[sel] = self.codec.reconstruct(self.block_codes(b))[pos[sel] - self._starts[b]]
        return out

    # ---- integrity and accounting ----------------------------------------------------------------
    def check_sections(self) -> None:
        """Check the DATA section's CRC (the other sections were checked on open)."""
        sec = self.sections[b"DATA"]
        if zlib.crc32(self.data) != sec.crc:
            raise FormatError("archive is damaged: checksum mismatch in section DATA")

    def verify(self) -> list[str]:
        """Check every checksum and that every block decodes; returns the problems found (empty = intact)."""
        problems = []
        try:
            self.check_sections()
        except FormatError as exc:
            problems.append(str(exc))
        for b in range(len(self.index)):
            try:
                payload = self.block_payload(b)
                if self._codec is not None:
                    self._codec.unpack(payload, int(self.index[b]["items"]))
            except FormatError as exc:
                problems.append(str(exc))
        return problems

    def info(self) -> dict[str, Any]:
        """Counted sizes: every figure comes from the bytes in the file."""
        total_bits = 8 * len(self._view)
        payload_bits = 8 * int(self.index["nbytes"].sum())
        codec_bits = 8 * self.sections[b"CODC"].length if self.codec_embedded else 0
        out: dict[str, Any] = {
            "path": str(self.path),
            "format": FORMAT_VERSION,
            "items": self.items,
            "dim": self.dim,
            "model": self.model,
            "codec": self.codec_spec,
            "codec_hash": self.codec_hash,
            "codec_embedded": self.codec_embedded,
            "blocks": len(self.index),
            "payload_bits": payload_bits,
            "codec_bits": codec_bits,
            "ids_bits": 8 * self.sections[b"IDS_"].length,
            "total_bits": total_bits,
            "bits_per_item": total_bits / self.items,
            "payload_bits_per_item": payload_bits / self.items,
        }
        if self.deleted.size:  # tombstoned items still take their bytes until the collection is compacted
            out["deleted"] = int(self.deleted.size)
        if self._codec is not None:
            out["fixed_bits_per_item"] = self._codec.fixed_bits
        if self.pixels is not None and int(self.pixels.sum()) > 0:
            known = self.pixels > 0
            out["pixels"] = int(self.pixels.sum())
            out["bpp"] = total_bits / int(self.pixels.sum())
            out["payload_bpp"] = payload_bits / int(self.pixels.sum()) if known.all() else None
        return out


def _read_sections(view: memoryview, magic: bytes = MAGIC, known: tuple[bytes, ...] = _KNOWN,
                   required: tuple[bytes, ...] = _REQUIRED, what: str = "archive") -> dict[bytes, _Section]:
    """The section table of a file in the archive framing (archives, refinements), each bound checked."""
    if len(view) < PREAMBLE.size or bytes(view[:8]) != magic:
        raise FormatError(f"not a semzip {what} (bad magic number)")
    _, version, flags, count = PREAMBLE.unpack_from(view)
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported {what} version {version}; this semzip reads {FORMAT_VERSION}")
    if flags:
        raise FormatError(f"{what} uses unknown flags {flags:#x}")
    sections: dict[bytes, _Section] = {}
    pos = PREAMBLE.size
    for _ in range(count):
        if pos + SECTION.size > len(view):
            raise FormatError(f"{what} is truncated (in a section header)")
        tag, length, crc = SECTION.unpack_from(view, pos)
        pos += SECTION.size
        if tag not in known:
            raise FormatError(f"{what} has an unknown section {tag!r}")
        if tag in sections:
            raise FormatError(f"{what} has section {tag.decode()} twice")
        if length > len(view) - pos:
            raise FormatError(f"{what} is truncated: section {tag.decode()} claims {length} bytes, "
                              f"{len(view) - pos} remain")
        sections[tag] = _Section(pos, length, crc)
        pos += length
    if pos != len(view):
        raise FormatError(f"{what} has {len(view) - pos} unexpected trailing bytes")
    missing = [t.decode() for t in required if t not in sections]
    if missing:
        raise FormatError(f"{what} is missing section(s) {', '.join(missing)}")
    return sections


# ---- small fields --------------------------------------------------------------------------------------
def _check_ids(ids: Sequence[str] | None, n: int, start: int) -> list[str]:
    if ids is None:
        return [str(i) for i in range(start, start + n)]
    ids = [str(i) for i in ids]
    if len(ids) != n:
        raise InputError(f"{len(ids)} ids given for {n} items")
    if any("\0" in i for i in ids):
        raise InputError("item ids must not contain NUL characters")
    for i in ids:
        try:
            size = len(i.encode("utf-8"))
        except UnicodeEncodeError:
            raise InputError(f"item id {i!r} is not valid Unicode text (a lone surrogate?)") from None
        if size > _MAX_ID_BYTES:
            raise InputError(f"item id {i[:40]!r}... is {size} bytes; ids may have at most {_MAX_ID_BYTES}")
    dup = _first_duplicate(ids)
    if dup is not None:
        raise InputError(f"item ids must be unique; {dup!r} appears more than once")
    return ids


def _check_pixels(pixels: Any, n: int) -> np.ndarray | None:
    if pixels is None:
        return None
    arr = np.asarray(pixels)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any():
        raise InputError(f"pixels must be {n} non-negative integers, got shape {arr.shape} dtype {arr.dtype}")
    return arr.astype(np.uint64)


def _check_model(model: str) -> None:
    if not isinstance(model, str) or not model or not model.isprintable():
        raise InputError(f"model id must be a printable string such as {DEFAULT_MODEL!r}, got {model!r}")


def _default_ids(ids: list[str]) -> bool:
    """True for the ids "0", "1", ... that an archive stores in no bytes."""
    return ids == [str(i) for i in range(len(ids))]


def _pack_ids(ids: list[str]) -> bytes:
    """Empty for the default ids "0", "1", ...; else the ids joined by NUL, UTF-8, zlib level 9."""
    if _default_ids(ids):
        return b""
    return zlib.compress("\0".join(ids).encode("utf-8"), 9)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in an archive header")


def _unpack_ids(raw: memoryview, n: int) -> list[str]:
    if len(raw) == 0:
        return [str(i) for i in range(n)]
    limit = n * _MAX_ID_BYTES
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(raw, limit)
        if inflater.unconsumed_tail or not inflater.eof:
            raise FormatError(f"archive id section inflates past {limit} bytes ({_MAX_ID_BYTES} per item), "
                              "or is cut short")
        ids = text.decode("utf-8").split("\0")
    except (zlib.error, UnicodeDecodeError):
        raise FormatError("archive id section is not valid zlib-compressed UTF-8") from None
    if len(ids) != n:
        raise FormatError(f"archive id section holds {len(ids)} ids for {n} items")
    return ids
