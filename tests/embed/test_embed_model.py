"""Model loading: semzip's towers against open_clip's own classes, weight formats, the offline error path."""

from __future__ import annotations

from .utils import require_clip

require_clip()

import contextlib
import copy
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from .utils import TINY_CFG

from semzip.embed import ModelError, load_model
from semzip.embed._backend import model_config, open_clip_module, pretrained_config, split_model_name
from semzip.embed._clip import CLIP, unsupported_reason

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def open_clip_model_module(monkeypatch):
    """open_clip's real model.py. Its utils.py imports torchvision only for FrozenBatchNorm2d (ResNet
    freezing); a stand-in for that one name is put in sys.modules for this test and removed after.
    model.py also imports transformers, whose import probes torchvision with find_spec, which fails on
    a stand-in without a spec: transformers is imported first (when installed), so it sees the real one."""
    with contextlib.suppress(ImportError):
        import transformers  # noqa: F401
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (torch.nn.Module,), {})
    tv.ops, ops.misc = ops, misc
    for name, mod in (("torchvision", tv), ("torchvision.ops", ops), ("torchvision.ops.misc", misc)):
        monkeypatch.setitem(sys.modules, name, mod)
    before = set(sys.modules)
    try:
        yield open_clip_module("model")
    finally:
        for name in set(sys.modules) - before:
            if name.startswith("_semzip_open_clip."):
                del sys.modules[name]


VARIANTS = {
    "openai-quickgelu": {},
    "gelu": {"quick_gelu": False},
    "avg-pool-ln-after": {"vision_cfg": {"pool_type": "avg", "final_ln_after_pool": True}},
    "text-proj-bias": {"text_cfg": {"proj_bias": True}},
    "no-ln-pre": {"vision_cfg": {"no_ln_pre": True}, "init_logit_bias": -10.0},
}


def _variant(name: str) -> dict:
    cfg = copy.deepcopy(TINY_CFG)
    for key, value in VARIANTS[name].items():
        if isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_towers_match_open_clip(variant, open_clip_model_module):
    cfg = _variant(variant)
    torch.manual_seed(1)
    ours = CLIP(cfg).eval()
    m = open_clip_model_module
    ref = m.CLIP(cfg["embed_dim"], m.CLIPVisionCfg(**cfg["vision_cfg"]), m.CLIPTextCfg(**cfg["text_cfg"]),
                 quick_gelu=cfg.get("quick_gelu", False), init_logit_bias=cfg.get("init_logit_bias")).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # same parameter names and shapes
    images = torch.randn(3, 3, 32, 32)
    tokens = open_clip_module("tokenizer").SimpleTokenizer()(["a photo of a cat.", "dog", ""])
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(images), ref.encode_image(images), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(ours.encode_text(tokens), ref.encode_text(tokens), atol=2e-5, rtol=1e-4)


def test_real_vit_b_32_config_builds_the_published_size():
    """The real ViT-B-32 config, built without allocating memory: 151,277,313 parameters as published."""
    cfg = model_config("ViT-B-32")
    assert unsupported_reason(cfg) is None
    with torch.device("meta"):
        model = CLIP(cfg)
    assert sum(p.numel() for p in model.parameters()) == 151_277_313
    assert pretrained_config("ViT-B-32", "openai")["quick_gelu"] is True


@pytest.mark.parametrize("arch", ["ViT-B-16", "ViT-L-14-336", "ViT-H-14", "ViT-bigG-14"])
def test_larger_vit_configs_are_supported(arch):
    assert unsupported_reason(model_config(arch)) is None


def test_timm_configs_are_left_to_open_clip(monkeypatch, tiny_weights_dir):
    assert unsupported_reason(model_config("ViT-B-16-SigLIP")) is not None
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as when torchvision/timm are missing
    with pytest.raises(ModelError, match="ViT-B-16-SigLIP needs the full open_clip package"):
        load_model("ViT-B-16-SigLIP:webli", weights=tiny_weights_dir / "open_clip_model.safetensors")


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-32:", ":openai", "a:b:c"])
def test_model_name_needs_arch_and_tag(name):
    with pytest.raises(ModelError, match="ARCH:TAG"):
        split_model_name(name)


def test_unknown_arch_and_tag_are_named():
    with pytest.raises(ModelError, match="unknown CLIP architecture 'ViT-Q-99'"):
        load_model("ViT-Q-99:openai")
    with pytest.raises(ModelError, match="no pretrained weights ViT-B-32:nonesuch.*openai"):
        load_model("ViT-B-32:nonesuch")


def _check_loaded(model, tiny_model):
    images = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(model.encode_images(images), tiny_model.encode_images(images), atol=1e-6)
    np.testing.assert_allclose(model.encode_texts(["a cat"]), tiny_model.encode_texts(["a cat"]), atol=1e-6)


def test_load_from_hub_style_folder(tiny_weights_dir, tiny_model):
    model = load_model("ViT-B-32:tiny", weights=tiny_weights_dir)
    assert model.name == f"custom:sha256-{model.fingerprint}" and model.embed_dim == 24  # not ViT-B-32's config
    assert model.preprocess.image_size == 32 and model.preprocess.mean == (0.5, 0.5, 0.5)
    _check_loaded(model, tiny_model)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("fmt", ["bin", "pt-training-checkpoint", "torchscript"])
