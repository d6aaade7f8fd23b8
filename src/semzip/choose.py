"""Pick the codec for a collection from a bit budget alone (`semzip compress INPUT --bits B`).

A newcomer with a budget should not need to know that a per-item codec's file costs more than its
codes on a small collection, or that a collection codec cannot pay for a dictionary over a few
hundred items. Every candidate family and size whose rough rate fits is fitted on the collection (a
seeded sample of it when it is large), a real archive of the whole collection is written with it (the
codec embedded and counted, ids and headers too), and the archive with the best mean cosine to the
original vectors among those within the budget wins. Nothing is estimated: each candidate's rate is
read from the archive it wrote.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError, SemzipError
from ._validate import check_embeddings
from .codecs import fit_codec
from .container import DEFAULT_BLOCK_ITEMS, UNKNOWN_MODEL, Archive, write_archive
from .eval.metrics import cosine_to_reference

#: Items a candidate is fitted on at most (a seeded sample of larger collections).
FIT_ITEMS = 20_000
#: Sizes tried per family, largest first, until one's written archive fits the budget.
_TRIES = 3


@dataclass
class Choice:
    """The outcome of `compress_to_budget`: the winning spec and every candidate's counted figures."""

    spec: str
    bits: float
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        within = [c for c in self.candidates if c.get("within")]
        won = next(c for c in within if c["spec"] == self.spec)
        return (f"{self.spec}: the best mean cosine to the originals ({won['cosine']:.4f}) of the "
                f"{len(within)} candidates within {self.bits:g} bits per item, at {won['bits_per_item']:.1f} "
                f"counted bits per item (codec included)")


def candidate_families(n: int, d: int, bits: float) -> list[list[str]]:
    """Families worth trying at `bits` amortised bits per item for n items of width d: each a list of
    specs from the largest that may fit down, tried in turn until one's written archive fits.

    A per-item codec's file is counted in the archive, so its share (centroids, rotation) must fit too;
    this first estimate only prunes the hopeless and orders the sizes: the written archive decides.
    """
    def per_item(code_bits: float, state_floats: float) -> float:
        return code_bits + 32.0 * state_floats / n

    families = []
    if n >= 64:  # a collection codec: its own rate control counts its dictionary; lower targets leave room
        families.append([f"smic:bits={bits * f:.4g}" for f in (1.0, 0.97, 0.92, 0.85)])
    for K, opq in ((16, False), (256, False), (16, True), (256, True)):
        share = K * d + (d * d if opq else 0)
        sizes = sorted((m for m in range(1, d + 1) if d % m == 0 and per_item(m * math.log2(K), share + m * K) <= bits),
                       reverse=True)
        if sizes and n >= K and (not opq or n >= d):
            families.append([f"pq:M={M},K={K},opq={int(opq)}" for M in sizes[:_TRIES]])
    for spec, code_bits, state in (("sign", d, d), ("int8", 8 * d + 16, 0), ("f16", 16 * d, 0)):
        if per_item(code_bits, state) <= bits:
            families.append([spec])
    return families


def compress_to_budget(X: Any, bits: float, output: str | Path, *, ids: Sequence[str] | None = None,
                       model: str = UNKNOWN_MODEL, pixels: Any = None, block_items: int = DEFAULT_BLOCK_ITEMS,
                       seed: int = 0, fit_items: int = FIT_ITEMS,
                       progress: Callable[[str], None] | None = None) -> Choice:
    """Write `output` with the codec of best fidelity whose counted archive is within `bits` per item.

    Raises InputError, listing what each candidate needed, when none fits. `progress(spec)` is called
    before each candidate.

    Size: the keyword-only options are `write_archive`'s and the fit's (seed, sample size), each defaulted.
    """
    X = check_embeddings(X)
    if not bits > 0:
        raise InputError(f"--bits must be a positive number of bits per item, got {bits}")
    n, d = X.shape
    families = candidate_families(n, d, bits)
    if not families:
        raise InputError(f"no codec fits {bits:g} bits per item on {n} items of width {d}: the smallest "
                         f"per-item codec's file alone costs more; give more bits or a larger collection")
    rng = np.random.default_rng(seed)
    sample = X if n <= fit_items else X[np.sort(rng.choice(n, fit_items, replace=False))]
    target = Path(output)
    if target.is_dir():
        raise InputError(f"cannot write {str(target)!r}: it is a folder")
    choice = Choice(spec="", bits=bits)
    with tempfile.TemporaryDirectory(prefix=".semzip-choose-", dir=target.parent if str(target.parent) else ".") as tmp:
        best: tuple[float, Path] | None = None
        for family in families:
            for spec in family:
                path = Path(tmp) / f"{len(choice.candidates)}.smz"
                row = _try(spec, sample, X, path, progress, seed, ids=ids, model=model, pixels=pixels,
                           block_items=block_items)
                row["within"] = row.get("bits_per_item", math.inf) <= bits
                choice.candidates.append(row)
                if row["within"]:
                    if best is None or row["cosine"] > best[0]:
                        best, choice.spec = (row["cosine"], path), spec
                    break  # the largest size of a family that fits is its best
        if best is None:
            tried = "; ".join(f"{c['spec']}: " + (c["error"] if "error" in c else f"{c['bits_per_item']:.1f} bits")
                              for c in choice.candidates)
            raise InputError(f"no codec met {bits:g} bits per item on these {n} items ({tried})")
        with contextlib.suppress(FileNotFoundError):
            os.chmod(best[1], target.stat().st_mode & 0o777)  # keep a replaced file's permissions
        os.replace(best[1], target)
    return choice


def _try(spec: str, sample: np.ndarray, X: np.ndarray, path: Path, progress: Callable[[str], None] | None,
         seed: int, **archive: Any) -> dict[str, Any]:
    """Fit `spec` on `sample`, write all of X with it to `path`: counted bits per item and mean cosine."""
    if progress is not None:
        progress(spec)
    row: dict[str, Any] = {"spec": spec, "fitted_on": len(sample)}
    try:
        codec = fit_codec(spec, sample, seed=seed)
        write_archive(path, codec, X, **archive)
        with Archive.open(path) as arc:
            row["bits_per_item"] = arc.info()["bits_per_item"]
            row["cosine"] = float(cosine_to_reference(arc.decode(), X).mean())
    except SemzipError as exc:
        row["error"] = str(exc)
    return row
