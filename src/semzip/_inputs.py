"""Reading embedding files named on the command line: `x.npy`, `x.npz:key`, or `x.npz` with one matrix."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._errors import InputError
from ._validate import check_embeddings


def split_source(arg: str) -> tuple[Path, str | None]:
    """'file.npz:key' -> (Path('file.npz'), 'key'); other arguments name a file and no key."""
    head, sep, key = arg.rpartition(":")
    if sep and head.endswith(".npz") and key:
        return Path(head), key
    return Path(arg), None


class Embeddings(NamedTuple):
    """Embeddings read from a file, with what `semzip embed` stores beside them when present."""

    features: np.ndarray
    ids: list[str] | None
    model: str | None
    pixels: np.ndarray | None


def read_embeddings(arg: str) -> Embeddings:
    """Load float32 (n, d) embeddings, plus the `ids`, `pixels` (per row) and `model` (a string)
    stored beside them in an .npz, if any."""
    path, key = split_source(arg)
    if not path.is_file():
        raise InputError(f"no such embedding file: {str(path)!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read {str(path)!r} as .npy/.npz ({exc})") from None
    if isinstance(loaded, np.ndarray):
        if key is not None:
            raise InputError(f"{str(path)!r} is a single array; drop ':{key}'")
        return Embeddings(check_embeddings(loaded, name=str(path)), None, None, None)
    with loaded:
        matrices = [k for k in loaded.files if loaded[k].ndim == 2]
        if key is None:
            if "features" in loaded.files:
                key = "features"
            elif len(matrices) == 1:
                key = matrices[0]
            else:
                raise InputError(f"{str(path)!r} holds several arrays; name one as {path}:KEY "
                                 f"(2-D arrays: {', '.join(matrices) or 'none'})")
        if key not in loaded.files:
            raise InputError(f"{str(path)!r} has no array {key!r}; it has: {', '.join(loaded.files)}")
        X = check_embeddings(loaded[key], name=f"{path}:{key}")
        beside = {k: loaded[k] for k in ("ids", "pixels", "model") if k in loaded.files}
    ids = [str(i) for i in beside["ids"]] if beside.get("ids", np.empty(0)).shape == (len(X),) else None
    pixels = beside["pixels"] if beside.get("pixels", np.empty(0)).shape == (len(X),) else None
    model = str(beside["model"]) if beside.get("model", np.empty(1)).shape == () else None
    return Embeddings(X, ids, model, pixels)
