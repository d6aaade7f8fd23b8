"""Access to open_clip's model registry, pretrained table and tokenizer without importing torchvision.

`import open_clip` runs its package `__init__`, which imports `transform.py` and `utils.py`, and those
import torchvision at module level. PyPI's torchvision wheels are CUDA builds that fail to import beside
a CPU torch, so semzip never runs that `__init__`. It reads the few torch-free modules it needs
(`constants`, `version`, `pretrained`, `tokenizer`, `zero_shot_metadata`) from the installed open_clip
folder under a private package name, `_semzip_open_clip`, which leaves `sys.modules["open_clip"]`
untouched: a later `import open_clip` by the user behaves exactly as it would without semzip.
The model configs are the JSON files in `open_clip/model_configs/`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

from .._errors import ModelError

_ALIAS = "_semzip_open_clip"
INSTALL_HINT = (
    "pip install 'semzip[clip]' && pip install --no-deps 'open_clip_torch>=3.3,<4' "
    "(install torch for your platform first; --no-deps applies to open_clip alone, see docs/EMBED.md)"
)


@functools.cache
def open_clip_root() -> Path:
    """Folder of the installed open_clip package (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the CLIP front-end needs open_clip and torch, which are not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def open_clip_module(name: str) -> types.ModuleType:
    """Import open_clip's torch-free submodule `name` (e.g. "pretrained") without its package `__init__`."""
    if _ALIAS not in sys.modules:
        pkg = types.ModuleType(_ALIAS)
        pkg.__path__ = [str(open_clip_root())]
        pkg.__package__ = _ALIAS
        sys.modules[_ALIAS] = pkg
    try:
        return importlib.import_module(f"{_ALIAS}.{name}")
    except ImportError as exc:
        raise ModelError(f"open_clip's {name} module cannot be imported ({exc}): {INSTALL_HINT}") from None


def split_model_name(name: str) -> tuple[str, str]:
    """'ViT-B-32:openai' -> ('ViT-B-32', 'openai'); the tag is required (it names the weights)."""
    if not isinstance(name, str):
        raise ModelError(f"model name must be a string like 'ViT-B-32:openai', got {type(name).__name__}")
    arch, sep, tag = name.partition(":")
    if not sep or not arch or not tag or ":" in tag:
        raise ModelError(f"model name {name!r} is not of the form ARCH:TAG (e.g. 'ViT-B-32:openai')")
    return arch, tag


def available_architectures() -> list[str]:
    """Names of the model configs open_clip ships (the ARCH part of a model name)."""
    return sorted(p.stem for p in (open_clip_root() / "model_configs").glob("*.json"))


def model_config(arch: str) -> dict[str, Any]:
    """open_clip's JSON config for `arch`, or ModelError naming close matches."""
    path = open_clip_root() / "model_configs" / f"{arch}.json"
    if not path.is_file():
        known = available_architectures()
        close = [a for a in known if a.lower().startswith(arch.lower()[:5])][:8]
        hint = f"; similar: {', '.join(close)}" if close else f"; {len(known)} are known, e.g. ViT-B-32, ViT-L-14"
        raise ModelError(f"unknown CLIP architecture {arch!r}{hint}")
    return json.loads(path.read_text(encoding="utf-8"))


def pretrained_config(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's pretrained entry for ARCH:TAG (hub repo, url, mean/std, resize mode), or ModelError."""
    pretrained = open_clip_module("pretrained")
    cfg = pretrained.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = pretrained.list_pretrained_tags_by_model(arch)
        listed = ", ".join(tags) if tags else "none"
        raise ModelError(
            f"open_clip has no pretrained weights {arch}:{tag} (tags for {arch}: {listed}); "
            "for weights of your own pass --weights PATH"
        )
    return dict(cfg)


def make_tokenizer(context_length: int) -> Any:
    """open_clip's CLIP BPE tokenizer (the one every non-HF open_clip text tower uses)."""
    return open_clip_module("tokenizer").SimpleTokenizer(context_length=context_length)


def template_sets() -> dict[str, list[str]]:
    """Named prompt-template sets: open_clip's ImageNet ones (CLIP_benchmark's defaults) and a single one."""
    meta = open_clip_module("zero_shot_metadata")
    marker = "\x00"

    def as_format(fns: Any) -> list[str]:
        return [fn(marker).replace(marker, "{}") for fn in fns]

    return {
        "photo": ["a photo of a {}."],
        "simple": as_format(meta.SIMPLE_IMAGENET_TEMPLATES),
        "openai": as_format(meta.OPENAI_IMAGENET_TEMPLATES),
    }
