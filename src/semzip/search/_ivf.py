"""Inverted lists over an archive's codes: sub-linear search that scans only the lists near a query.

An IVF index is a sidecar file beside the archive (`photos.smz.ivf`; docs/FORMAT.md): `nlist`
unit centroids and, per list, the positions of the items assigned to it. Items are assigned on their
decoded vectors, so the partition is the one the codes define (k-means on the reconstructions, no
second copy of the vectors). A search scores each query's centroids, takes the `nprobe` best
lists, and scores their items on the codes with the codec's own scores, each query's made from it
alone (so a query's results do not depend on the other queries of its batch); pq candidates of a
chunk of queries are gathered and scored together from per-query lookup tables. 4-bit pq
(`pq:...,K=16`) and 8-bit pq (K=256) are searched as the flat search searches 4-bit codes
(codecs/_fastscan.py): faiss's IVF scan draws shortlists that a bound proves complete, so the
top-k is exact over the probed lists. With `nprobe = nlist` the results are the flat search's: the same ids in the same
order, scores equal to float32 rounding. The index is bound to its
archive: a fingerprint of the archive's size and section checksums is stored, and an index of
another or a changed archive is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_writer, writer_lock
from .._clusters import spherical_kmeans
from .._errors import FormatError, InputError, SemzipError
from .._progress import progress_bar
from .._topk import top_indices
from .._validate import l2_normalize
from ..codecs import Codec, Codes
from ..codecs._fastscan import FastScanRanker, IVFFastScanIndex
from ..codecs.pq import PQCodec
from ..container import Archive
from ..entropy import unpack_nibbles
from ._engine import SearchResult, _queries

FORMAT = "semzip-ivf"
VERSION = 1
_ARRAYS = ("centroids", "offsets", "positions")
#: 4- and 8-bit pq: faiss's first shortlist per query. Lists give no threshold from earlier items (a flat
#: search's runs do), so a first pass of the flat default 64 is mostly drawn again; work, not results.
_FIRST_SHORTLIST = 256
#: Gathered code elements (queries x candidates x sub-spaces) scored at once.
_PAIR_ELEMENTS = 1 << 22


def fingerprint(archive: Archive) -> str:
    """SHA-256 of the archive's size and every section's tag, length and CRC: changes with any byte."""
    h = hashlib.sha256(str(archive.path.stat().st_size).encode())
    for tag, sec in sorted(archive.sections.items()):
        h.update(tag + struct.pack("<QI", sec.length, sec.crc))
    return h.hexdigest()


def default_path(archive_path: str | Path) -> Path:
    return Path(str(archive_path) + ".ivf")


def build_ivf(archive: Archive, path: str | Path | None = None, *, nlist: int | None = None, seed: int = 0,
              lists: str = "kmeans", progress: bool = False) -> dict[str, Any]:
    """Group the archive's items into inverted lists and write the index.

    `lists="kmeans"`: spherical k-means (10 iterations) on a sample of at most 32 x nlist decoded
    vectors makes `nlist` lists (default: the power of two at or below sqrt(items)), and every item
    goes to its nearest centroid. `lists="codes"`: the codec's own first stage is the partition
    (rq's first codebook, the PQ-VAE's coarse stage, a stack's first stage), read from the codes,
    nothing clustered. The index covers every item the archive's file stores: a collection's
    shard is indexed with its tombstoned items, which searches then skip."""
    if archive.deleted.size:
        with Archive.open(archive.path, codec=archive.codec) as stored:
            return build_ivf(stored, path, nlist=nlist, seed=seed, lists=lists, progress=progress)
    n = archive.items
    if lists not in ("kmeans", "codes"):
        raise InputError(f"lists must be 'kmeans' or 'codes', got {lists!r}")
    if lists == "codes":
        centroids, sample = _codec_lists(archive, nlist), 0
    else:
        nlist = 1 << int(np.log2(max(np.sqrt(n), 1))) if nlist is None else nlist
        if not 1 <= nlist <= n:
            raise InputError(f"nlist must be between 1 and the archive's {n} items, got {nlist}")
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, 32 * nlist), replace=False))
        centroids, sample = spherical_kmeans(l2_normalize(archive.rows(rows)), nlist, seed=seed, niter=10,
                                             max_points_per_centroid=32), len(rows)
    made = {"seed": seed, "sample": sample, "assigned_on": _BY_CODES if lists == "codes" else "decoded vectors"}
    assign = _assign(archive, centroids, made, progress=progress)
    return _write(archive, Path(path) if path is not None else default_path(archive.path), centroids, assign, made)


#: The `assigned_on` of lists read from the codes' first stage (`lists="codes"`).
_BY_CODES = "the codes' first stage"


def _assign(archive: Archive, centroids: np.ndarray, made: dict[str, Any], start: int = 0,
            progress: bool = False) -> np.ndarray:
    """The list of every item from position `start` on, by the rule the index was made with
    (`made["assigned_on"]`): its code's first-stage index, or the centroid nearest its decoded vector."""
    assign = np.empty(archive.items - start, dtype=np.int64)
    with progress_bar("assigning items to lists", total=len(assign), enabled=progress) as advance:
        for first, codes in archive.iter_codes(start):
            if made["assigned_on"] == _BY_CODES:
                got = np.asarray(archive.codec.partition_of(codes))
            else:
                R = l2_normalize(archive.codec.reconstruct(codes))
                got = np.argmax(R @ centroids.T, axis=1)  # ties: the earlier list
            skip = max(start - first, 0)
            assign[first + skip - start : first + len(got) - start] = got[skip:]
            advance(len(got) - skip)
    return assign


def _write(archive: Archive, out: Path, centroids: np.ndarray, assign: np.ndarray, made: dict[str, Any]) -> dict[str, Any]:
    """Write the index of `archive` whose item i sits in list assign[i] (archive order inside a list)."""
    nlist = len(centroids)
    order = np.argsort(assign, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=nlist))]).astype(np.int64)
    arrays: dict[str, np.ndarray] = {"centroids": np.ascontiguousarray(centroids, dtype=np.float32),
                                     "offsets": offsets, "positions": order.astype(np.int64)}
    head = {"format": FORMAT, "version": VERSION, "archive": fingerprint(archive), "items": archive.items,
            "dim": archive.dim, "nlist": nlist, **made,
            "sha256": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()}}
    blob = json.dumps(head, sort_keys=True).encode()
    with atomic_writer(out) as fh:
        fh.write(b"SMZIVF\0\0" + struct.pack("<I", len(blob)) + blob)
        for k in _ARRAYS:
            fh.write(arrays[k].tobytes())
    sizes = np.diff(offsets)
    return {"path": str(out), "nlist": nlist, "items": archive.items, "bytes": out.stat().st_size,
            "list_items": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())}}


