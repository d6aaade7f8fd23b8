"""Shared fixtures: seeded synthetic embeddings and the real CLIP data folder (../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    """SEMZIP_DATA, else ../shared/data beside the repository; None when absent."""
    env = os.environ.get("SEMZIP_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if (candidate / "clip-vit-b-32").is_dir():
            return candidate
    return None


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """One faiss/BLAS thread: spinning OpenMP threads slow a busy 2-core machine by 100x."""
    from semzip._threads import limited_threads

    with limited_threads(1):
        yield


@pytest.fixture
def shared_data() -> Path:
    """The real CLIP embeddings folder; tests using it skip with a reason when it is absent."""
    found = data_dir()
    if found is None:
        pytest.skip("real CLIP data not found: set SEMZIP_DATA or place shared/data beside the repo")
    return found


def unit_rows(n: int, d: int, seed: int = 0, clusters: int = 8) -> np.ndarray:
    """Clustered unit vectors, a cheap stand-in for CLIP embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d))
    X = centers[rng.integers(clusters, size=n)] + 0.5 * rng.standard_normal((n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def emb() -> np.ndarray:
    return unit_rows(600, 64)
