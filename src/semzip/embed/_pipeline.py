"""Images and texts to embeddings: parallel decoding, batching, the cache, zero-shot class embeddings."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from ._backend import template_sets
from ._cache import EmbeddingCache
from ._images import decode_image, to_pixels
from ._load import ClipModel, load_model

log = logging.getLogger("semzip.embed")
log.addHandler(logging.NullHandler())  # skipped files are in Embedded.failures; the CLI prints them itself

# Bump when decoding or preprocessing changes what a file embeds to: old cache rows stop matching.
PIPELINE_VERSION = 1


@dataclass(frozen=True)
class Failure:
    """An input that could not be embedded, and why."""

    path: str
    id: str
    reason: str


@dataclass
class Embedded:
    """Result of `embed_paths`: rows follow the input order, with failed inputs left out."""

    features: np.ndarray  # float32 (n, d), L2-normalised
    ids: list[str]
    pixels: np.ndarray  # int64 (n,): width * height of each decoded image, for bits-per-pixel
    model_id: str
    failures: list[Failure] = field(default_factory=list)
    cached: int = 0  # rows served by the cache instead of the model


def resolve_model(model: str | ClipModel, weights: Any = None, device: str = "cpu") -> ClipModel:
    """A loaded model, or load one by name."""
    if isinstance(model, ClipModel):
        if weights is not None:
            raise InputError("weights= applies to a model name, not to an already loaded model")
        return model
    return load_model(model, weights=weights, device=device)


def cache_key(model: ClipModel) -> str:
    """The model part of a cache key: name, weights hash, preprocessing, pipeline version."""
    pre = model.preprocess
    spec = f"{pre.image_size},{pre.mean},{pre.std},{pre.interpolation},{pre.resize_mode},v{PIPELINE_VERSION}"
    return f"{model.name}|{model.fingerprint}|{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


def _load_one(path: Path, known: frozenset[str], model: ClipModel) -> tuple[str, np.ndarray | None, int] | str:
    """(digest, pixels or None if cached, pixel count) for one file, or the reason it failed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    digest = hashlib.sha256(data).hexdigest()
    if digest in known:
        return digest, None, 0
    from PIL import UnidentifiedImageError

    try:
        img = decode_image(data)
        count = img.width * img.height
        return digest, to_pixels(img, model.preprocess), count
    except UnidentifiedImageError:
        return "not an image file (format not recognised)" if data else "empty file"
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types (OSError, SyntaxError, ValueError...)
        return f"not a readable image ({type(exc).__name__}: {exc})"[:300]


def _ordered(pool: ThreadPoolExecutor, fn: Callable[[int], Any], n: int, window: int, overlap: bool) -> Generator[Any, None, None]:
    """fn(0..n-1) run on `pool`, yielded in order.

    With `overlap`, up to `window` calls run ahead, also while the caller runs the model (right for a GPU).
    Without, calls run `window` at a time, all in parallel, and none while the caller works: on a CPU
    the model already uses every core, and decoding beside it only slows its threads down.
    """
    if not overlap:
        for start in range(0, n, window):
            yield from pool.map(fn, range(start, min(n, start + window)))
        return
    pending: collections.deque[Future[Any]] = collections.deque()
    nxt = 0
    try:
        while nxt < n or pending:
            while nxt < n and len(pending) < window:
                pending.append(pool.submit(fn, nxt))
                nxt += 1
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()


def embed_paths(paths: Sequence[str | os.PathLike[str]], model: str | ClipModel = "ViT-B-32:openai", *,
                ids: Sequence[str] | None = None, weights: Any = None, device: str = "cpu",
                batch_size: int = 64, workers: int | None = None,
                cache: EmbeddingCache | str | os.PathLike[str] | None = None, strict: bool = False,
                progress: bool = False) -> Embedded:
    """Embed image files with a CLIP model, decoding on `workers` threads while the model runs.

    A file that cannot be read or decoded is logged and listed in `failures` (or raises InputError
    naming it when `strict`). With `cache` (a path or an EmbeddingCache), files whose bytes were already
    embedded by this model are not decoded again. `ids` default to the paths as given.

    Size: the model's and the run's settings are keyword-only options, as `semzip embed` exposes them.
    """
    files = [Path(p) for p in paths]
    ids = [p.as_posix() for p in files] if ids is None else [str(i) for i in ids]
    if len(ids) != len(files):
        raise InputError(f"{len(ids)} ids for {len(files)} paths")
    if not files:
        raise InputError("no images given")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")

    clip = resolve_model(model, weights, device)
    store = cache if cache is None or isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
    try:
        key = cache_key(clip) if store is not None else ""
        known = store.digests(key) if store is not None else frozenset()
        return _Run(files, ids, clip, store, key, known).run(batch_size, workers, strict, progress)
    finally:
        if store is not None and store is not cache:  # opened here from a path
            store.close()