@contextlib.contextmanager
def index_follows(path: str | Path, codec: Codec | None = None) -> Iterator[dict[str, Any]]:
    """Keep the archive's index (`path.ivf`) current across an append or delete done in the block.

    The archive's write lock is held throughout, so no other writer comes between. After the block,
    kept items keep their lists (renumbered), appended items join the list the index's own rule
    gives them (nearest centroid, or first-stage code), and the centroids stay: the index equals
    one built with these centroids, with no k-means and no decoding of the items already listed.
    Only for writers that keep every kept item's code and order (append, delete). Yields a report,
    filled after the block: empty without an index; else `path`, `status` "updated" (with items
    `appended` and `deleted`, the archive's `items` and the counts `since_build`) or "stale" (with
    `why`: it was stale already, or could not be written), and a stale index is left as it was,
    refused by search until rebuilt."""
    index = default_path(path)
    report: dict[str, Any] = {}
    with writer_lock(path):
        before = None
        if index.exists():
            with Archive.open(path, codec=codec) as old:
                try:
                    before = (*read_ivf(index, old), old.ids)
                except SemzipError as exc:
                    report.update(path=str(index), status="stale", why=str(exc))
        yield report
        if before is not None:
            try:
                report.update(_carry(path, index, codec, *before))
            except SemzipError as exc:
                report.update(path=str(index), status="stale", why=str(exc))


def carry_index(old: Archive, new_path: Path, codec: Codec | None = None) -> dict[str, Any]:
    """Carry the index of `old` (opened as stored) to `new_path`, a file written from it without some
    items, the rest in order (a collection's purged shard): empty without an index, else the
    report of `index_follows`. The old index file is left for its caller to remove."""
    index = default_path(old.path)
    if not index.exists():
        return {}
    try:
        return _carry(new_path, default_path(new_path), codec, *read_ivf(index, old), old.ids)
    except SemzipError as exc:
        return {"path": str(index), "status": "stale", "why": str(exc)}


