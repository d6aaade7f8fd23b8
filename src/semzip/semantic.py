"""Semantic arithmetic on CLIP embeddings, and SMIC dictionary atoms read as text concepts.

CLIP's image space is close to linear in meaning (SMIC, Bachard & Maugey): adding a share of
one image's embedding to another's adds its content, subtracting removes it. The same property
lets a learned dictionary be read: each atom is a direction added to the collection mean, and the
text concepts nearest that direction say what it adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import InputError
from ._validate import check_embeddings, l2_normalize

__all__ = ["atom_concepts", "semantic_add", "semantic_subtract"]


def _rows(x: Any, name: str, dim: int | None = None) -> tuple[np.ndarray, bool]:
    arr = np.asarray(x)
    single = arr.ndim == 1
    return check_embeddings(arr[None, :] if single else arr, dim=dim, name=name), single


def _combine(x1: Any, x2: Any, alpha: float) -> np.ndarray:
    if not np.isfinite(alpha):
        raise InputError(f"alpha must be a finite number, got {alpha!r}")
    a, single_a = _rows(x1, "x1")
    b, single_b = _rows(x2, "x2", dim=a.shape[1])
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise InputError(f"x1 has {len(a)} rows and x2 {len(b)}: give equal counts or one row to broadcast")
    out = l2_normalize(l2_normalize(a) + np.float32(alpha) * l2_normalize(b))
    if (np.linalg.norm(out, axis=1) == 0).any():
        raise InputError("x1 + alpha * x2 is the zero vector for some rows; it has no direction")
    return out[0] if single_a and single_b else out


def semantic_add(x1: Any, x2: Any, alpha: float = 1.0) -> np.ndarray:
    """Unit vector(s) along x1 + alpha * x2 (inputs normalised first): x1 with x2's content added.

    Takes (d,) or (n, d) arrays; one row broadcasts against many. Returns float32.
    """
    return _combine(x1, x2, alpha)


def semantic_subtract(x1: Any, x2: Any, alpha: float = 1.0) -> np.ndarray:
    """Unit vector(s) along x1 - alpha * x2 (inputs normalised first): x1 with x2's content removed."""
    return _combine(x1, x2, -alpha)


def atom_concepts(codec: Any, vocab: Any, names: Sequence[str], top: int = 5) -> list[dict[str, Any]]:
    """For each atom of a fitted SMIC codec, the `top` vocabulary concepts closest to it.

    Atoms are directions added to the image mean, so they are compared with the vocabulary's text
    embeddings minus the vocabulary mean: cos(atom, t - mean(t)). Returns one dict per atom with
    its index, its share of items (from the learned first-atom counts) and [(name, cosine), ...].
    """
    from .codecs.smic import SMICCodec

    if not isinstance(codec, SMICCodec):
        raise InputError(f"atom concepts need a smic codec, got {codec.spec}")
    codec.check_is_fitted()
    T = check_embeddings(vocab, dim=codec.n_features_in_, name="vocabulary embeddings")
    names = [str(n) for n in names]
    if len(names) != len(T):
        raise InputError(f"{len(names)} names for {len(T)} vocabulary embeddings")
    if len(T) < 2:
        raise InputError("the vocabulary needs at least 2 entries (concepts are read against its mean)")
    if not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a positive integer, got {top!r}")
    centred = l2_normalize(l2_normalize(T) - l2_normalize(T).mean(axis=0))
    scores = codec.atoms_f32_ @ centred.T
    counts = codec.tables_["first"].counts[0].astype(np.float64) - 1  # stored as 2 * count + 1
    usage = np.maximum(counts, 0) / max(counts.clip(min=0).sum(), 1.0)
    top = min(top, len(T))
    order = np.argsort(-scores, axis=1)[:, :top]
    return [
        {"atom": j, "usage": float(usage[j]),
         "concepts": [(names[t], float(scores[j, t])) for t in order[j]]}
        for j in range(len(scores))
    ]
