"""Search and zero-shot classification on the codes of one or more archives, block by block.

Scores are inner products between the queries and the items' reconstructions, computed by each
codec's `scorer` (lookup tables for PQ, bit products for sign...), so items are never decoded to
float vectors. Blocks are streamed from the memory-mapped files in runs of consecutive items and a
running top-k is kept with `np.argpartition`, so memory stays O(run + q*k) whatever the archive
size; `preload=True` keeps the unpacked codes instead (no entropy decoding per query: the mode for
many queries). Codecs with a `fast_index` (4-bit PQ: faiss fast-scan) are searched through it: a
shortlist per query and run, proven complete and re-scored exactly, instead of every item's score.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from .._topk import top_indices
from .._validate import check_embeddings, l2_normalize
from ..codecs import Codes
from ..container import Archive

#: Items scored per top-k update: several blocks are batched so argpartition runs on wide rows.
CHUNK_ITEMS = 16384
#: Items per run for codecs with a fast index: fewer, larger fast-scan calls (8 MiB of 4-bit codes at M=64).
FAST_CHUNK_ITEMS = 262144
#: Queries scored together; bounds the (chunk, q) score matrix to about 64 MiB of float32.
QUERY_BATCH = 1024


@dataclass(frozen=True)
class _Run:
    """Consecutive items of one archive: their codes (and norms when cosines are wanted), or the
    codec's fast index over them."""

    first: int
    items: int
    codes: Codes | None = None
    norms: np.ndarray | None = None
    index: Any = None


