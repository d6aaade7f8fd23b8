"""ClipCap's mapping networks (Mokady et al., 2021) in torch, laid out like the published checkpoints.

A mapper turns a CLIP embedding into `prefix_length` GPT-2 input embeddings. Parameter names follow
the ClipCap release (`clip_project.*` of its `ClipCaptionModel`), so its state dicts load unchanged:
the MLP mapper (`model.0`, `model.2`) and the transformer mapper (`linear`, `prefix_const`,
`transformer.layers.N.{norm1,attn,norm2,mlp}`; 8 heads, MLP ratio 2, no bias on queries/keys/values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLPMapper(nn.Module):
    """Linear -> tanh -> linear, from `dim` to `prefix_length` x `width`."""

    def __init__(self, dim: int, width: int, prefix_length: int) -> None:
        super().__init__()
        self.prefix_length = prefix_length
        hidden = width * prefix_length // 2
        self.model = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, width * prefix_length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).view(len(x), self.prefix_length, -1)


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_queries = nn.Linear(width, width, bias=False)
        self.to_keys_values = nn.Linear(width, 2 * width, bias=False)
        self.project = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.heads
        q = self.to_queries(x).view(b, n, h, c // h).transpose(1, 2)
        k, v = self.to_keys_values(x).view(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.project(out.transpose(1, 2).reshape(b, n, c))


class _MLP(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class _Layer(nn.Module):
    """Pre-norm self-attention block."""

    def __init__(self, width: int, heads: int = 8, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = _Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = _MLP(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Stack(nn.Module):
    def __init__(self, width: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Layer(width) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerMapper(nn.Module):
    """The embedding as `clip_length` tokens beside `prefix_length` learned constants, through a
    transformer; the constants' outputs are the prefix."""

    def __init__(self, dim: int, width: int, prefix_length: int, clip_length: int, num_layers: int = 8) -> None:
        super().__init__()
        self.prefix_length, self.clip_length = prefix_length, clip_length
        self.linear = nn.Linear(dim, clip_length * width)
        self.prefix_const = nn.Parameter(torch.randn(prefix_length, width))
        self.transformer = _Stack(width, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.linear(x).view(len(x), self.clip_length, -1)
        const = self.prefix_const.unsqueeze(0).expand(len(x), -1, -1)
        return self.transformer(torch.cat((tokens, const), dim=1))[:, self.clip_length :]


def make_mapper(layout: str, dim: int, width: int, prefix_length: int, clip_length: int, num_layers: int) -> nn.Module:
    """A mapper of either layout ("mlp" or "transformer")."""
    if layout == "mlp":
        return MLPMapper(dim, width, prefix_length)
    return TransformerMapper(dim, width, prefix_length, clip_length, num_layers)


def infer_layout(state: dict[str, torch.Tensor], width: int) -> dict[str, int | str]:
    """Layout and sizes of a mapper from its state dict (keys without `clip_project.`), for a GPT-2
    of embedding `width` (an MLP's shapes give only prefix_length x width)."""
    if "model.0.weight" in state and "model.2.weight" in state:
        hidden, dim = state["model.0.weight"].shape
        out = state["model.2.weight"].shape[0]
        prefix_length = out // width
        if out != prefix_length * width or hidden != out // 2:
            raise ValueError(f"an MLP mapper to {out} values does not fit a GPT-2 of width {width}")
        return {"layout": "mlp", "dim": dim, "prefix_length": prefix_length, "clip_length": 0, "num_layers": 0}
    if "linear.weight" in state and "prefix_const" in state:
        prefix_length, got = state["prefix_const"].shape
        if got != width:
            raise ValueError(f"a transformer mapper of width {got} does not fit a GPT-2 of width {width}")
        out, dim = state["linear.weight"].shape
        layers = {k.split(".")[2] for k in state if k.startswith("transformer.layers.")}
        return {"layout": "transformer", "dim": dim, "prefix_length": prefix_length,
                "clip_length": out // width, "num_layers": len(layers)}
    raise ValueError("neither ClipCap mapper layout (MLP: model.0/model.2; transformer: linear/prefix_const)")
