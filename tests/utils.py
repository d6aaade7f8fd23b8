"""Test helpers (imported by tests; fixtures stay in conftest.py): seeded synthetic embeddings and
where the real CLIP data is."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    """SEMZIP_DATA, else ../shared/data beside the repository; None when absent."""
    env = os.environ.get("SEMZIP_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if (candidate / "clip-vit-b-32").is_dir():
            return candidate
    return None


def unit_rows(n: int, d: int, seed: int = 0, clusters: int = 8) -> np.ndarray:
    """Clustered unit vectors, a cheap stand-in for CLIP embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d))
    X = centers[rng.integers(clusters, size=n)] + 0.5 * rng.standard_normal((n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
