"""Where the benchmarks find the real CLIP embeddings (never shipped with semzip)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clip_data(given: str | Path | None = None) -> Path:
    """The clip-vit-b-32/ folder under --data, else $SEMZIP_DATA, else ../shared/data beside the repo;
    exits with a clear message when none holds it."""
    env = os.environ.get("SEMZIP_DATA")
    for candidate in (given, env, ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "clip-vit-b-32").is_dir():
            return Path(candidate) / "clip-vit-b-32"
    sys.exit("real CLIP data not found: pass --data or set SEMZIP_DATA to the folder holding clip-vit-b-32/")
