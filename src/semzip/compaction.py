"""Archive compaction: re-learning an archive's codec when its items have drifted from it.

Items appended to an archive are coded on the codec it was written with (for SMIC, the dictionary
learned on the first items). When later items differ, that dictionary fits them badly and costs
more bits; `compact_archive` decodes every item, fits the codec again on all of them and rewrites
the archive in the same order with the same ids, pixel counts and model id.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import writer_lock
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
        old_spec = arc.codec.spec
        old_bits = 8 * target.stat().st_size
    new_spec = _refit_spec(old_spec) if spec is None else (parse_spec(spec) if isinstance(spec, str) else spec)
    codec = fit_codec(new_spec, old, seed=seed)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)  # a dead one is cleaned
    try:
        with os.fdopen(fd, "wb") as fh:  # written in place, not through a second temp the cleaner cannot see
            write_archive(fh, codec, old, ids=ids, model=model, pixels=pixels, block_items=block_items,
                          progress=progress)
            fh.flush()
            os.fsync(fh.fileno())
        new_bits = 8 * Path(tmp).stat().st_size
        with Archive.open(tmp) as arc:
            new = arc.decode()
        replaced = force or new_bits < old_bits
        if replaced:
            os.chmod(tmp, target.stat().st_mode & 0o777)  # the archive keeps its permissions
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    cos = (old * new).sum(axis=1) / np.maximum(np.linalg.norm(old, axis=1) * np.linalg.norm(new, axis=1), 1e-12)
    return {
        "items": len(ids), "old_spec": str(old_spec), "new_spec": str(codec.spec),
        "old_bits_per_item": old_bits / len(ids), "new_bits_per_item": new_bits / len(ids),
        "replaced": replaced, "cos_to_previous": float(cos.mean()),
    }


def _refit_spec(spec: Spec) -> Spec:
    """The archive's spec, with a bits= target free to choose its dictionary size again."""
    params = dict(spec.params)
    if spec.name == "smic" and params.get("bits"):
        params["atoms"] = 0
    return replace(spec, params=tuple(params.items()))
