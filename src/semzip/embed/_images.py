"""Finding image files, decoding them to upright RGB, and the model's own preprocessing (Pillow + numpy).

The preprocessing is open_clip's evaluation transform written without torchvision: resize the shortest
side to the model's input size (or squash to a square, for SigLIP-style configs) with the model's
filter, centre crop, scale to [0, 1], normalise with the model's mean and std. Sizes and crop offsets
are computed as torchvision's `Resize(int)` and `CenterCrop` compute them. Before that, each file is
decoded the way torchvision's folder loaders do (first frame, `convert("RGB")`, so alpha is dropped),
after applying its EXIF orientation, and 16-bit or float images are scaled to 8 bits.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._errors import InputError
from .._inputs import IMAGE_SUFFIXES
from ._load import Preprocess

if TYPE_CHECKING:
    from PIL import Image



@functools.cache
def register_plugins() -> tuple[str, ...]:
    """Enable the optional HEIC/AVIF Pillow plugins that are installed; returns their names."""
    found = []
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        found.append("pillow_heif")
    except ImportError:
        pass
    try:
        import pillow_avif  # noqa: F401 (registers itself; Pillow >= 11.2 also reads AVIF natively)

        found.append("pillow_avif")
    except ImportError:
        pass
    return tuple(found)


def decode_image(data: bytes) -> Image.Image:
    """Bytes of an image file -> upright 8-bit RGB PIL image (first frame). Raises on anything unreadable."""
    from PIL import Image, ImageOps

    register_plugins()
    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)
        img = ImageOps.exif_transpose(opened)
        img.load()
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64) / 257.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        scale = 255.0 if 0.0 <= arr.min() and arr.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def to_pixels(img: Image.Image, pre: Preprocess) -> np.ndarray:
    """An RGB PIL image -> float32 (3, S, S) model input."""
    from PIL import Image

    size = pre.image_size
    resample = Image.Resampling.BICUBIC if pre.interpolation == "bicubic" else Image.Resampling.BILINEAR
    width, height = img.size
    if pre.resize_mode == "squash":
        if (width, height) != (size, size):
            img = img.resize((size, size), resample)
    else:
        if width <= height:
            new_w, new_h = size, int(size * height / width)
        else:
            new_w, new_h = int(size * width / height), size
        if (new_w, new_h) != (width, height):
            img = img.resize((new_w, new_h), resample)
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
    mean = np.asarray(pre.mean, dtype=np.float32)
    inv_std = np.float32(1) / np.asarray(pre.std, dtype=np.float32)
    return np.ascontiguousarray(((arr - mean) * inv_std).transpose(2, 0, 1))


def collect_images(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """Files and folders named by the user -> (image paths, ids).

    A folder contributes every file below it with an image suffix (hidden entries skipped), sorted. Ids
    are paths relative to the folder when it is the only input, else the path as given joined with the
    relative path; files named directly keep the path as given. Duplicate ids are an error.
    """
    if not inputs:
        raise InputError("no images given")
    paths: list[Path] = []
    ids: list[str] = []
    single_folder = len(inputs) == 1 and Path(inputs[0]).is_dir()
    for given in inputs:
        root = Path(given)
        if root.is_dir():
            found = image_files(root)
            if not found:
                raise InputError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {str(root)!r}")
            for path in found:
                rel = path.relative_to(root).as_posix()
                paths.append(path)
                ids.append(rel if single_folder else f"{root.as_posix().rstrip('/')}/{rel}")
        elif root.is_file():
            paths.append(root)
            ids.append(root.as_posix())
        else:
            raise InputError(f"no such file or folder: {str(root)!r}")
    seen: set[str] = set()
    for ident in ids:
        if ident in seen:
            raise InputError(f"two inputs have the same id {ident!r}")
        seen.add(ident)
    return paths, ids


def image_files(root: Path) -> list[Path]:
    """Files with an image suffix anywhere below `root`, hidden files and folders skipped, sorted."""
    return sorted(_walk(root))


def _walk(root: Path) -> Iterable[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield Path(folder) / name
