"""Images from compressed embeddings: diffusers pipelines conditioned on CLIP image embeddings.

Each decoder takes the image embeddings of one CLIP model (`DECODERS`); an archive of another model is
refused naming both. semzip's vectors are unit length and pipelines expect raw embedding norms, so
each is rescaled: Stable unCLIP by the norm implied by its own image normaliser (sqrt(sum(mean^2 +
std^2)) of the statistics it standardises with), Kandinsky 2.2 by `scale` (its decoder puts the
embedding through layer norms, so the norm matters little). Semantic arithmetic (`semzip.semantic`)
happens before. Needs torch and diffusers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InputError, ModelError
from .._progress import progress_bar
from ._hub import from_hub, quiet, require


@dataclass(frozen=True)
class Decoder:
    """A generator: its diffusers pipeline, hub repository and the CLIP model its embeddings come from."""

    name: str
    pipeline: str
    repo: str
    model: str
    dim: int
    size: int  # default output side, pixels


DECODERS = {d.name: d for d in (
    Decoder("stable-unclip-small", "StableUnCLIPImg2ImgPipeline", "stabilityai/stable-diffusion-2-1-unclip-small",
            "ViT-L-14:openai", 768, 768),
    Decoder("stable-unclip", "StableUnCLIPImg2ImgPipeline", "stabilityai/stable-diffusion-2-1-unclip",
            "ViT-H-14:laion2b_s32b_b79k", 1024, 768),
    Decoder("kandinsky-2.2", "KandinskyV22Pipeline", "kandinsky-community/kandinsky-2-2-decoder",
            "ViT-bigG-14:laion2b_s39b_b160k", 1280, 512),
)}


def decoder(name: str) -> Decoder:
    try:
        return DECODERS[name]
    except KeyError:
        raise InputError(f"unknown decoder {name!r}; known: {', '.join(DECODERS)}") from None


class Generator:
    """A loaded pipeline that turns unit CLIP image embeddings into images."""

    def __init__(self, spec: Decoder, pipe: Any, device: str, scale: float | None = None) -> None:
        self.spec, self.pipe, self.device = spec, pipe, device
        unet = pipe.unet.config
        self.dim = int(unet.encoder_hid_dim if spec.pipeline == "KandinskyV22Pipeline"
                       else unet.projection_class_embeddings_input_dim // 2)
        self.scale = float(scale) if scale is not None else self._default_scale()
        pipe.set_progress_bar_config(disable=True)  # semzip's own bar counts images

    def _default_scale(self) -> float:
        if self.spec.pipeline == "StableUnCLIPImg2ImgPipeline":
            norm = self.pipe.image_normalizer
            return float((norm.mean.detach().double() ** 2 + norm.std.detach().double() ** 2).sum().sqrt())
        return 1.0

    def generate(self, X: np.ndarray, *, steps: int = 25, seed: int = 0, guidance: float | None = None,
                 size: int | None = None, batch_size: int = 4, progress: bool = False) -> list[Any]:
        """One Pillow image per row of X (unit embeddings). Row i starts from the noise of seed + i,
        whatever batch it is in (pixels may still differ by a rounding step between batch sizes)."""
        import torch

        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise InputError(f"{self.spec.name} takes {self.dim}-d image embeddings, got shape {X.shape}")
        if steps < 1 or batch_size < 1:
            raise InputError("steps and batch_size must be at least 1")
        side = size or self.spec.size
        dtype = self.pipe.unet.dtype
        images: list[Any] = []
        with progress_bar(f"generating ({self.spec.name})", total=len(X), enabled=progress) as advance:
            for at in range(0, len(X), batch_size):
                emb = torch.as_tensor(X[at : at + batch_size] * self.scale, device=self.device, dtype=dtype)
                gens = [torch.Generator(device="cpu").manual_seed(seed + at + i) for i in range(len(emb))]
                images += self._call(emb, gens, steps, guidance, side)
                advance(len(emb))
        return images

    def _call(self, emb: Any, gens: list, steps: int, guidance: float | None, side: int) -> list[Any]:
        import torch

        common = {"num_inference_steps": steps, "height": side, "width": side, "generator": gens, "output_type": "pil"}
        if self.spec.pipeline == "KandinskyV22Pipeline":
            return self.pipe(image_embeds=emb, negative_image_embeds=torch.zeros_like(emb),
                             guidance_scale=4.0 if guidance is None else guidance, **common).images
        return self.pipe(image_embeds=emb, prompt=[""] * len(emb),
                         guidance_scale=10.0 if guidance is None else guidance, **common).images


def load_generator(name: str, *, weights: str | None = None, device: str = "cpu", scale: float | None = None) -> Generator:
    """The decoder `name` from `weights` (a local folder in the diffusers layout) or its hub repository
    (cached, or downloaded once); offline without it is a ModelError saying how to get it."""
    spec = decoder(name)
    require("torch", "diffusers", "transformers")
    import diffusers
    import transformers

    quiet(diffusers, transformers)
    cls = getattr(diffusers, spec.pipeline)
    pipe = from_hub(cls.from_pretrained, str(weights) if weights is not None else spec.repo,
                    f"{spec.name} pipeline weights ({spec.repo})")
    if type(pipe).__name__ != spec.pipeline:
        raise ModelError(f"{weights!r} holds a {type(pipe).__name__}, not the {spec.pipeline} that {name} needs")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise InputError(f"--scale must be a positive number, got {scale}")
    return Generator(spec, pipe.to(device), device, scale)


def check_model(spec: Decoder, model: str) -> None:
    """Refuse an archive whose embedding model is not the decoder's (both named); unknown passes."""
    if model not in ("unknown", "", None) and model != spec.model:
        raise InputError(f"{spec.name} generates from {spec.model} image embeddings; the archive holds {model} "
                         f"embeddings (see `semzip generate --help` for which decoder takes which model)")


def safe_names(ids: Sequence[str]) -> list[str]:
    """File names for generated images: the index, then the id with path separators and odd
    characters replaced, so any id gives one file inside the output folder."""
    out = []
    for i, item in enumerate(ids):
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in item)[:80].strip(".") or "item"
        out.append(f"{i:05d}_{stem}.png")
    return out
