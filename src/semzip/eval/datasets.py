"""Evaluation datasets: what gets compressed, and the uncompressed side each metric compares against.

Two sources (schemas in docs/EVAL.md): an `.npz` of embeddings, or a folder of images in class
subfolders embedded with a CLIP model (`semzip.embed`, imported only then). Loading validates the
schema up front and names any missing or inconsistent key, so a bad file fails before any codec runs.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from .._validate import check_embeddings
from .._inputs import IMAGE_SUFFIXES
from ..embed._images import image_files

#: Image files -> L2-normalised float32 (n, d) embeddings, one row per path, in order.
#: Embeds image files: (n, d) rows in input order, or (rows, kept) where `kept` are the positions of
#: the images it could read (unreadable ones are skipped, as `semzip embed` does).
ImageEmbedder = Callable[[Sequence[Path]], "np.ndarray | tuple[np.ndarray, np.ndarray]"]
#: Class names -> one text embedding per class (prompt templates applied by the embedder).
TextEmbedder = Callable[[Sequence[str]], np.ndarray]


@dataclass
class EvalDataset:
    """Items to compress and the uncompressed references the metrics need.

    `text_features` are class text embeddings indexed by `labels` (zero-shot); `centroid_*` is an
    uncompressed labelled split whose class means classify the items (nearest centroid); `captions`
    are text embeddings paired row by row with the items (retrieval); `fit_features` is the data the
    dataset offers for training codecs without touching the items (None: no such split);
    `tag_vocab` is a vocabulary of text embeddings whose nearest words tag each item (tags@5).
    """

    name: str
    items: np.ndarray
    labels: np.ndarray | None = None
    text_features: np.ndarray | None = None
    classnames: list[str] | None = None
    centroid_features: np.ndarray | None = None
    centroid_labels: np.ndarray | None = None
    captions: np.ndarray | None = None
    pixels: np.ndarray | None = None
    fit_features: np.ndarray | None = None
    fit_source: str | None = None
    model: str | None = None
    image_paths: list[Path] | None = None
    skipped: list[str] | None = None  # images of the folder that could not be read, left out
    tag_vocab: np.ndarray | None = None

    @property
    def tasks(self) -> list[str]:
        """Task metrics this dataset supports (besides cosine and k-NN overlap, which always apply)."""
        out = []
        if self.text_features is not None:
            out.append("zero-shot")
        if self.centroid_features is not None:
            out.append("nearest-centroid")
        if self.captions is not None:
            out.append("retrieval")
        if self.tag_vocab is not None:
            out.append("tags")
        return out


def load_dataset(source: str | Path, *, text_embedder: TextEmbedder | None = None,
                 image_embedder: ImageEmbedder | None = None) -> EvalDataset:
    """An `.npz` file or an image folder (needs `image_embedder`) as an EvalDataset.

    `text_embedder` turns class names into zero-shot classifiers when the data has class names but no
    text embeddings (an image folder, or an .npz with `classnames` only).
    """
    path = Path(source)
    if path.is_dir():
        if image_embedder is None:
            raise InputError(f"{str(path)!r} is an image folder: embedding it needs a CLIP model (--model)")
        return image_folder_dataset(path, image_embedder, text_embedder)
    if not path.is_file():
        raise InputError(f"no such dataset file or folder: {str(path)!r}")
    return npz_dataset(path, text_embedder)


def npz_dataset(path: Path, text_embedder: TextEmbedder | None = None) -> EvalDataset:
    """Read an `.npz` in one of the two schemas of docs/EVAL.md (flat `image_features` or split `test_*`)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read {str(path)!r} as .npz ({exc})") from None
    if isinstance(loaded, np.ndarray):
        raise InputError(f"{str(path)!r} is a single array; an eval dataset is an .npz with named arrays")
    with loaded:
        arrays = {k: loaded[k] for k in loaded.files}
    where = str(path)
    if "test_features" in arrays:
        ds = _split_schema(arrays, where)
    elif "image_features" in arrays:
        ds = _flat_schema(arrays, where)
    else:
        raise InputError(f"{where}: not an eval dataset: expected 'image_features' (flat schema) or "
                         f"'test_features' (split schema); it has: {', '.join(sorted(arrays)) or 'nothing'}")
    ds.name = path.stem
    if "model" in arrays and arrays["model"].ndim == 0:
        ds.model = str(arrays["model"])
    return _with_text_features(ds, text_embedder)


