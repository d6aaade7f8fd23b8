"""A persistent embedding cache: one SQLite file, rows keyed by (SHA-256 of the image bytes, model key).

The model key names the model, a hash of its weights file and its preprocessing, so a cache shared by
several models (or a model whose weights changed) never serves an embedding computed by another.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .._errors import InputError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    digest TEXT NOT NULL,
    model TEXT NOT NULL,
    vector BLOB NOT NULL,
    pixels INTEGER NOT NULL,
    PRIMARY KEY (digest, model)
)
"""


def default_cache_path() -> Path:
    """$SEMZIP_CACHE, else $XDG_CACHE_HOME/semzip/embeddings.sqlite, else ~/.cache/semzip/embeddings.sqlite."""
    if os.environ.get("SEMZIP_CACHE"):
        return Path(os.environ["SEMZIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "semzip" / "embeddings.sqlite"


class EmbeddingCache:
    """Float32 embeddings and pixel counts of image files already embedded, by content hash and model key."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot use embedding cache {str(self.path)!r}: {exc}") from None

    def digests(self, model: str) -> frozenset[str]:
        """Content hashes cached for `model`."""
        rows = self._db.execute("SELECT digest FROM embeddings WHERE model = ?", (model,))
        return frozenset(r[0] for r in rows)

    def get(self, model: str, digests: Iterable[str], dim: int) -> dict[str, tuple[np.ndarray, int]]:
        """{digest: (vector, pixels)} for the cached ones among `digests`."""
        out: dict[str, tuple[np.ndarray, int]] = {}
        wanted = list(dict.fromkeys(digests))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT digest, vector, pixels FROM embeddings WHERE model = ? AND digest IN ({marks})",
                (model, *chunk))
            for digest, blob, pixels in rows:
                vec = np.frombuffer(blob, dtype="<f4")
                if vec.shape == (dim,):
                    out[digest] = (vec, int(pixels))
        return out

    def put(self, model: str, rows: Iterable[tuple[str, np.ndarray, int]]) -> None:
        """Store (digest, vector, pixels) rows for `model` (one transaction)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings (digest, model, vector, pixels) VALUES (?, ?, ?, ?)",
                [(d, model, np.asarray(v, dtype="<f4").tobytes(), int(p)) for d, v, p in rows])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
