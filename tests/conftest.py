"""Shared fixtures: seeded synthetic embeddings and the real CLIP data folder (../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .utils import data_dir, unit_rows


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


@pytest.fixture
def emb() -> np.ndarray:
    return unit_rows(600, 64)
