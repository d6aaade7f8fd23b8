"""The Ray Data pipeline behind `compress_sharded`: plan shards, fit the codec on a sample, write shards.

The driver owns the output folder: it saves the codec, then streams shard tasks through a pool of Ray
actors (each loads the source, the codec and, for images, the CLIP model once) and records each
shard in the manifest as soon as its worker has committed the file. Workers write only their own
shard files, each atomically; the manifest is rewritten atomically by the driver alone.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import CodecMismatchError, InputError, SemzipError
from .._inputs import recorded_model
from ..codecs import Codec, fit_codec, load_codec, resolve_codec, save_codec
from ..shards import (
    CODEC_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    collection_lock,
    file_sha256,
    read_manifest,
    shard_name,
    write_manifest,
)
from ..container import DEFAULT_MODEL, UNKNOWN_MODEL, write_archive
from ..spec import parse_spec
from ._sources import EmbeddingSource, ImageSource, open_source

Source = EmbeddingSource | ImageSource


def compress_sharded(
    source: str,
    output: str | os.PathLike[str],
    codec: str | os.PathLike[str] | Codec,
    *,
    workers: int = 2,
    shard_items: int = 10_000,
    fit_items: int = 100_000,
    seed: int = 0,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    cpus_per_worker: float = 1,
    gpus_per_worker: float | None = None,
    address: str | None = None,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Compress `source` into a sharded collection in folder `output` with Ray; returns the manifest.

    `source` is an embedding file (`x.npy`, `x.npz[:key]`: encode only) or an image folder or
    object-store prefix (embedded with CLIP `model` by the workers; default ViT-B-32:openai).
    For embedding files `model` is only recorded (default: the model id `semzip embed` stored in
    the .npz, else "unknown"). `codec` is a fitted codec, a
    `.smzc` file, or a spec fitted on a seeded sample of `fit_items` embeddings. Items are cut into
    shards of `shard_items` in sorted input order; each finished shard is recorded in the manifest
    at once (and passed to `on_shard`), so running the same call again after a crash resumes: done
    shards are kept, the rest redone. Uses a running Ray (`ray.init` already called), else
    `address` or $RAY_ADDRESS, else starts a local Ray for the call. See docs/SCALE.md.

    Size: the pool's, the CLIP model's and the run's settings are keyword-only options, as
    `semzip compress --ray` exposes them.
    """
    for name, value in (("workers", workers), ("shard_items", shard_items), ("fit_items", fit_items),
                        ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if cpus_per_worker <= 0 or (gpus_per_worker is not None and gpus_per_worker < 0):
        raise InputError("cpus_per_worker must be > 0 and gpus_per_worker >= 0")
    folder = Path(output)
    src = open_source(source)
    recorded = src.model if isinstance(src, EmbeddingSource) else None
    model = recorded_model(model, recorded, source) or (
        UNKNOWN_MODEL if isinstance(src, EmbeddingSource) else DEFAULT_MODEL)
    gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if device.startswith("cuda") else 0.0)
    settings = {"model": model, "weights": None if weights is None else str(Path(weights).resolve()),
                "device": device, "batch_size": batch_size, "threads": max(1, int(cpus_per_worker))}
    with collection_lock(folder), _ray_session(address, workers * cpus_per_worker) as ray:
        pool = _Pool(ray, workers, cpus_per_worker, gpus)
        manifest = _prepare(folder, src, codec, shard_items, fit_items, seed, settings, pool)
        pending = _pending(folder, manifest, len(src))
        if pending:
            _run_shards(pool, folder, src, manifest, pending, settings, on_shard, progress)
    return manifest


# ---- output folder and manifest ------------------------------------------------------------------------
def _ours(name: str) -> bool:
    return name in (MANIFEST_NAME, CODEC_NAME, ".lock") or (name.startswith("shard-") and name.endswith((".smz", ".smz.ivf"))) \
        or (name.startswith((".shard-", f".{MANIFEST_NAME}.", f".{CODEC_NAME}.")) and name.endswith(".tmp"))


