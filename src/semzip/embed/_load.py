"""Loading a CLIP model by open_clip name (`ARCH:TAG`) from a weights file, a folder, or the user's cache.

Weights are found in this order: `weights=` (a file, or a folder laid out like a Hugging Face hub repo),
the Hugging Face cache, open_clip's URL cache (`~/.cache/clip`), then a download from the hub. Offline
(`HF_HUB_OFFLINE=1`, or the hub unreachable within a few seconds) with nothing cached is an error that
says how to get the weights: a model is never silently left with random weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import urllib.parse
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._backend import INSTALL_HINT, ModelError, model_config, pretrained_config, split_model_name

if TYPE_CHECKING:
    import torch

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its images: square side, resize mode and filter, normalisation."""

    image_size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ModelError(f"unsupported interpolation {self.interpolation!r} (bicubic or bilinear)")
        if self.resize_mode not in ("shortest", "squash"):
            raise ModelError(f"unsupported resize mode {self.resize_mode!r} (shortest or squash)")


class ClipModel:
    """A CLIP model ready for inference: towers in eval mode on `device`, its preprocessing and tokenizer."""

    def __init__(self, name: str, module: Any, preprocess: Preprocess, tokenizer: Any, device: str,
                 weights_path: Path | None, embed_dim: int):
        self.name = name
        self.embed_dim = embed_dim
        self.module = module
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.weights_path = weights_path

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the weights file: embeddings cached under one never serve another."""
        if self.weights_path is None:
            return "none"
        blob = Path(os.path.realpath(self.weights_path))
        if blob.parent.name == "blobs" and len(blob.name) == 64 and all(c in "0123456789abcdef" for c in blob.name):
            return blob.name[:16]  # a Hugging Face cache blob is named by the SHA-256 of its content
        digest = hashlib.sha256()
        with open(self.weights_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
        return digest.hexdigest()[:16]

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) preprocessed float32 pixels -> L2-normalised float32 (n, d) embeddings."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(self.device)
            out = self.module.encode_image(x)
            return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Strings -> L2-normalised float32 (n, d) embeddings (truncated to the model's context length)."""
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            out = self.module.encode_text(tokens)
            return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()


