"""Decoders from compressed embeddings to things a person looks at (docs/DECODE.md).

`nearest_images`: the most similar real images of a reference gallery. `semzip.decode.caption`:
ClipCap-style captions through GPT-2 (transformers). `semzip.decode.generate`: images through diffusers
pipelines conditioned on CLIP image embeddings. The last two need torch and their weights.
"""

from .nearest import nearest_images, nearest_sheet

__all__ = ["nearest_images", "nearest_sheet"]