def _prepare(folder: Path, src: Source, codec_arg: Any, shard_items: int, fit_items: int, seed: int,
             settings: dict[str, Any], pool: _Pool) -> dict[str, Any]:
    """The manifest to continue: the existing one (checked against this call) or a new one with the codec saved."""
    foreign = sorted(p.name for p in folder.iterdir() if not _ours(p.name))
    if foreign:
        raise InputError(f"output folder {str(folder)!r} holds files a collection does not ({', '.join(foreign[:3])}); "
                         "give an empty or new folder")
    for stale in folder.glob(".*.tmp"):  # temp files of writes a crash interrupted
        stale.unlink()
    described = src.describe()
    if (folder / MANIFEST_NAME).is_file():
        manifest = read_manifest(folder)
        _check_resume(folder, manifest, described, codec_arg, shard_items, settings)
        return manifest
    codec = _fit_or_load(codec_arg, src, fit_items, seed, settings, pool)
    save_codec(codec, folder / CODEC_NAME)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "model": settings["model"],
        "dim": codec.n_features_in_,
        "codec": {"file": CODEC_NAME, "spec": str(codec.spec), "hash": codec.state_hash},
        "source": described,
        "shard_items": shard_items,
        "shards_planned": -(-len(src) // shard_items),
        "shards": [],
    }
    write_manifest(folder, manifest)
    return manifest


def _check_resume(folder: Path, manifest: dict[str, Any], described: dict[str, Any], codec_arg: Any,
                  shard_items: int, settings: dict[str, Any]) -> None:
    """Refuse to resume with different inputs, shard size, model or codec: shards would not fit together."""
    where = f"{str(folder)!r} was started"
    old = manifest.get("source", {})
    if any(old.get(k) != described.get(k) for k in ("kind", "items", "ids_sha256", "rows_probe_sha256")):
        raise InputError(f"{where} on other inputs ({old.get('items')} items from {old.get('input')!r}; now "
                         f"{described['items']} from {described['input']!r}): use a new output folder")
    if int(manifest["shard_items"]) != shard_items:
        raise InputError(f"{where} with --shard-items {manifest['shard_items']}, not {shard_items}")
    if manifest["model"] != settings["model"]:
        raise InputError(f"{where} with model {manifest['model']!r}, not {settings['model']!r}")
    saved = load_codec(folder / CODEC_NAME)
    if saved.state_hash != manifest["codec"]["hash"]:
        raise CodecMismatchError(f"{folder / CODEC_NAME} does not match the manifest's codec hash")
    given = resolve_codec(codec_arg)
    if given.is_fitted:
        if given.state_hash != saved.state_hash:
            raise CodecMismatchError(f"{where} with codec {saved.spec} (hash {saved.state_hash[:12]}); the given "
                                     f"codec has hash {given.state_hash[:12]}: use the same codec or a new folder")
    elif given.spec != parse_spec(manifest["codec"]["spec"]):
        raise CodecMismatchError(f"{where} with codec spec {manifest['codec']['spec']!r}, not {str(codec_arg)!r}")


def _fit_or_load(codec_arg: Any, src: Source, fit_items: int, seed: int, settings: dict[str, Any],
                 pool: _Pool) -> Codec:
    codec = resolve_codec(codec_arg)
    if isinstance(codec_arg, Codec):
        codec.check_is_fitted()
    if codec.is_fitted:
        return codec
    n = len(src)
    positions = np.sort(np.random.default_rng(seed).choice(n, size=min(n, fit_items), replace=False))
    if isinstance(src, EmbeddingSource):
        X = src.rows(src.load()[0][positions], 0, len(positions))
    else:
        X = _embed_sample(pool, src, positions, settings)
    return fit_codec(codec, X, seed=seed)


def _pending(folder: Path, manifest: dict[str, Any], n: int) -> list[tuple[int, int, int]]:
    """(shard, start, stop) of every shard not recorded, or recorded but its file gone or changed size."""
    size = int(manifest["shard_items"])
    kept = []
    for s in manifest["shards"]:
        path = None if s["file"] is None else folder / s["file"]
        if path is None or (path.is_file() and path.stat().st_size == int(s["bytes"])):
            kept.append(s)
    if len(kept) != len(manifest["shards"]):
        manifest["shards"] = kept
        write_manifest(folder, manifest)
    done = {int(s["index"]) for s in kept}
    return [(i, i * size, min(n, (i + 1) * size)) for i in range(int(manifest["shards_planned"])) if i not in done]