def _split_schema(a: dict[str, np.ndarray], where: str) -> EvalDataset:
    items = check_embeddings(a["test_features"], name=f"{where}:test_features")
    labels = _labels(a, "test_labels", len(items), where)
    ds = EvalDataset("", items, labels=labels, pixels=_pixels(a, "test_pixels", len(items), where))
    if "train_features" in a:
        ds.centroid_features = check_embeddings(a["train_features"], dim=items.shape[1], name=f"{where}:train_features")
        ds.centroid_labels = _labels(a, "train_labels", len(ds.centroid_features), where)
        missing = np.setdiff1d(labels, ds.centroid_labels)
        if len(missing):
            raise InputError(f"{where}: test_labels has classes absent from train_labels (e.g. {missing[0]}); "
                             f"nearest-centroid needs a training example of every test class")
    fit = [k for k in ("train_features", "val_features") if k in a]
    if fit:
        ds.fit_features = np.concatenate([check_embeddings(a[k], dim=items.shape[1], name=f"{where}:{k}") for k in fit])
        ds.fit_source = " + ".join(f"{k} ({len(a[k])})" for k in fit)
    _class_side(ds, a, where, "test_labels")
    return ds


def _flat_schema(a: dict[str, np.ndarray], where: str) -> EvalDataset:
    items = check_embeddings(a["image_features"], name=f"{where}:image_features")
    ds = EvalDataset("", items, pixels=_pixels(a, "pixels", len(items), where))
    if "labels" in a:
        ds.labels = _labels(a, "labels", len(items), where)
        _class_side(ds, a, where, "labels")
        if ds.text_features is None and ds.classnames is None:
            raise InputError(f"{where}: has 'labels' but neither 'text_features' nor 'classnames': "
                             f"zero-shot needs one of them")
    elif "text_features" in a:
        texts = check_embeddings(a["text_features"], dim=items.shape[1], name=f"{where}:text_features")
        if len(texts) != len(items):
            raise InputError(f"{where}: 'text_features' has {len(texts)} rows and 'image_features' {len(items)}: "
                             f"paired retrieval needs one caption per image; zero-shot needs 'labels'")
        ds.captions = texts
    else:
        raise InputError(f"{where}: 'image_features' needs 'labels' (zero-shot) or paired 'text_features' "
                         f"(retrieval); neither is present")
    return ds


def _class_side(ds: EvalDataset, a: dict[str, np.ndarray], where: str, label_key: str) -> None:
    """Class names and class text embeddings, checked against the labels (set by the caller)."""
    labels = np.asarray(ds.labels)
    if "classnames" in a:
        names = a["classnames"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise InputError(f"{where}: 'classnames' must be a 1-D array of strings, got {names.dtype} {names.shape}")
        ds.classnames = [str(c) for c in names]
    if "text_features" in a:
        ds.text_features = check_embeddings(a["text_features"], dim=ds.items.shape[1], name=f"{where}:text_features")
    classes = len(ds.text_features) if ds.text_features is not None else (
        len(ds.classnames) if ds.classnames is not None else None)
    if classes is not None and (labels.min() < 0 or labels.max() >= classes):
        raise InputError(f"{where}: '{label_key}' must index the {classes} classes "
                         f"(0..{classes - 1}), found {labels.min()}..{labels.max()}")
    if ds.text_features is not None and ds.classnames is not None and len(ds.classnames) != len(ds.text_features):
        raise InputError(f"{where}: {len(ds.classnames)} classnames for {len(ds.text_features)} text_features")


def _labels(a: dict[str, np.ndarray], key: str, n: int, where: str) -> np.ndarray:
    if key not in a:
        raise InputError(f"{where}: missing {key!r} (one integer class label per row)")
    y = a[key]
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{where}: {key!r} must be {n} integer labels, got shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def _pixels(a: dict[str, np.ndarray], key: str, n: int, where: str) -> np.ndarray | None:
    if key not in a:
        return None
    p = a[key]
    if p.shape != (n,) or not np.issubdtype(p.dtype, np.integer) or (p <= 0).any():
        raise InputError(f"{where}: {key!r} must be {n} positive integer pixel counts, got {p.dtype} {p.shape}")
    return p.astype(np.uint64)


def _with_text_features(ds: EvalDataset, text_embedder: TextEmbedder | None) -> EvalDataset:
    """Embed class names for zero-shot when the data has names but no text embeddings and an embedder is given."""
    if ds.text_features is None and ds.classnames is not None and text_embedder is not None:
        texts = check_embeddings(text_embedder(ds.classnames), dim=ds.items.shape[1], name="class-name text embeddings")
        if len(texts) != len(ds.classnames):
            raise InputError(f"text embedder returned {len(texts)} rows for {len(ds.classnames)} class names")
        ds.text_features = texts
    return ds


def labelled_images(folder: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """(image paths, labels, class names) of a folder with one subfolder per class (sorted by name).

    Files directly in `folder`, hidden entries and files without an image suffix are ignored.
    """
    if not folder.is_dir():
        raise InputError(f"no such image folder: {str(folder)!r}")
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for sub in classes:
        found = image_files(sub)
        if found:
            labels += [len(names)] * len(found)
            names.append(sub.name.replace("_", " "))
            paths += found
    if not paths:
        raise InputError(f"{str(folder)!r} has no class subfolders with images "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))}); expected FOLDER/CLASS/IMAGE")
    return paths, np.asarray(labels, dtype=np.int64), names