@dataclass(frozen=True)
class SearchResult:
    """Top-k hits per query, best first: `ids[i][j]`, `scores[i, j]` and where each hit lives.

    `sources[i, j]` indexes the collection's archives, `positions[i, j]` is the item's index inside
    that archive. Scores are cosines when the search normalised, else raw inner products.
    """

    ids: list[list[str]]
    scores: np.ndarray
    sources: np.ndarray
    positions: np.ndarray

    def to_json(self, queries: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One dict per query: its label (if given) and its hits as {rank, id, score}."""
        out = []
        for i, ids in enumerate(self.ids):
            hits = [{"rank": r + 1, "id": h, "score": float(s)} for r, (h, s) in enumerate(zip(ids, self.scores[i]))]
            out.append({"query": queries[i], "hits": hits} if queries is not None else {"hits": hits})
        return out


class Collection:
    """Several archives searched as one collection: same width and model, ids unique across them.

    Archives may use different codecs (scores live in the same embedding space). Use as a context
    manager to close the archives it opened. `preload=True` unpacks every block once and keeps the
    codes (e.g. 32 bytes per item for pq:M=32,K=256 as uint8) and their norms in memory, or the
    codec's fast index (pq with K=16: the packed 4-bit codes twice, 2 x M/2 bytes per item).
    """

    def __init__(self, archives: Sequence[Archive | str | Path], *, codec: Any = None, preload: bool = False,
                 chunk_items: int = CHUNK_ITEMS, fast_chunk_items: int = FAST_CHUNK_ITEMS,
                 query_batch: int = QUERY_BATCH, fast_shortlist: int | None = None) -> None:
        """`chunk_items`, `fast_chunk_items`, `query_batch`: how much is scored at once (memory, not
        results); `fast_shortlist`: candidates per query of a fast index's first pass (work, not results)."""
        if min(chunk_items, fast_chunk_items, query_batch, 1 if fast_shortlist is None else fast_shortlist) < 1:
            raise InputError("chunk_items, fast_chunk_items, query_batch and fast_shortlist must be positive")
        self._chunk, self._fast_chunk, self._query_batch = chunk_items, fast_chunk_items, query_batch
        self._shortlist = fast_shortlist
        if isinstance(archives, (Archive, str, Path)):
            archives = [archives]
        if not archives:
            raise InputError("no archives to search")
        self.archives: list[Archive] = []
        self._owned: list[Archive] = []  # opened here, closed by `close`
        try:
            for a in archives:
                if not isinstance(a, Archive):
                    a = Archive.open(a, codec=codec)
                    self._owned.append(a)
                self.archives.append(a)
        except BaseException:
            self.close()
            raise
        first = self.archives[0]
        for a in self.archives[1:]:
            if a.dim != first.dim:
                raise InputError(f"cannot search {a.path} with {first.path}: widths {a.dim} and {first.dim} differ")
            if a.model != first.model:
                raise InputError(f"cannot search {a.path} with {first.path}: embedding models "
                                 f"{a.model!r} and {first.model!r} differ (their vectors are not comparable)")
        self.dim, self.model = first.dim, first.model
        self.items = sum(a.items for a in self.archives)
        self._where: dict[str, tuple[int, int]] | None = None
        if len(self.archives) > 1:
            self._where = {}
            for s, a in enumerate(self.archives):
                for p, item_id in enumerate(a.ids):
                    if item_id in self._where:
                        raise InputError(f"id {item_id!r} is in both {self.archives[self._where[item_id][0]].path} "
                                         f"and {a.path}: ids must be unique across the collection")
                    self._where[item_id] = (s, p)
        self._cache: list[list[_Run]] | None = None
        if preload:
            self._cache = [list(self._read_runs(s, normalize=True, fast=True)) for s in range(len(self.archives))]

    def close(self) -> None:
        for a in self._owned:
            a.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- lookup ----------------------------------------------------------------------------------
    def locate(self, item_id: str) -> tuple[int, int]:
        """(archive index, position) of an item id; InputError when no archive has it."""
        if self._where is None:
            return 0, self.archives[0].position(item_id)
        try:
            return self._where[item_id]
        except KeyError:
            raise InputError(f"no item with id {item_id!r} in the {len(self.archives)} archives searched") from None

    def vector(self, item_id: str) -> np.ndarray:
        """An item's decoded vector (decodes one block): the query of a `like:` search."""
        s, _ = self.locate(item_id)
        return self.archives[s].get(item_id)

    def vectors(self, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """(ids, float32 (n, d) decoded vectors) of the given items, or of all in collection order;
        each block is decoded once. Unknown ids are an InputError."""
        if ids is None:
            return [i for a in self.archives for i in a.ids], np.concatenate([a.decode() for a in self.archives])
        ids = [str(i) for i in ids]
        where = np.array([self.locate(i) for i in ids], dtype=np.int64).reshape(-1, 2)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for s in np.unique(where[:, 0]).tolist():
            sel = where[:, 0] == s
            out[sel] = self.archives[s].rows(where[sel, 1])
        return ids, out

    def _read_runs(self, s: int, normalize: bool, fast: bool) -> Iterator[_Run]:
        """Archive s read from disk as runs of ~chunk_items items (fast_chunk_items, as fast
        indexes, when `fast` and the codec has one), with norms when `normalize`."""
        a = self.archives[s]
        fast = fast and a.codec.has_fast_index
        target = self._fast_chunk if fast else self._chunk
        group: list[Codes] = []
        first = size = 0
        for start, codes in a.iter_codes():
            if not group:
                first = start
            group.append(codes)
            size += len(next(iter(codes.values())))
            if size >= target or first + size >= a.items:
                run = {key: np.concatenate([g[key] for g in group]) for key in group[0]} if len(group) > 1 else group[0]
                index = a.codec.fast_index(run) if fast else None
                if index is not None:
                    yield _Run(first, size, index=index)
                else:
                    yield _Run(first, size, codes=run, norms=a.codec.norms(run) if normalize else None)
                group, size = [], 0

    def _runs(self, s: int, normalize: bool, fast: bool) -> Iterator[_Run]:
        """Runs of archive s, from memory when preloaded; a fast index only where `fast` is asked for."""
        if self._cache is None:
            yield from self._read_runs(s, normalize, fast)
            return
        codec = self.archives[s].codec
        for run in self._cache[s]:
            if run.index is not None and not fast:  # a search that needs every score
                codes = run.index.codes()
                run = _Run(run.first, run.items, codes=codes, norms=codec.norms(codes) if normalize else None)
            elif not normalize and run.norms is not None:
                run = replace(run, norms=None)
            yield run

    # ---- scoring ---------------------------------------------------------------------------------
    def _scores(self, Q: np.ndarray, normalize: bool) -> Iterator[tuple[int, int, np.ndarray]]:
        """(archive index, first position, scores (n, q)) for consecutive runs of items."""
        for s, a in enumerate(self.archives):
            score = a.codec.scorer(Q)
            for run in self._runs(s, normalize, fast=False):
                yield s, run.first, _dense(score, run)

    def search(self, queries: Any, k: int = 10, *, normalize: bool = True, rerank: int = 0) -> SearchResult:
        """Top-k items per query (q, d) by inner product with the reconstructions, in the compressed domain.

        `normalize=True` (default) unit-normalises the queries and divides by each reconstruction's
        norm (computed from the codes), so scores are cosines. `rerank=R` re-scores the best
        max(R, k) candidates on their decoded vectors (exact float32) before cutting to k: it matters
        for codecs whose `scorer` approximates, and is a no-op check for exact ones such as PQ.
        """
        Q = _queries(queries, self.dim, normalize)
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        if not isinstance(rerank, (int, np.integer)) or rerank < 0:
            raise InputError(f"rerank must be a non-negative integer, got {rerank!r}")
        keep = min(max(int(k), int(rerank)), self.items)
        step = self._query_batch
        parts = [self._top(Q[i : i + step], keep, normalize) for i in range(0, len(Q), step)]
        scores, src, pos = (np.concatenate(x) for x in zip(*parts))
        if rerank:
            scores = self._exact(Q, src, pos, normalize)
        return self.ranked(scores, src, pos, min(int(k), self.items))

    def ranked(self, scores: np.ndarray, src: np.ndarray, pos: np.ndarray, k: int) -> SearchResult:
        """The best k of candidates (q, n) (scores, archive index, position), in collection order at
        ties (score, then archive, then position): the one ordering every search path returns."""
        order = np.lexsort((pos, src, -scores), axis=1)[:, :k]
        scores, src, pos = (np.take_along_axis(x, order, axis=1) for x in (scores, src, pos))
        ids = [[self.archives[s].ids[p] for s, p in zip(srow, prow)] for srow, prow in zip(src.tolist(), pos.tolist())]
        return SearchResult(ids, scores, src, pos)

    def _top(self, Q: np.ndarray, keep: int, normalize: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Running top-`keep` (unsorted) over all runs: scores, archive index, position, each (q, keep).

        A run with a fast index contributes its ranker's rows (a complete shortlist, exact scores).
        Otherwise only scores at or above each query's current k-th best (or, before k items are seen,
        the k-th best of a sample of the run, a lower bound of the run's own) are gathered, so a run
        costs one comparison pass and a small merge rather than a partition of the whole run.
        """
        q = len(Q)
        best = np.full((q, keep), -np.inf, dtype=np.float32)
        src = np.zeros((q, keep), dtype=np.int32)
        pos = np.zeros((q, keep), dtype=np.int64)
        for s, a in enumerate(self.archives):
            rank = a.codec.fast_ranker(Q, normalize, self._shortlist)
            score = None
            for run in self._runs(s, normalize, fast=rank is not None):
                if run.index is not None and rank is not None:  # a fast index exists only with a ranker
                    idx, vals = rank(run.index, keep, best.min(axis=1))
                else:
                    score = score or a.codec.scorer(Q)
                    found = _above(_dense(score, run), best, keep)
                    if found is None:
                        continue
                    idx, vals = found
                cand = np.concatenate([best, vals], axis=1)
                cpos = np.concatenate([pos, run.first + idx], axis=1)
                csrc = np.concatenate([src, np.full(idx.shape, s, dtype=np.int32)], axis=1)
                sel = top_indices(cand, keep, pos=cpos, src=csrc)
                best, src, pos = (np.take_along_axis(x, sel, axis=1) for x in (cand, csrc, cpos))
        return best, src, pos

    def _exact(self, Q: np.ndarray, src: np.ndarray, pos: np.ndarray, normalize: bool) -> np.ndarray:
        """Scores of the candidates recomputed on their decoded vectors, each block decoded once."""
        out = np.empty(src.shape, dtype=np.float32)
        for s in np.unique(src):
            mask = src == s
            wanted, where = np.unique(pos[mask], return_inverse=True)
            vectors = self.archives[s].rows(wanted)
            if normalize:
                vectors = l2_normalize(vectors)
            out[mask] = np.einsum("nd,nd->n", vectors[where], Q[np.nonzero(mask)[0]])
        return out

    def classify(self, text_embeddings: Any, labels: Sequence[str], *, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Zero-shot labels of every item, in collection order: (labels (n,) str, scores (n,) float32).

        Each item gets the label whose text embedding has the highest score with it (cosine when
        `normalize`; ties go to the earlier label); scores come from the codes, as in `search`.
        """
        names, scores = self.tags(text_embeddings, labels, k=1, normalize=normalize)
        return names[:, 0], scores[:, 0]

    def tags(self, text_embeddings: Any, labels: Sequence[str], k: int = 5, *,
             normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The k best labels of every item, best first: (labels (n, k) str, scores (n, k) float32).

        A vocabulary of text embeddings (one per label, e.g. LVIS class names) scored against the
        codes as in `classify`; ties go to the earlier label, so tags depend on the codes alone.
        """
        T = _queries(text_embeddings, self.dim, normalize, name="text embeddings")
        labels = [str(x) for x in labels]
        if len(labels) != len(T):
            raise InputError(f"{len(labels)} labels given for {len(T)} text embeddings")
        if not 1 <= k <= len(labels):
            raise InputError(f"k must be between 1 and the {len(labels)} labels, got {k}")
        best = np.empty((self.items, k), dtype=np.int64)
        score = np.empty((self.items, k), dtype=np.float32)
        offsets = np.cumsum([0] + [a.items for a in self.archives])
        for s, first, S in self._scores(T, normalize):
            at = offsets[s] + first
            best[at : at + len(S)], score[at : at + len(S)] = best_columns(S, k)
        return np.asarray(labels)[best], score


def best_columns(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices (n, k), scores (n, k)) of each row's k best scores, best first, ties to the earlier column."""
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(S, order, axis=1)


def _dense(score: Any, run: _Run) -> np.ndarray:
    """Scores (n, q) of every item of a run, divided by the norms when the run has them (cosines)."""
    S = score(run.codes)
    if run.norms is not None:
        S /= np.where(run.norms > 0, run.norms, 1.0).astype(np.float32)[:, None]
    return S


def _above(S: np.ndarray, best: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions (q, w), scores (q, w)) of the run's scores S (n, q) that may enter the running top:
    those at or above each query's k-th best so far; None when there are none."""
    q, n = best.shape[0], len(S)
    if n <= keep:
        return np.broadcast_to(np.arange(n), (q, n)), S.T
    threshold = best.min(axis=1)
    if np.isneginf(threshold).any():  # not full yet: the k-th best of a sample bounds the run's
        sample = S[:: max(1, min(16, n // keep))]
        threshold = np.maximum(threshold, np.partition(sample, len(sample) - keep, axis=0)[len(sample) - keep])
    items, queries = np.nonzero(S >= threshold[None, :])
    if not len(items):
        return None
    order = np.argsort(queries, kind="stable")
    items, queries = items[order], queries[order]
    counts = np.bincount(queries, minlength=q)
    slot = np.arange(len(items)) - np.repeat(np.cumsum(counts) - counts, counts)
    idx = np.zeros((q, int(counts.max())), dtype=np.int64)
    vals = np.full(idx.shape, -np.inf, dtype=np.float32)
    idx[queries, slot], vals[queries, slot] = items, S[items, queries]
    return idx, vals


def _queries(queries: Any, dim: int, normalize: bool, name: str = "queries") -> np.ndarray:
    arr = np.asarray(queries) if not isinstance(queries, np.ndarray) else queries
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InputError(f"{name} must have shape ({dim},) or (q, {dim}) to match the archive width, got {arr.shape}")
    Q = check_embeddings(arr, dim=dim, name=name)
    if normalize:
        if (np.linalg.norm(Q, axis=1) == 0).any():
            raise InputError(f"{name}: a zero vector has no direction to compare with (cosine undefined)")
        Q = l2_normalize(Q)
    return Q


def search_archive(archives: Any, queries: Any, k: int = 10, *, normalize: bool = True, rerank: int = 0,
                   codec: Any = None) -> SearchResult:
    """Top-k items of one archive (path or `Archive`) or several searched as one, per query vector.

    Distances are computed on the codes (see `Collection.search`); nothing is decoded to floats.
    """
    with Collection(_as_list(archives), codec=codec) as coll:
        return coll.search(queries, k, normalize=normalize, rerank=rerank)


def classify_archive(archive: Any, text_embeddings: Any, labels: Sequence[str], *, normalize: bool = True,
                     codec: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot classification of every item on the codes: (predicted labels (n,), their scores (n,)).

    `text_embeddings` (C, d) are one embedding per label (e.g. CLIP text features of prompts).
    """
    with Collection(_as_list(archive), codec=codec) as coll:
        return coll.classify(text_embeddings, labels, normalize=normalize)


def _as_list(archives: Any) -> list:
    return [archives] if isinstance(archives, (Archive, str, Path)) else list(archives)