def test_load_other_weight_formats(fmt, tiny_weights_dir, tiny_model, tmp_path):
    (tmp_path / "open_clip_config.json").write_text((tiny_weights_dir / "open_clip_config.json").read_text())
    state = tiny_model.module.state_dict()
    if fmt == "bin":
        torch.save(state, tmp_path / "open_clip_pytorch_model.bin")
    elif fmt == "pt-training-checkpoint":
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "e3.pt")
    else:  # OpenAI ships TorchScript archives of the whole model; the weights are its state dict
        traced = torch.jit.trace_module(tiny_model.module, {"encode_image": torch.zeros(1, 3, 32, 32)})
        traced.save(str(tmp_path / "ViT-tiny.pt"))
    _check_loaded(load_model("ViT-B-32:tiny", weights=tmp_path), tiny_model)


def test_weights_that_do_not_fit_are_named(tiny_weights_dir):
    with pytest.raises(ModelError, match="does not fit architecture ViT-B-32"):
        load_model("ViT-B-32:openai", weights=tiny_weights_dir / "open_clip_model.safetensors")


def test_bad_weights_paths(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model("ViT-B-32:openai", weights=tmp_path / "nope.safetensors")
    (tmp_path / "a.bin").write_bytes(b"x")
    (tmp_path / "b.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="must hold one weights file.*a.bin, b.safetensors"):
        load_model("ViT-B-32:openai", weights=tmp_path)
    (tmp_path / "b.safetensors").unlink()
    with pytest.raises(ModelError, match="cannot read weights file"):
        load_model("ViT-B-32:openai", weights=tmp_path)


def _run_isolated(code: str, home: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run `code` with a fresh HOME and Hugging Face cache, so no weights exist anywhere."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    full_env.update(HOME=str(home), HF_HOME=str(home / "hf"), XDG_CACHE_HOME=str(home / "cache"),
                    PYTHONPATH=SRC, **env)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          timeout=120)
    return proc, time.monotonic() - start


LOAD = """
from semzip.embed import ModelError, load_model
try:
    load_model("ViT-B-32:openai")
except ModelError as exc:
    print("MODELERROR", exc)
"""


def test_offline_without_weights_fails_fast_with_instructions(tmp_path):
    proc, seconds = _run_isolated(LOAD, tmp_path, HF_HUB_OFFLINE="1")
    assert "MODELERROR" in proc.stdout, proc.stderr
    msg = proc.stdout
    assert "HF_HUB_OFFLINE" in msg and "--weights" in msg
    assert "hf download timm/vit_base_patch32_clip_224.openai open_clip_model.safetensors" in msg
    assert seconds < 30  # interpreter + torch import; the lookup itself does no network I/O


def test_unreachable_hub_fails_fast(tmp_path):
    proc, seconds = _run_isolated(LOAD, tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    assert "MODELERROR" in proc.stdout, proc.stderr
    assert "hub is unreachable (127.0.0.1:9" in proc.stdout
    assert seconds < 30


def test_weights_are_looked_up_in_the_hugging_face_cache(tmp_path, tiny_weights_dir):
    """A file in the hub cache layout is found offline (here it is the tiny model, so it does not fit)."""
    repo = tmp_path / "hf" / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    (snap / "open_clip_model.safetensors").write_bytes((tiny_weights_dir / "open_clip_model.safetensors").read_bytes())
    proc, _ = _run_isolated(LOAD, tmp_path, HF_HUB_OFFLINE="1")
    assert "does not fit architecture ViT-B-32" in proc.stdout and "snapshots/0123abcd" in proc.stdout, proc.stderr


def test_weights_are_looked_up_in_open_clips_url_cache(tmp_path):
    legacy = tmp_path / ".cache" / "clip"
    legacy.mkdir(parents=True)
    (legacy / "ViT-B-32.pt").write_bytes(b"not a checkpoint")
    proc, _ = _run_isolated(LOAD, tmp_path, HF_HUB_OFFLINE="1")
    assert "cannot read weights file" in proc.stdout and ".cache/clip/ViT-B-32.pt" in proc.stdout, proc.stderr


def test_importing_semzip_embed_does_not_import_torch():
    code = "import sys, semzip, semzip.embed; print('torch' in sys.modules, 'open_clip' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "False"], proc.stderr


def test_weights_fingerprint(tiny_weights_dir, tmp_path):
    """The cache key's weights hash: SHA-256 of the file, read off the name of a Hugging Face cache blob."""
    import hashlib

    model = load_model("ViT-B-32:tiny", weights=tiny_weights_dir)
    data = (tiny_weights_dir / "open_clip_model.safetensors").read_bytes()
    assert model.fingerprint == hashlib.sha256(data).hexdigest()[:16]
    blob = tmp_path / "blobs" / ("ab" * 32)
    blob.parent.mkdir()
    blob.write_bytes(data)
    model.weights_path = tmp_path / "link.safetensors"
    model.weights_path.symlink_to(blob)
    del model.fingerprint  # drop the cached value
    assert model.fingerprint == "ab" * 8


def test_the_model_id_comes_from_the_weights(tiny_weights_dir, tmp_path):
    """A folder whose config is another architecture is never recorded under the name asked for."""
    import shutil

    model = load_model("ViT-B-32:openai", weights=tiny_weights_dir)
    assert model.name == f"custom:sha256-{model.fingerprint}" and len(model.fingerprint) == 16
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_weights_dir / "open_clip_model.safetensors", bare)
    with pytest.raises(ModelError):  # a bare file must fit the named architecture
        load_model("ViT-B-32:openai", weights=bare)