def _carry(path: str | Path, index: Path, codec: Codec | None, head: dict[str, Any], arrays: dict[str, np.ndarray],
           old_ids: list[str]) -> dict[str, Any]:
    """The index of `path`'s items before a change (`head`, `arrays`, `old_ids`) carried over to its items now."""
    offsets = arrays["offsets"]
    old_lists = np.empty(len(old_ids), dtype=np.int64)
    old_lists[arrays["positions"]] = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    with Archive.open(path, codec=codec) as arc:
        now = set(arc.ids)
        kept = np.fromiter((i in now for i in old_ids), dtype=bool, count=len(old_ids))
        held = int(kept.sum())
        if arc.ids[:held] != [i for i, k in zip(old_ids, kept) if k]:
            raise InputError(f"{arc.path}'s items were reordered: rebuild the index with `semzip index {arc.path}`")
        made = {k: head[k] for k in ("seed", "sample", "assigned_on")}
        made["updates"] = {"appended": head["updates"]["appended"] + arc.items - held,
                           "deleted": head["updates"]["deleted"] + len(old_ids) - held}
        assign = np.concatenate([old_lists[kept], _assign(arc, arrays["centroids"], made, start=held)])
        _write(arc, index, arrays["centroids"], assign, made)
        return {"path": str(index), "status": "updated", "appended": arc.items - held, "deleted": len(old_ids) - held,
                "items": arc.items, "since_build": made["updates"]}


def _codec_lists(archive: Archive, nlist: int | None) -> np.ndarray:
    """The codec's first-stage centroids, the lists `lists="codes"` groups items by."""
    centroids = archive.codec.partition_centroids()
    if centroids is None:
        raise InputError(f"{archive.codec_spec} codes hold no first-stage index to group items by (rq and pqvae "
                         "with coarse= do): use k-means lists (the default)")
    if nlist is not None and nlist != len(centroids):
        raise InputError(f"lists from the codes are the codec's {len(centroids)} first-stage centroids; "
                         f"nlist={nlist} cannot be chosen")
    return centroids


