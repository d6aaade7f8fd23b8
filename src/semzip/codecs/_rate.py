"""Rate control: the settings a codec leaves free, chosen at fit so that what it writes meets a target.

- `bisect`: the one bisection on a monotone predicate (the transform stage's step scale, the
  stopping threshold below).
- `stopping_threshold`: for codes that grow item by item in steps (a pursuit: one atom more per
  step), the per-item stopping cosine that meets a mean-cosine target or a bits budget counted by
  the caller (an archive's bytes, its headers from `_layout.overhead_bytes`).
- `dictionary_sizes`: the dictionary sizes a collection codec tries for a bits budget, from an
  estimate of the archive it would write; the counted bytes then decide among them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._layout import overhead_bytes

#: Halvings of the stopping threshold's interval [0, 1].
_THRESHOLD_STEPS = 14


def bisect(above: Callable[[float], bool], lo: float, hi: float, steps: int) -> tuple[float, float]:
    """(lo, hi) after `steps` halvings of [lo, hi] towards where a monotone predicate switches from
    False (below the switch) to True (at and above it): each midpoint replaces hi where `above` holds
    there, else lo."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if above(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


def stop_counts(cos: np.ndarray, threshold: float) -> np.ndarray:
    """(n,) int32 steps each item keeps: up to its first step whose cosine (n, steps) reaches
    `threshold`, all of them when none does."""
    reached = cos >= threshold
    return np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, cos.shape[1]).astype(np.int32)


def reached_cos(cos: np.ndarray, threshold: float) -> np.ndarray:
    """(n,) cosine of each item after the steps it keeps at `threshold`."""
    return cos[np.arange(len(cos)), stop_counts(cos, threshold) - 1]


def stopping_threshold(cos: np.ndarray, *, target_cos: float = 0.0,
                       fits: Callable[[float], bool] | None = None) -> float | None:
    """The stopping threshold (an item stops at its first step whose cosine reaches it; 1.0: every
    step) meeting the target, or None when none does.

    `target_cos`: the smallest threshold whose mean cosine reaches it. `fits(t)`: whether the codes
    stopped at threshold t fit the caller's bits budget (counted; fewer steps never cost more), and
    the largest threshold that fits is chosen. Neither: 1.0."""
    if target_cos:
        if cos[:, -1].mean() < target_cos:
            return None
        return bisect(lambda t: bool(reached_cos(cos, t).mean() >= target_cos), 0.0, 1.0, _THRESHOLD_STEPS)[1]
    if fits is None:
        return 1.0
    if not fits(0.0):
        return None
    if fits(1.0):
        return 1.0
    return bisect(lambda t: not fits(t), 0.0, 1.0, _THRESHOLD_STEPS)[0]


def amortised_bits(n: int, d: int, atoms: int, value_bits: int, tables: int, item_bits: float) -> float:
    """Estimated archive bits per item of `n` items sharing a dictionary of `atoms` atoms of `d`
    values at `value_bits` each (with `tables` 16-bit frequency rows per atom), each item's code
    costing `item_bits`: the estimate `dictionary_sizes` ranks sizes by."""
    overhead = 8 * (overhead_bytes(n) + 4 * d + 1024)
    return (atoms * (d * value_bits + 16 * tables) + overhead) / n + item_bits


def dictionary_sizes(n: int, budget: float, estimate: Callable[[int], float], spread: int, keep: int) -> list[int]:
    """Dictionary sizes to try for a budget of `budget` bits per item, largest first: sizes on a
    2**(1/8) grid up to n whose `estimate(atoms)` (bits per item) fits it, taken `spread` grid steps
    apart, the first `keep` of them (the next smaller ones are the fallback when the counted size
    misses); [2] when none fits."""
    sizes = sorted({int(round(2 ** (e / 8))) for e in range(8, 129)}, reverse=True)  # 2 .. 65536
    fits = [a for a in sizes if a <= n and estimate(a) <= budget]
    return fits[::spread][:keep] or [2]
