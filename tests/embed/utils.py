"""Helpers of the CLIP front-end tests: what the extra needs, the tiny CLIP config, the bundled photos."""

from __future__ import annotations

import importlib.util

import pytest

CLIP_MISSING = [name for name in ("torch", "open_clip") if importlib.util.find_spec(name) is None]


def require_clip() -> None:
    """Skip the calling test module when the CLIP extra (torch, open_clip_torch) is not installed."""
    if CLIP_MISSING:
        pytest.skip(f"needs the CLIP extra ({', '.join(CLIP_MISSING)} not installed; see docs/EMBED.md)",
                    allow_module_level=True)

TINY_CFG = {
    "embed_dim": 24,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