class _Run:
    """One embedding run: decoded images batched through the model, cache hits read in groups, and
    the results placed in input order."""

    def __init__(self, paths: list[Path], ids: list[str], clip: ClipModel, store: EmbeddingCache | None,
                 key: str, known: frozenset[str]) -> None:
        self.paths, self.ids, self.clip, self.store, self.key, self.known = paths, ids, clip, store, key, known
        n = len(paths)
        self.features = np.zeros((n, clip.embed_dim), dtype=np.float32)
        self.pixels = np.zeros(n, dtype=np.int64)
        self.ok = np.zeros(n, dtype=bool)
        self.failures: list[Failure] = []
        self.batch: list[tuple[int, str, np.ndarray]] = []
        self.hits: list[tuple[int, str]] = []
        self.cached = 0

    def run(self, batch_size: int, workers: int, strict: bool, progress: bool) -> Embedded:
        from .._progress import progress_bar

        n, clip = len(self.paths), self.clip
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semzip-decode") as pool, \
                progress_bar("embedding", n, enabled=progress) as advance:
            on_cpu = clip.device.startswith("cpu")
            results = _ordered(pool, lambda i: _load_one(self.paths[i], self.known, clip), n,
                               window=batch_size if on_cpu else batch_size + 2 * workers, overlap=not on_cpu)
            with contextlib.closing(results):  # on an error, queued decodes are cancelled before the pool waits
                for i, res in enumerate(results):
                    self._take(i, res, strict)
                    if len(self.batch) >= batch_size:
                        self._flush_batch()
                    if len(self.hits) >= 1024:
                        self._flush_hits()
                    advance(1)
            if self.batch:
                self._flush_batch()
            if self.hits:
                self._flush_hits()
        keep = np.flatnonzero(self.ok)
        return Embedded(self.features[keep], [self.ids[i] for i in keep], self.pixels[keep], clip.name,
                        self.failures, self.cached)

    def _take(self, i: int, res: tuple[str, np.ndarray | None, int] | str, strict: bool) -> None:
        """Input i's decode result: an error text, a cache hit (digest, None, 0) or (digest, pixels, count)."""
        if isinstance(res, str):
            if strict:
                raise InputError(f"{self.paths[i]}: {res}")
            log.warning("skipping %s: %s", self.paths[i], res)
            self.failures.append(Failure(str(self.paths[i]), self.ids[i], res))
            return
        digest, x, count = res
        if x is None:
            self.hits.append((i, digest))
        else:
            self.pixels[i] = count
            self.batch.append((i, digest, x))

    def _flush_batch(self) -> None:
        rows = [i for i, _, _ in self.batch]
        out = self.clip.encode_images(np.stack([x for _, _, x in self.batch]))
        self.features[rows] = out
        self.ok[rows] = True
        if self.store is not None:
            self.store.put(self.key, [(d, out[j], self.pixels[i]) for j, (i, d, _) in enumerate(self.batch)])
        self.batch.clear()

    def _flush_hits(self) -> None:
        store = self.store
        got = store.get(self.key, [d for _, d in self.hits], self.clip.embed_dim) if store is not None else {}
        for i, digest in self.hits:
            if digest in got:
                self.features[i], self.pixels[i] = got[digest]
                self.ok[i] = True
                self.cached += 1
            else:  # the row vanished since `known` was read (another process): embed it after all
                self.failures.append(Failure(str(self.paths[i]), self.ids[i],
                                             "cache entry disappeared during the run; re-run"))
        self.hits.clear()


def embed_texts(texts: Sequence[str], model: str | ClipModel = "ViT-B-32:openai", *, weights: Any = None,
                device: str = "cpu", batch_size: int = 256) -> np.ndarray:
    """L2-normalised float32 (n, d) text embeddings (texts longer than the context are truncated)."""
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InputError("texts must be a non-empty list of strings")
    clip = resolve_model(model, weights, device)
    return np.concatenate([clip.encode_texts(texts[s:s + batch_size]) for s in range(0, len(texts), batch_size)])


def resolve_templates(templates: str | Sequence[str]) -> list[str]:
    """A set name ('photo', 'simple', 'openai'), one template, or a list; each template holds '{}' or '{c}'."""
    if isinstance(templates, str):
        sets = template_sets()
        if templates in sets:
            return sets[templates]
        templates = [templates]
    out = [str(t) for t in templates]
    if not out:
        raise InputError("no prompt templates given")
    for t in out:
        if "{}" not in t and "{c}" not in t:
            raise InputError(f"prompt template {t!r} has no '{{}}' or '{{c}}' for the label "
                             f"(or name a set: {', '.join(template_sets())})")
    return out


def class_embeddings(labels: Sequence[str], templates: str | Sequence[str] = "openai",
                     model: str | ClipModel = "ViT-B-32:openai", *, weights: Any = None, device: str = "cpu",
                     batch_size: int = 256) -> np.ndarray:
    """One L2-normalised embedding per label: the mean of its normalised prompt embeddings, renormalised
    (the zero-shot classifier of CLIP and CLIP_benchmark)."""
    labels = [str(label).strip() for label in labels]
    if not labels or any(not label for label in labels):
        raise InputError("labels must be non-empty strings")
    if len(set(labels)) != len(labels):
        raise InputError("labels must be distinct")
    prompts = resolve_templates(templates)
    clip = resolve_model(model, weights, device)
    texts = [t.replace("{c}", label).replace("{}", label) for label in labels for t in prompts]
    emb = embed_texts(texts, clip, batch_size=batch_size).reshape(len(labels), len(prompts), -1)
    mean = emb.mean(axis=1)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


def zero_shot(features: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class index, cosine similarity to it) per row of `features`."""
    feats = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    sims = (feats / np.where(norms > 0, norms, 1)) @ np.asarray(classes, dtype=np.float32).T
    best = sims.argmax(axis=1)
    return best, sims[np.arange(len(best)), best]
