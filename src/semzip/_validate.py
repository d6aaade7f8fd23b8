"""Validation of embedding matrices at public entry points."""

from __future__ import annotations

import numpy as np

from ._errors import InputError

MAX_DIM = 1 << 16  # widest vector an archive or codec file may declare (CLIP widths are 512..1664)
MAX_ITEMS = 1 << 40  # most items an archive or collection may declare


def check_embeddings(X: object, *, dim: int | None = None, name: str = "embeddings") -> np.ndarray:
    """Return `X` as a C-contiguous float32 (n, d) array, or raise InputError saying what is wrong.

    Checks: numeric 2-D array, at least one row and column, every value finite, and width `dim`
    when given (the width a codec was fitted on).
    """
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: not an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array (items, dim), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: empty input (0 items)")
    if arr.shape[1] == 0:
        raise InputError(f"{name}: zero-width vectors")
    if arr.shape[1] > MAX_DIM:
        raise InputError(f"{name}: width {arr.shape[1]} is beyond the {MAX_DIM} semzip stores")
    if dim is not None and arr.shape[1] != dim:
        raise InputError(f"{name}: width {arr.shape[1]} does not match the codec's width {dim}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise InputError(
            f"{name}: non-finite value {arr[bad[0], bad[1]]} at item {bad[0]}, dimension {bad[1]}"
            + (" (overflow converting to float32)" if np.isfinite(arr[bad[0], bad[1]]) else "")
        )
    return out


def l2_normalize(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0).astype(X.dtype)
