"""Archive compaction: re-learning an archive's codec when its items have drifted from it.

Items appended to an archive are coded on the codec it was written with (for SMIC, the dictionary
learned on the first items). When later items differ, that dictionary fits them badly and costs
more bits; `compact_archive` decodes every item, fits the codec again on all of them and rewrites
the archive in the same order with the same ids, pixel counts and model id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_writer, writer_lock
from ._errors import InputError
from .codecs import fit_codec
from .container import Archive, write_archive
from .spec import Spec, parse_spec


def compact_archive(path: str | Path, spec: str | Spec | None = None, *, seed: int = 0, force: bool = False,
                    progress: bool = False) -> dict[str, Any]:
    """Refit the codec on the decoded items and rewrite the archive if that makes it smaller.

    `spec` defaults to the archive's codec spec; for a `bits=` target the dictionary size is chosen
    again (atoms=0). The rewrite is atomic and keeps item order, ids, pixel counts and model; it
    replaces the archive only when the new file is smaller, or always with `force`. Items are
    re-coded from their decoded vectors (the originals are not in the archive), so each compaction
    is one more generation of lossy coding: `cos_to_previous` reports how far decodes moved.
    """
    target = Path(path)
    with writer_lock(target):
        return _compact(target, spec, seed, force, progress)


def _compact(target: Path, spec: str | Spec | None, seed: int, force: bool, progress: bool) -> dict[str, Any]:
    with Archive.open(target) as arc:
        if not arc.codec_embedded:
            raise InputError(f"{str(target)!r} does not embed its codec; compact rewrites the codec into the "
                             "archive, so it needs an archive written without --shared")
        arc.check_sections()
        old = arc.decode(progress=progress)
        ids, pixels, model = list(arc.ids), arc.pixels, arc.model
        block_items = int(arc.head["block_items"])
        old_spec, refit_spec = arc.codec.spec, arc.codec.refit_spec()
        old_bits = 8 * target.stat().st_size
    new_spec = refit_spec if spec is None else (parse_spec(spec) if isinstance(spec, str) else spec)
    codec = fit_codec(new_spec, old, seed=seed)
    written: dict[str, Any] = {}

    def smaller(tmp: Path) -> bool:
        written["bits"] = 8 * tmp.stat().st_size
        with Archive.open(tmp) as arc:
            written["decoded"] = arc.decode()
        written["replaced"] = force or written["bits"] < old_bits
        return bool(written["replaced"])

    with atomic_writer(target, keep=smaller) as fh:  # the archive is written in place, into the temp file
        write_archive(fh, codec, old, ids=ids, model=model, pixels=pixels, block_items=block_items,
                      progress=progress)
    new_bits, new, replaced = written["bits"], written["decoded"], written["replaced"]
    cos = (old * new).sum(axis=1) / np.maximum(np.linalg.norm(old, axis=1) * np.linalg.norm(new, axis=1), 1e-12)
    return {
        "items": len(ids), "old_spec": str(old_spec), "new_spec": str(codec.spec),
        "old_bits_per_item": old_bits / len(ids), "new_bits_per_item": new_bits / len(ids),
        "replaced": replaced, "cos_to_previous": float(cos.mean()),
    }

