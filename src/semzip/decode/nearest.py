"""Nearest real images: what a code "looks like" without a generator.

Each item's decoded vector is the query of a search on a reference gallery's codes (an archive of
embedded images whose originals are on disk); the best hits are real pictures of what the code means.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import InputError
from ..search import Collection
from ._images import contact_sheet, item_image


def nearest_images(items: Collection, gallery: Collection, k: int = 4, *, ids: Sequence[str] | None = None,
                   gallery_images: Path | None = None, same: bool = False) -> list[dict[str, Any]]:
    """For each item (all, or `ids`), its k nearest gallery items, best first: rows of
    {"id", "nearest": [{"id", "score", "image"}]}, "image" the original's path under `gallery_images`
    or None. `same`: the gallery is the items' own collection, so an item is not its own neighbour."""
    if items.dim != gallery.dim:
        raise InputError(f"the gallery holds {gallery.dim}-d items, the archive {items.dim}-d")
    if "unknown" not in (items.model, gallery.model) and items.model != gallery.model:
        raise InputError(f"the gallery was embedded with {gallery.model}, the archive with {items.model}: not comparable")
    if not 1 <= k <= gallery.items - same:
        raise InputError(f"k must be between 1 and the gallery's {gallery.items - same} candidates, got {k}")
    names, vectors = items.vectors(ids)
    if not names:
        raise InputError("no items to look up")
    hits = gallery.search(vectors, k + same)
    rows = []
    for name, hit_ids, scores in zip(names, hits.ids, hits.scores):
        found = [(h, s) for h, s in zip(hit_ids, scores) if not (same and h == name)][:k]
        rows.append({"id": name, "nearest": [
            {"id": h, "score": round(float(s), 4), "image": _path(item_image(gallery_images, h))} for h, s in found]})
    return rows


def nearest_sheet(rows: list[dict[str, Any]], path: Path, item_images: Path | None = None, max_rows: int = 24) -> None:
    """A contact sheet of `nearest_images` rows: the item's own original when `item_images` has it
    (else an empty cell), then its nearest gallery images with their scores."""
    sheet = []
    for row in rows[:max_rows]:
        own = item_image(item_images, row["id"])
        cells = [(own, "original" if own else "(no original)")]
        cells += [(n["image"], f"{n['score']:.3f} {n['id']}") for n in row["nearest"]]
        sheet.append((row["id"], cells))
    contact_sheet(sheet, path)


def _path(p: Path | None) -> str | None:
    return str(p) if p is not None else None