# ---- Ray ---------------------------------------------------------------------------------------------------
def local_runtime_env() -> dict[str, Any]:
    """Lets local Ray workers import this semzip even when it is not installed (a source checkout)."""
    src_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (src_root, os.environ.get("PYTHONPATH")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


@contextlib.contextmanager
def _ray_session(address: str | None, cpus_wanted: float) -> Iterator[Any]:
    """A running Ray if there is one (left running), else one started here and shut down after."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("the scale-out pipeline needs Ray Data: pip install 'semzip[ray]'") from None
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # enough CPU slots for the pool even on a small machine (the OS then shares the cores)
        ray.init(num_cpus=max(os.cpu_count() or 1, int(np.ceil(cpus_wanted))), include_dashboard=False,
                 log_to_driver=False, runtime_env=local_runtime_env())
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class _Pool:
    """The Ray session and the actor pool the work runs on: `workers` actors of `cpus` and `gpus` each."""

    ray: Any
    workers: int
    cpus: float
    gpus: float

    def map(self, rows: list[dict[str, Any]], actor: type, kwargs: dict[str, Any], progress: bool = False) -> Any:
        """A Ray dataset of `rows` (one block each) mapped one row at a time by `actor(**kwargs)` actors."""
        data = self.ray.data
        data.DataContext.get_current().enable_progress_bars = progress
        return data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            actor, batch_size=1, compute=data.ActorPoolStrategy(size=min(self.workers, len(rows))),
            num_cpus=self.cpus, num_gpus=self.gpus, fn_constructor_kwargs=kwargs)


def _run_shards(pool: _Pool, folder: Path, src: Source, manifest: dict[str, Any], pending: list[tuple[int, int, int]],
                settings: dict[str, Any], on_shard: Callable[[dict[str, Any]], None] | None, progress: bool) -> None:
    rows = [{"shard": i, "start": a, "stop": b} for i, a, b in pending]
    ds = pool.map(rows, _ShardWriter, {"source": src, "folder": str(folder.resolve()), "settings": settings,
                                       "model_id": manifest["model"]}, progress)
    for out in ds.iter_rows():
        _check_row(out)
        record = json.loads(out["record"])
        manifest["shards"].append(record)
        write_manifest(folder, manifest)
        if on_shard is not None:
            on_shard(record)


def _embed_sample(pool: _Pool, src: ImageSource, positions: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """Embed the images at `positions` on the workers, for fitting the codec."""
    chunks = np.array_split(positions, max(1, -(-len(positions) // 256)))
    rows = [{"chunk": k, "positions": c.tolist()} for k, c in enumerate(chunks)]
    ds = pool.map(rows, _SampleEmbedder, {"source": src, "settings": settings})
    parts = []
    for row in ds.iter_rows():
        _check_row(row)
        parts.append((int(row["chunk"]), np.asarray(row["features"], np.float32)))
    parts.sort(key=lambda p: p[0])
    X = np.concatenate([p for _, p in parts if len(p)]) if parts else np.zeros((0, 0), np.float32)
    if not len(X):
        raise InputError("none of the sampled images could be embedded to fit the codec")
    return X


def _check_row(row: dict[str, Any]) -> None:
    """Re-raise a semzip error a worker reported (Ray passes exceptions back only as text)."""
    if row["error"]:
        from .. import _errors

        name, _, message = row["error"].partition("\t")
        cls = getattr(_errors, name, SemzipError)
        raise cls(message) if isinstance(cls, type) and issubclass(cls, SemzipError) else SemzipError(message)


# ---- workers -----------------------------------------------------------------------------------------------
class _Worker:
    """Per-actor state: the source's rows (embeddings) or a CLIP model (images), loaded once."""

    def __init__(self, source: Source, settings: dict[str, Any]) -> None:
        self.source = source
        self.settings = settings
        self.matrix: np.ndarray | None = None
        self.pixels: np.ndarray | None = None
        if isinstance(source, EmbeddingSource):
            self.matrix, self.pixels = source.load()
        self.clip: Any = None
        if isinstance(source, ImageSource):
            import torch

            from ..embed import load_model

            torch.set_num_threads(settings["threads"])
            self.clip = load_model(settings["model"], weights=settings["weights"], device=settings["device"])

    def embed(self, positions: list[int]) -> tuple[np.ndarray, list[int], np.ndarray, list[list[str]]]:
        """(features, positions embedded, pixel counts, [id, reason] of each failure) for image positions."""
        from ..embed import decode_image, to_pixels

        source = self.source
        if not isinstance(source, ImageSource):
            raise InputError("only a source of image files is embedded in the workers")
        feats: list[np.ndarray] = []
        kept: list[int] = []
        pixels: list[int] = []
        failed: list[list[str]] = []
        batch: list[np.ndarray] = []

        def flush() -> None:
            if batch:
                feats.append(self.clip.encode_images(np.stack(batch)))
                batch.clear()

        for p in positions:
            try:
                img = decode_image(source.read(p))
                batch.append(to_pixels(img, self.clip.preprocess))
            except Exception as exc:  # noqa: BLE001 - unreadable inputs are skipped and listed, as in embed_paths
                failed.append([source.ids[p], f"{type(exc).__name__}: {exc}"[:300]])
                continue
            kept.append(p)
            pixels.append(img.width * img.height)
            if len(batch) >= self.settings["batch_size"]:
                flush()
        flush()
        X = np.concatenate(feats) if feats else np.zeros((0, self.clip.embed_dim), np.float32)
        return X, kept, np.asarray(pixels, np.int64), failed


class _SampleEmbedder(_Worker):
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        try:
            X, _, _, _ = self.embed([int(p) for p in batch["positions"][0]])
        except SemzipError as exc:
            return {"chunk": batch["chunk"], "features": [np.zeros((0, 0), np.float32)], "error": [_error_text(exc)]}
        return {"chunk": batch["chunk"], "features": [X], "error": [""]}


def _error_text(exc: SemzipError) -> str:
    return f"{type(exc).__name__}\t{exc}"


class _ShardWriter(_Worker):
    def __init__(self, source: Source, folder: str, settings: dict[str, Any], model_id: str) -> None:
        super().__init__(source, settings)
        self.folder = Path(folder)
        self.model_id = model_id
        self.codec = load_codec(self.folder / CODEC_NAME)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        shard, start, stop = int(batch["shard"][0]), int(batch["start"][0]), int(batch["stop"][0])
        try:
            record = self.write(shard, start, stop)
        except SemzipError as exc:
            return {"shard": [shard], "record": [""], "error": [_error_text(exc)]}
        return {"shard": [shard], "record": [json.dumps(record)], "error": [""]}

    def write(self, shard: int, start: int, stop: int) -> dict[str, Any]:
        """Encode items [start, stop) into this shard's file (atomically) and describe it for the manifest."""
        skipped: list[list[str]] = []
        pixels = None
        if isinstance(self.source, EmbeddingSource) and self.matrix is not None:
            X = self.source.rows(self.matrix, start, stop)
            ids = self.source.ids[start:stop]
            pixels = None if self.pixels is None else self.pixels[start:stop]
        else:
            X, kept, pixels, skipped = self.embed(list(range(start, stop)))
            ids = [self.source.ids[p] for p in kept]
        record = {"index": shard, "start": start, "stop": stop, "items": len(ids), "skipped": skipped,
                  "file": None, "first_id": None, "last_id": None, "bytes": 0, "sha256": None}
        if ids:
            path = self.folder / shard_name(shard)
            write_archive(path, self.codec, X, ids=ids, model=self.model_id, embed_codec=False, pixels=pixels)
            record.update(file=path.name, first_id=ids[0], last_id=ids[-1], bytes=path.stat().st_size,
                          sha256=file_sha256(path))
        return record

