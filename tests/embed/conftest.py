"""Fixtures for the CLIP front-end: a tiny randomly initialised CLIP of the real architecture, saved the way
open_clip's hub repos are laid out, and real photos bundled in scikit-image's wheel."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from semzip.embed import Preprocess, build_model

from .utils import CLIP_MISSING, PHOTOS, TINY_CFG


@pytest.fixture(autouse=True)
def _one_thread():
    if CLIP_MISSING:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model():
    """Test model only: random weights, built on purpose (never a fallback for missing weights)."""
    return build_model(TINY_CFG, "tiny-test:random", seed=0)


@pytest.fixture(scope="session")
def tiny_weights_dir(tiny_model, tmp_path_factory) -> Path:
    """The tiny model saved like a hub repo: open_clip_config.json + open_clip_model.safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-weights")
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": TINY_CFG,
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic",
                           "resize_mode": "shortest"},
    }))
    state = {k: v.contiguous() for k, v in tiny_model.module.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    """scikit-image's bundled photos (in its wheel, no download); skip when it is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("real photos come from scikit-image's bundled data (pip install scikit-image)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [p for p in PHOTOS if not (folder / p).is_file()]
    if missing:
        pytest.skip(f"scikit-image lacks bundled photos {missing}")
    return folder


@pytest.fixture
def tiny_pre() -> Preprocess:
    return Preprocess(32)
