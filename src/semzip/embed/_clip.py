"""The CLIP architecture of open_clip's plain ViT configs, in torch, with open_clip's parameter names.

open_clip's own `model.py` cannot be imported without torchvision (see `_backend`), so the towers used
by the OpenAI, LAION, DataComp and MetaCLIP ViT models are written out here: same modules, same state
dict keys, same forward pass (checked against open_clip's classes in tests/test_embed_model.py).
Configs that need other towers (timm, Hugging Face text, ResNet, CoCa) are left to the full open_clip.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Config fields this implementation follows, with the values it supports for fields that change the math.
_VISION_FREE = {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size", "patch_dropout",
                "output_tokens", "pool_type", "final_ln_after_pool", "no_ln_pre"}
_VISION_FIXED = {"ls_init_value": None, "attentional_pool": False, "pos_embed_type": "learnable",
                 "act_kwargs": None, "norm_kwargs": None, "block_type": None, "qk_norm": False,
                 "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
                 "scale_attn": False, "scale_fc": False, "timm_model_name": None}
_TEXT_FREE = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "pad_id", "eos_id",
              "pool_type", "proj_bias", "output_tokens", "final_ln_after_pool"}
_TEXT_FIXED = {"ls_init_value": None, "embed_cls": False, "no_causal_mask": False, "proj_type": "linear",
               "hf_model_name": None, "hf_tokenizer_name": None, "tokenizer_mode": None,
               "tokenizer_kwargs": None, "act_kwargs": None, "norm_kwargs": None, "block_type": None,
               "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
               "scale_attn_inner": False, "scale_attn": False, "scale_fc": False}
_TOP_FREE = {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "init_logit_scale", "init_logit_bias"}


def unsupported_reason(cfg: dict[str, Any]) -> str | None:
    """Why this module cannot build `cfg` (an open_clip model config), or None when it can."""
    for key, value in cfg.items():
        if key not in _TOP_FREE and value not in (None, False):
            return f"model option {key}={value!r}"
    for part, free, fixed in (("vision_cfg", _VISION_FREE, _VISION_FIXED), ("text_cfg", _TEXT_FREE, _TEXT_FIXED)):
        for key, value in cfg.get(part, {}).items():
            if key in free:
                continue
            if key not in fixed or value != fixed[key]:
                return f"{part}.{key}={value!r}"
    vision = cfg.get("vision_cfg", {})
    if not isinstance(vision.get("layers", 12), int) or not isinstance(vision.get("image_size", 224), int):
        return "a non-ViT or non-square vision tower"
    if vision.get("pool_type", "tok") not in ("tok", "avg"):
        return f"vision pool_type={vision['pool_type']!r}"
    if cfg.get("text_cfg", {}).get("pool_type", "argmax") not in ("argmax", "first", "last"):
        return f"text pool_type={cfg['text_cfg']['pool_type']!r}"
    return None


class QuickGELU(nn.Module):
    """The sigmoid GELU approximation the OpenAI models were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, act: type[nn.Module]):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", act()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, act: type[nn.Module]):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio, act) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, cfg: dict[str, Any], embed_dim: int, act: type[nn.Module]):
        super().__init__()
        width, patch, size = cfg.get("width", 768), cfg.get("patch_size", 16), cfg.get("image_size", 224)
        self.pool_type = cfg.get("pool_type", "tok")
        self.final_ln_after_pool = cfg.get("final_ln_after_pool", False)
        grid = size // patch
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.Identity() if cfg.get("no_ln_pre", False) else nn.LayerNorm(width)
        heads = width // cfg.get("head_width", 64)
        self.transformer = Transformer(width, cfg.get("layers", 12), heads, cfg.get("mlp_ratio", 4.0), act)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        if not self.final_ln_after_pool:
            x = self.ln_post(x)
        pooled = x[:, 1:].mean(dim=1) if self.pool_type == "avg" else x[:, 0]
        if self.final_ln_after_pool:
            pooled = self.ln_post(pooled)
        return pooled @ self.proj


class CLIP(nn.Module):
    """Image and text towers; `encode_image` / `encode_text` return unnormalised embeddings."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        reason = unsupported_reason(cfg)
        if reason is not None:
            raise ValueError(f"config not supported by semzip's CLIP: {reason}")
        act: type[nn.Module] = QuickGELU if cfg.get("quick_gelu", False) else nn.GELU
        embed_dim = cfg["embed_dim"]
        text = cfg.get("text_cfg", {})
        self.visual = VisionTransformer(cfg.get("vision_cfg", {}), embed_dim, act)
        width = text.get("width", 512)
        self.context_length = text.get("context_length", 77)
        self.text_pool_type = text.get("pool_type", "argmax")
        self.token_embedding = nn.Embedding(text.get("vocab_size", 49408), width)
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, width))
        self.transformer = Transformer(width, text.get("layers", 12), text.get("heads", 8),
                                       text.get("mlp_ratio", 4.0), act)
        self.ln_final = nn.LayerNorm(width)
        if text.get("proj_bias", False):
            self.text_projection: nn.Module | nn.Parameter = nn.Linear(width, embed_dim)
        else:
            self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        mask = torch.full((self.context_length, self.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.get("init_logit_scale", 2.6592600369))))
        if cfg.get("init_logit_bias") is not None:
            self.logit_bias = nn.Parameter(torch.tensor(float(cfg["init_logit_bias"])))
        self._init_text()

    def _init_text(self) -> None:
        """open_clip's initialisation (only matters for randomly initialised test models)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width = self.ln_final.normalized_shape[0]
        if isinstance(self.text_projection, nn.Linear):
            nn.init.normal_(self.text_projection.weight, std=width**-0.5)
            nn.init.zeros_(self.text_projection.bias)
        else:
            nn.init.normal_(self.text_projection, std=width**-0.5)  # type: ignore[arg-type]  # a Parameter here

    @property
    def embed_dim(self) -> int:
        return int(self.visual.proj.shape[1])

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x, self.attn_mask.to(x.dtype))
        x = self.ln_final(x)  # open_clip's CLIP applies it before pooling, whatever final_ln_after_pool says
        if self.text_pool_type == "argmax":
            x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        else:
            x = x[:, 0] if self.text_pool_type == "first" else x[:, -1]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)