def pixel_counts(paths: Sequence[Path]) -> np.ndarray:
    """Width x height of each image, read from its header."""
    from PIL import Image, UnidentifiedImageError

    out = np.zeros(len(paths), dtype=np.uint64)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                out[i] = img.width * img.height
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"{p}: not a readable image ({exc})") from None
    return out


def embed_readable(embedder: ImageEmbedder, paths: Sequence[Path], what: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 rows, positions of the images they belong to): the embedder's result in either form."""
    out = embedder(paths)
    rows, kept = out if isinstance(out, tuple) else (out, np.arange(len(paths)))
    features = check_embeddings(rows, name=what)
    if len(features) != len(kept):
        raise InputError(f"image embedder returned {len(features)} rows for {len(kept)} images")
    return features, np.asarray(kept, dtype=np.int64)


def image_folder_dataset(folder: Path, image_embedder: ImageEmbedder,
                         text_embedder: TextEmbedder | None = None) -> EvalDataset:
    """Embed a class-subfolder image collection: the items are the images, labels their folders.

    With `text_embedder` the class names (folder names, '_' read as space) become zero-shot classifiers.
    Pixel counts come from the image headers, so bits per pixel are reported.
    """
    paths, labels, names = labelled_images(folder)
    features, kept = embed_readable(image_embedder, paths, f"embeddings of {folder}")
    skipped = sorted(set(map(str, paths)) - {str(paths[i]) for i in kept})
    paths, labels = [paths[i] for i in kept], labels[kept]
    ds = EvalDataset(folder.name, features, labels=labels, classnames=names, pixels=pixel_counts(paths),
                     image_paths=paths, skipped=skipped)
    return _with_text_features(ds, text_embedder)


def clip_embedders(model: str, weights: str | None = None, device: str = "cpu",
                   templates: str = "openai") -> tuple[ImageEmbedder, TextEmbedder]:
    """Image and class-name embedders backed by `semzip.embed` (CLIP); the model loads on first use, once."""
    try:
        from .. import embed
    except ImportError as exc:
        raise InputError(f"embedding images or class names needs the CLIP front-end semzip.embed ({exc})") from None
    loaded: list[Any] = []

    def clip() -> Any:
        if not loaded:
            loaded.append(embed.load_model(model, weights=weights, device=device))
        return loaded[0]

    def images(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
        found = embed.embed_paths(list(paths), clip(), ids=[str(i) for i in range(len(paths))], progress=False)
        return found.features, np.array([int(i) for i in found.ids], dtype=np.int64)

    def texts(names: Sequence[str]) -> np.ndarray:
        return embed.class_embeddings(list(names), templates, clip())

    return images, texts


#: Codec training pool of the project's benchmarks (no image in common with their test sets).
REFERENCE_POOL = (("imagenet_fewshot", "shots4_features"), ("food101", "train_features"),
                  ("oxford_flowers", "val_features"), ("oxford_pets", "val_features"), ("dtd", "val_features"))


def load_reference_pool(folder: Path) -> tuple[np.ndarray, str]:
    """(float32 vectors, description) of REFERENCE_POOL read from a clip-vit-b-32/ folder."""
    parts = []
    for name, key in REFERENCE_POOL:
        path = Path(folder) / f"{name}.npz"
        try:
            with np.load(path) as data:
                parts.append(data[key].astype(np.float32))
        except (OSError, KeyError) as exc:
            raise InputError(f"cannot read the reference pool from {str(path)!r} ({exc})") from None
    description = " + ".join(f"{n}:{k} ({len(p)})" for (n, k), p in zip(REFERENCE_POOL, parts))
    return np.concatenate(parts), description