def resolve_device(device: str) -> str:
    """'cpu', 'cuda', 'cuda:N', 'mps', or 'auto' (a GPU when there is one) -> a device torch accepts."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelError(f"unknown device {device!r} (use cpu, cuda, cuda:N, mps or auto)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but torch sees no CUDA GPU (torch {torch.__version__})")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ModelError(f"device {device!r} requested but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device 'mps' requested but it is not available")
    return str(parsed)


def load_model(name: str = "ViT-B-32:openai", weights: str | os.PathLike[str] | None = None,
               device: str = "cpu") -> ClipModel:
    """Load CLIP model `name` (open_clip's ARCH:TAG) with real pretrained weights; see the module docstring."""
    arch, tag = split_model_name(name)
    folder_cfg: dict[str, Any] = {}
    if weights is not None:
        path, folder_cfg = _local_weights(Path(weights))
    else:
        path = None
    cfg = dict(folder_cfg.get("model_cfg") or model_config(arch))
    try:
        pre_cfg = pretrained_config(arch, tag)
    except ModelError:
        if weights is None:
            raise
        pre_cfg = {}  # own weights under a tag open_clip does not list: open_clip's default preprocessing
    if pre_cfg.get("quick_gelu"):
        cfg["quick_gelu"] = True
    if path is None:
        path = _cached_or_downloaded(name, pre_cfg)
    preprocess = _preprocess_from(cfg, {**pre_cfg, **folder_cfg.get("preprocess_cfg", {})})
    try:  # only now: a missing-weights error comes without the seconds torch takes to import
        import torch  # noqa: F401
    except ImportError:
        raise ModelError(f"the CLIP front-end needs torch: {INSTALL_HINT}") from None
    dev = resolve_device(device)
    module, tokenizer = _build(arch, cfg, path)
    module = module.to(dev).eval()
    clip = ClipModel(name, module, preprocess, tokenizer, dev, path, int(cfg["embed_dim"]))
    if weights is not None:
        clip.name = _local_model_id(arch, tag, folder_cfg.get("model_cfg"), bool(pre_cfg), clip)
    return clip


def _local_model_id(arch: str, tag: str, own_cfg: dict[str, Any] | None, listed: bool, clip: ClipModel) -> str:
    """The id recorded for weights the user supplied, from the weights themselves, never a guess:
    ARCH:TAG for a tag open_clip lists of the registry's own architecture; ARCH:sha256-HASH for other
    weights of that architecture; custom:sha256-HASH when the folder's config is another architecture."""
    try:
        registry = model_config(arch)
    except ModelError:
        registry = None
    if own_cfg and own_cfg != registry:
        return f"custom:sha256-{clip.fingerprint}"
    return f"{arch}:{tag}" if listed else f"{arch}:sha256-{clip.fingerprint}"


def build_model(cfg: dict[str, Any], name: str, preprocess: Preprocess | None = None, seed: int = 0,
                device: str = "cpu") -> ClipModel:
    """A *randomly initialised* model of config `cfg`, for tests and timing benchmarks only.

    Never used by `load_model`: missing weights are an error there, not a reason to fall back to this.
    """
    import torch

    from ._backend import make_tokenizer
    from ._clip import CLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = CLIP(cfg)
    size = int(cfg.get("vision_cfg", {}).get("image_size", 224))
    tokenizer = make_tokenizer(int(cfg.get("text_cfg", {}).get("context_length", 77)))
    return ClipModel(name, module.to(device).eval(), preprocess or Preprocess(size), tokenizer, device, None,
                     int(cfg["embed_dim"]))


def _preprocess_from(cfg: dict[str, Any], pre: dict[str, Any]) -> Preprocess:
    size = pre.get("size", cfg.get("vision_cfg", {}).get("image_size", 224))
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise ModelError(f"non-square input size {size} is not supported")
        size = size[0]
    return Preprocess(int(size), tuple(pre.get("mean", OPENAI_MEAN)), tuple(pre.get("std", OPENAI_STD)),
                      pre.get("interpolation", "bicubic"), pre.get("resize_mode", "shortest"))


def _local_weights(path: Path) -> tuple[Path, dict[str, Any]]:
    """A weights file, or a folder (with an optional open_clip_config.json) holding exactly one."""
    if path.is_file():
        return path, {}
    if not path.is_dir():
        raise ModelError(f"weights path {str(path)!r} does not exist")
    cfg: dict[str, Any] = {}
    cfg_path = path / "open_clip_config.json"
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {str(cfg_path)!r}: {exc}") from None
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model_cfg", {}), dict):
            raise ModelError(f"{str(cfg_path)!r} is not an open_clip config (no model_cfg object)")
    for fname in _HF_WEIGHTS:
        if (path / fname).is_file():
            return path / fname, cfg
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise ModelError(f"weights folder {str(path)!r} must hold one weights file "
                         f"({'/'.join(_WEIGHT_SUFFIXES)}); found: {listed}")
    return found[0], cfg


def _hub_files(pre_cfg: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(repo id, candidate file names) of the pretrained entry's hub location, safetensors first."""
    hub = pre_cfg.get("hf_hub", "")
    if not hub:
        return None
    if hub.endswith("/"):
        return hub.rstrip("/"), list(_HF_WEIGHTS)
    repo, _, fname = hub.rpartition("/")
    if fname.endswith((".bin", ".pth")):
        return repo, [fname.rsplit(".", 1)[0] + ".safetensors", fname]
    return repo, [fname]


def _cached_or_downloaded(name: str, pre_cfg: dict[str, Any]) -> Path:
    hub = _hub_files(pre_cfg)
    url = pre_cfg.get("url", "")
    huggingface_hub: Any
    try:
        import huggingface_hub
        from huggingface_hub import constants as hf_constants
    except ImportError:
        huggingface_hub = None
    if hub is not None and huggingface_hub is not None:
        repo, names = hub
        for fname in names:
            hit = huggingface_hub.try_to_load_from_cache(repo, fname)
            if isinstance(hit, str):
                return Path(hit)
    if url:
        legacy = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(urllib.parse.urlparse(url).path)
        if legacy.is_file():
            return legacy

    where = []
    if hub is not None:
        where.append(f"`hf download {hub[0]} {hub[1][0]}` (fills the Hugging Face cache)")
    if url:
        where.append(f"download {url} and pass --weights PATH")
    how = "; or ".join(where) or "pass --weights PATH"
    cache = hf_constants.HF_HUB_CACHE if huggingface_hub is not None else "~/.cache/huggingface/hub"
    missing = f"no weights for {name} in the Hugging Face cache ({cache}) or ~/.cache/clip"

    if hub is None or huggingface_hub is None:
        reason = "huggingface-hub is not installed" if huggingface_hub is None else "no hub location known"
        raise ModelError(f"{missing}, and {reason}. Get them: {how}")
    if hf_constants.HF_HUB_OFFLINE:
        raise ModelError(f"{missing}, and HF_HUB_OFFLINE is set. On a machine with network: {how}")
    unreachable = _probe(hf_constants.ENDPOINT)
    if unreachable:
        raise ModelError(f"{missing}, and the hub is unreachable ({unreachable}). On a machine with network: {how}")
    repo, names = hub
    errors = []
    for fname in names:
        try:
            return Path(huggingface_hub.hf_hub_download(repo, fname, etag_timeout=_PROBE_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001 - every hub failure becomes the one error below
            errors.append(f"{fname}: {type(exc).__name__}")
    raise ModelError(f"{missing}, and downloading from {repo} failed ({'; '.join(errors)}). Get them: {how}")


def _probe(endpoint: str) -> str | None:
    """None if a TCP connection to the hub opens within a few seconds, else why not (no retries, no hang)."""
    parsed = urllib.parse.urlparse(endpoint)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors, a torch state dict / training checkpoint, or an OpenAI TorchScript file."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path), device="cpu")
        elif _is_torchscript(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load; OpenAI's files need it
                sd = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch and safetensors raise many types for bad files
        raise ModelError(f"cannot read weights file {str(path)!r}: {type(exc).__name__}: {exc}"[:400]) from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"weights file {str(path)!r} holds no state dict of tensors")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    for extra in ("input_resolution", "context_length", "vocab_size", "attn_mask"):  # TorchScript extras
        sd.pop(extra, None)
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in zf.namelist())


def _build(arch: str, cfg: dict[str, Any], path: Path) -> tuple[Any, Any]:
    """Model with the weights of `path` loaded, and its tokenizer."""
    from ._clip import CLIP, unsupported_reason

    reason = unsupported_reason(cfg)
    if reason is not None:
        return _build_with_open_clip(arch, cfg, path, reason)
    from ._backend import make_tokenizer

    module = CLIP(cfg)
    state = read_state_dict(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:500]
        raise ModelError(f"weights file {str(path)!r} does not fit architecture {arch}: {first}") from None
    return module, make_tokenizer(module.context_length)


def _build_with_open_clip(arch: str, cfg: dict[str, Any], path: Path, reason: str) -> tuple[Any, Any]:
    """Models semzip's own towers do not cover (timm, HF text, ResNet): the full open_clip package."""
    try:
        import open_clip
    except Exception as exc:  # noqa: BLE001 - a broken torchvision raises RuntimeError, not ImportError
        raise ModelError(
            f"{arch} needs the full open_clip package ({reason}), which failed to import "
            f"({type(exc).__name__}: {str(exc)[:120]}); it needs a torchvision (and timm) built for your torch. "
            "semzip's own towers cover the plain ViT models (ViT-B-32, ViT-B-16, ViT-L-14, ViT-L-14-336, ViT-H-14, ...)"
        ) from None
    try:
        module = open_clip.create_model(arch, pretrained=str(path), **_open_clip_kwargs(cfg))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"open_clip could not build {arch} from {str(path)!r}: {exc}"[:400]) from None
    return module, open_clip.get_tokenizer(arch)


def _open_clip_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"force_quick_gelu": True} if cfg.get("quick_gelu") else {}
