"""The documented pip path, end to end, in a clean venv with semzip installed from its wheel
(`make test-wheel`): `pip install 'semzip[clip]'` then `pip install --no-deps open_clip_torch`.

Not collected by pytest: it runs the installed `semzip` command, as a user would, on real photos made
here and a tiny randomly initialised CLIP of the real architecture saved as a local weights folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TINY_CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def semzip(*args: str) -> str:
    exe = Path(sys.executable).with_name("semzip")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"semzip {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def main() -> None:
    from PIL import Image
    from safetensors.torch import save_file

    from semzip.embed import build_model

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        weights = t / "weights"
        weights.mkdir()
        model = build_model(TINY_CFG, "tiny:random", seed=0)
        (weights / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
        save_file({k: v.contiguous() for k, v in model.module.state_dict().items()},
                  str(weights / "open_clip_model.safetensors"))
        photos = t / "photos"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
        semzip("embed", str(photos), "--weights", str(weights), "-o", str(t / "e.npz"), "--no-cache")
        with np.load(t / "e.npz") as f:
            assert f["features"].shape == (6, 24) and str(f["model"]).startswith("custom:sha256-"), f["model"]
        semzip("compress", str(t / "e.npz"), "--codec", "f16", "-o", str(t / "a.smz"))
        hits = json.loads(semzip("search", str(t / "a.smz"), "--text", "a photo", "--weights", str(weights),
                                 "-k", "3", "--json"))
        assert len(hits[0]["hits"]) == 3, hits
    print("wheel smoke test: embed, compress and text search work from a clean install")


if __name__ == "__main__":
    main()