def read_ivf(path: str | Path, archive: Archive) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An index file, checked against its own hashes and against `archive` (the one it was built on)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read IVF index {str(path)!r} ({exc.strerror or exc}); build it with `semzip index`") from None
    if raw[:8] != b"SMZIVF\0\0" or len(raw) < 12:
        raise FormatError(f"{str(path)!r} is not a semzip IVF index")
    (hlen,) = struct.unpack_from("<I", raw, 8)
    try:
        head = json.loads(raw[12 : 12 + hlen])
        if head.get("format") != FORMAT or head.get("version") != VERSION:
            raise ValueError(f"format {head.get('format')!r} version {head.get('version')!r}")
        n, d, nlist = int(head["items"]), int(head["dim"]), int(head["nlist"])
        built_on, digests = str(head["archive"]), dict(head["sha256"])
        if head["assigned_on"] not in (_BY_CODES, "decoded vectors"):
            raise ValueError(f"assigned_on {head['assigned_on']!r}")
        head["updates"] = {k: int(v) for k, v in dict(head.get("updates", {"appended": 0, "deleted": 0})).items()}
        if set(head["updates"]) != {"appended", "deleted"} or min(head["updates"].values()) < 0:
            raise ValueError(f"updates {head['updates']!r}")
        head["seed"], head["sample"] = int(head["seed"]), int(head["sample"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{str(path)!r}: unreadable IVF header ({type(exc).__name__}: {exc})") from None
    if built_on != fingerprint(archive) or (n, d) != (archive.stored_items, archive.dim):
        raise FormatError(f"{str(path)!r} was built for another version of {archive.path}: rebuild it "
                          f"with `semzip index {archive.path}`")
    shapes = {"centroids": ((nlist, d), np.float32), "offsets": ((nlist + 1,), np.int64), "positions": ((n,), np.int64)}
    arrays, at = {}, 12 + hlen
    for k in _ARRAYS:
        shape, dtype = shapes[k]
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        chunk = raw[at : at + size]
        if len(chunk) != size or hashlib.sha256(chunk).hexdigest() != digests.get(k):
            raise FormatError(f"{str(path)!r} is damaged (array {k})")
        arrays[k] = np.frombuffer(chunk, dtype=dtype).reshape(shape)
        at += size
    off, pos = arrays["offsets"], arrays["positions"]
    if off[0] != 0 or off[-1] != n or (np.diff(off) < 0).any() or not np.array_equal(np.sort(pos), np.arange(n)):
        raise FormatError(f"{str(path)!r} is damaged (lists do not cover the items once each)")
    return head, arrays


class IVFSearcher:
    """An archive's codes held in list order with their norms, searched list by list (4-bit pq codes
    only packed, two a byte, in the fast-scan index).

    For pq archives the probed lists are first scanned by faiss's IVF kernels on the same codes
    (`by_residual = False`: PQ codes of the vectors themselves, laid out as semzip stores them).
    4- and 8-bit codes: `IndexIVFPQFastScan` / `IndexIVFPQ` over centroids extended by their
    squared norms, so that faiss ranks by a bound on the cosine, and its shortlists are proven
    complete (exact over the probed lists). Other widths: `IndexIVFPQ` keeps the best inner
    products per query, a shortlist then scored by the codec's scorer, with norms for cosines.
    """

    def __init__(self, archive: Archive, path: str | Path | None = None) -> None:
        self.archive = archive
        self.head, arrays = read_ivf(path if path is not None else default_path(archive.path), archive)
        self.centroids = arrays["centroids"]
        self.offsets, positions = _live_lists(archive, arrays["offsets"], arrays["positions"])
        self.nlist = len(self.centroids)
        codec = archive.codec
        self.positions = positions
        self._row = np.empty(len(positions), dtype=np.int64)
        self._row[positions] = np.arange(len(positions))  # archive position -> row in list order
        self.codes = _in_list_order(archive, self._row)  # list l = rows offsets[l]:offsets[l+1]
        self.norms = np.asarray(codec.norms(self.codes), dtype=np.float32)
        self._pq = codec if isinstance(codec, PQCodec) and len(positions) else None
        self._fast: IVFFastScanIndex | None = None
        self._faiss: Any = None
        if self._pq is not None and self._pq.K in (16, 256):
            self._fast = IVFFastScanIndex(self._pq.centroids_, self.codes["codes"], self.offsets,
                                          self._pq.rotate(self.centroids), self.norms)
            if self._fast.rounded:  # 4-bit codes are kept packed there only (half the bytes)
                self.codes = {}
        elif self._pq is not None:
            self._faiss = self._faiss_lists(self._pq)

    def _faiss_lists(self, codec: PQCodec) -> Any:
        """The same lists and codes as a faiss IndexIVFPQ (float tables) over the codec's (rotated)
        space, for pq codes of other widths than 4 and 8 bits (faiss ranks their shortlist by inner product)."""
        import faiss

        from ._export import copy_pq, pack_indices, pq_bits

        d = self.archive.dim
        nbits = pq_bits(codec)
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(np.ascontiguousarray(codec.rotate(self.centroids), dtype=np.float32))
        index = faiss.IndexIVFPQ(quantizer, d, self.nlist, codec.M, nbits, faiss.METRIC_INNER_PRODUCT)
        index.by_residual = False
        copy_pq(codec, index)
        packed = np.ascontiguousarray(pack_indices(self.codes["codes"], nbits))
        for lst in range(self.nlist):
            lo, hi = int(self.offsets[lst]), int(self.offsets[lst + 1])
            if hi > lo:
                ids = np.ascontiguousarray(self.positions[lo:hi], dtype=np.int64)
                index.invlists.add_entries(lst, hi - lo, faiss.swig_ptr(ids), faiss.swig_ptr(packed[lo:hi]))
        index.ntotal = len(self.positions)
        self._quantizer = quantizer  # the index does not own its quantizer: keep it alive
        return index

    def search(self, queries: Any, k: int = 10, *, nprobe: int = 16, normalize: bool = True,
               shortlist: int | None = None) -> SearchResult:
        """Top-k per query among the items of its `nprobe` nearest lists (cosine by default), scored on
        the codes; ties go to the earlier item, as in a flat search. Rows past the candidates found
        have score -inf and position -1. `shortlist`: 0 scores every probed item here (numpy). For
        4- and 8-bit pq, faiss's first shortlist per query (default 256; work, not results: the
        top-k is exact over the probed lists whatever it is); for other widths, the best inner
        products per query kept from faiss's scan and re-scored (default max(500, 50 k))."""
        Q = _queries(queries, self.archive.dim, normalize)
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        if not 1 <= nprobe <= self.nlist:
            raise InputError(f"nprobe must be between 1 and the index's {self.nlist} lists, got {nprobe}")
        best = np.full((len(Q), k), -np.inf, dtype=np.float32)
        where = np.full((len(Q), k), -1, dtype=np.int64)
        if self._fast is not None and self._pq is not None and shortlist != 0:
            if shortlist is not None and shortlist < 1:
                raise InputError(f"shortlist must be positive (or 0 for the numpy scan), got {shortlist}")
            self._fast.probe(*self._probes(Q, nprobe))
            ranker = FastScanRanker(self._pq.centroids_, self._pq.rotate(Q), normalize,
                                    _FIRST_SHORTLIST if shortlist is None else shortlist)
            rows, S = ranker(self._fast, k, np.full(len(Q), -np.inf))
            self._keep(S, np.where(rows >= 0, self.positions[rows], -1), best, where, 0)
        else:
            found = self._candidates(Q, k, nprobe, shortlist)
            width = max((len(rows) for rows in found), default=0)
            step = max(1, _PAIR_ELEMENTS // max(1, width * (self._pq.M if self._pq is not None else 1)))
            for lo in range(0, len(Q) if width else 0, step):  # queries in chunks: (chunk, width) scores at once
                chunk = found[lo : lo + step]
                rows = np.full((len(chunk), width), -1, dtype=np.int64)
                for i, r in enumerate(chunk):
                    rows[i, : len(r)] = r
                valid = rows >= 0
                S = np.where(valid, self._pair_scores(Q[lo : lo + step], chunk, rows, valid), -np.inf).astype(np.float32)
                if normalize:
                    norms = self.norms[rows]
                    S /= np.where(valid & (norms > 0), norms, 1.0)
                self._keep(S, np.where(valid, self.positions[rows], -1), best, where, lo)
        ids = [[self.archive.ids[p] for p in row if p >= 0] for row in where.tolist()]
        return SearchResult(ids, best, np.zeros_like(where, dtype=np.int32), where)

    @staticmethod
    def _keep(S: np.ndarray, pos: np.ndarray, best: np.ndarray, where: np.ndarray, lo: int) -> None:
        """The top of scores S (q, w) at archive positions pos into rows lo.. of best and where:
        best first, ties to the earlier item, -inf scores at position -1."""
        keep = min(best.shape[1], S.shape[1])
        sel = top_indices(S, keep, pos=pos)
        top, at = np.take_along_axis(S, sel, axis=1), np.take_along_axis(pos, sel, axis=1)
        order = np.lexsort((at, -top), axis=1)  # best first, ties to the earlier item
        top, at = np.take_along_axis(top, order, axis=1), np.take_along_axis(at, order, axis=1)
        best[lo : lo + len(S), :keep], where[lo : lo + len(S), :keep] = top, np.where(np.isneginf(top), -1, at)

    def _pair_scores(self, Q: np.ndarray, found: list[np.ndarray], rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(q, width) scores of each query's candidate rows, each made from its query alone (so a
        query's results do not depend on its batch): pq from per-query lookup tables over the
        gathered codes; other codecs with their scorer, one query at a time."""
        if self._pq is not None:
            return self._pq.pair_scores(self._pq.query_tables(Q), self._pq_codes(np.where(valid, rows, 0)))
        S = np.zeros(rows.shape, dtype=np.float32)
        scorer = self.archive.codec.scorer
        for i, r in enumerate(found):
            if len(r):
                S[i, : len(r)] = scorer(Q[i : i + 1])({n: v[r] for n, v in self.codes.items()})[:, 0]
        return S

    def _pq_codes(self, rows: np.ndarray) -> np.ndarray:
        """pq codes (..., M) of list-order rows, unpacked from the fast-scan index where it holds them."""
        if not self.codes and self._fast is not None and self._pq is not None:
            return unpack_nibbles(self._fast.packed[rows], self._pq.M)
        return self.codes["codes"][rows]

    def _candidates(self, Q: np.ndarray, k: int, nprobe: int, shortlist: int | None) -> list[np.ndarray]:
        """Per query, the rows (list order) to score: every item of its lists, or faiss's shortlist."""
        if self._faiss is not None and self._pq is not None and shortlist != 0:
            keep = min(len(self.positions), shortlist or max(500, 50 * k))
            if keep < k:
                raise InputError(f"shortlist must be at least k ({k}), got {shortlist}")
            lists, scores = self._probes(Q, nprobe)
            self._faiss.nprobe = nprobe
            _, found = self._faiss.search_preassigned(np.ascontiguousarray(self._pq.rotate(Q), dtype=np.float32), keep,
                                                      lists, scores)
            return [np.sort(self._row[row[row >= 0]]) for row in found]
        probes = np.sort(self._probes(Q, nprobe)[0], axis=1)
        return [np.concatenate([np.arange(self.offsets[j], self.offsets[j + 1]) for j in lists]) for lists in probes]

    def _probes(self, Q: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's `nprobe` nearest lists (q, nprobe), best first (ties to the lower list), and
        their centroid cosines: one choice for every scan path, so they scan the same items."""
        S = l2_normalize(Q) @ self.centroids.T
        lists = top_indices(S, nprobe)
        scores = np.take_along_axis(S, lists, axis=1)
        order = np.lexsort((lists, -scores), axis=1)  # best first, ties to the lower list
        lists = np.take_along_axis(lists, order, axis=1)
        return np.ascontiguousarray(lists), np.take_along_axis(scores, order, axis=1)


def _live_lists(archive: Archive, offsets: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lists (offsets, positions) of the items `archive` reads: an index covers every item its
    file stores, so a collection's tombstoned items leave their lists and the others are renumbered
    as read (the order inside a list is kept)."""
    if not archive.deleted.size:
        return offsets, positions
    live = archive.live
    kept = live[positions]
    lists = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))[kept]
    renumber = np.cumsum(live) - 1
    return (np.concatenate([[0], np.cumsum(np.bincount(lists, minlength=len(offsets) - 1))]).astype(np.int64),
            renumber[positions[kept]])


def _in_list_order(archive: Archive, row: np.ndarray) -> Codes:
    """The archive's codes with item i at row[i], written block by block into one array per key: one
    copy of the codes in memory, where concatenating the blocks and then reordering made three."""
    out: Codes = {}
    for start, codes in archive.iter_codes():
        for key, value in codes.items():
            if key not in out:
                out[key] = np.empty((len(row), *value.shape[1:]), dtype=value.dtype)
            elif np.result_type(out[key], value) != out[key].dtype:  # a block of wider codes
                out[key] = out[key].astype(np.result_type(out[key], value))
            out[key][row[start : start + len(value)]] = value
    return out


def search_ivf(archives: Sequence[Archive], queries: Any, k: int = 10, *, nprobe: int = 16, normalize: bool = True,
               shortlist: int | None = None) -> SearchResult:
    """Several indexed archives (a sharded collection's shards, or archive files), each searched with
    its own index on its `nprobe` nearest lists (all of an index with fewer), merged: best first,
    ties to the earlier archive, then the earlier item, as in a flat search over all of them."""
    searchers = [IVFSearcher(a) for a in archives]
    most = max(s.nlist for s in searchers)  # above it, each searcher refuses nprobe itself
    parts = [s.search(queries, k, nprobe=min(nprobe, s.nlist) if nprobe <= most else nprobe, normalize=normalize,
                      shortlist=shortlist) for s in searchers]
    scores = np.concatenate([p.scores for p in parts], axis=1)
    sources = np.concatenate([np.full(p.positions.shape, i, dtype=np.int32) for i, p in enumerate(parts)], axis=1)
    positions = np.concatenate([p.positions for p in parts], axis=1)
    sel = np.lexsort((positions, sources, -scores), axis=1)[:, :k]  # at most k per archive: sort them all
    best, src, pos = (np.take_along_axis(x, sel, axis=1) for x in (scores, sources, positions))
    ids = [[archives[s].ids[p] for s, p in zip(srow, prow) if p >= 0] for srow, prow in zip(src.tolist(), pos.tolist())]
    return SearchResult(ids, best, src, pos)
