"""The k best of each row of scores with a defined tie order: ties at the cut go to the earlier item.

`np.argpartition` leaves which of several equal scores enter the top k to its algorithm (and to the
SIMD sort numpy picks for the CPU), so two machines could keep different items; search results and
the recall of metrics would then depend on the machine. Here the cut is the one a stable sort of
exact scores makes (by source, then position), and rows without a tie at the cut cost one
argpartition.
"""

from __future__ import annotations

import numpy as np


def top_indices(scores: np.ndarray, keep: int, pos: np.ndarray | None = None, src: np.ndarray | None = None) -> np.ndarray:
    """Indices (rows, keep) of each row's `keep` best scores, in no particular order. Ties at the
    cut go to the earlier item: lower `src` (e.g. archive), then lower `pos` (e.g. position; by
    default the column)."""
    sel = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
    kept = np.take_along_axis(scores, sel, axis=1)
    kth = kept.min(axis=1, keepdims=True)
    left_out = (scores == kth).sum(axis=1) > (kept == kth).sum(axis=1)
    columns = np.arange(scores.shape[1])
    for i in np.flatnonzero(left_out & np.isfinite(kth[:, 0])):
        keys = [columns if pos is None else pos[i], *(() if src is None else (src[i],)), -scores[i]]
        sel[i] = np.lexsort(keys)[:keep]  # best first, then the earlier source, then the earlier position
    return sel
