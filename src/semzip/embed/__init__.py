"""CLIP front-end: image files and texts to embeddings (optional extra `semzip[clip]`).

Importing this package is light (numpy, Pillow); torch and open_clip are imported when a model is
loaded. See docs/EMBED.md for the backend choice (open_clip's registry and tokenizer, semzip's own
torch towers for the plain ViT models, so torchvision is never needed).
"""

from ._backend import ModelError, available_architectures
from ._cache import EmbeddingCache, default_cache_path
from ._images import IMAGE_SUFFIXES, collect_images, decode_image, to_pixels
from ._load import ClipModel, Preprocess, build_model, load_model
from ._pipeline import (
    Embedded,
    Failure,
    class_embeddings,
    embed_paths,
    embed_texts,
    resolve_templates,
    zero_shot,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ClipModel",
    "Embedded",
    "EmbeddingCache",
    "Failure",
    "ModelError",
    "Preprocess",
    "available_architectures",
    "build_model",
    "class_embeddings",
    "collect_images",
    "decode_image",
    "default_cache_path",
    "embed_paths",
    "embed_texts",
    "load_model",
    "resolve_templates",
    "to_pixels",
    "zero_shot",
]
