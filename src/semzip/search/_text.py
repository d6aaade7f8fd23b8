"""Text queries: CLIP text embeddings from `semzip.embed`, imported only when a text query is made."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from .._errors import InputError


def _embed() -> ModuleType:
    try:
        return importlib.import_module("..embed", __package__)  # sys.modules first: tests can stand in
    except ImportError as exc:
        raise InputError(
            f"text queries need semzip's CLIP front-end (semzip.embed with torch and open_clip: "
            f"pip install 'semzip[clip]'), which is not available here ({exc}); "
            f"query by example (--like ID, or 'like:ID' in `semzip serve`) or with --vector FILE instead"
        ) from None


def embed_queries(texts: Sequence[str], model: Any) -> np.ndarray:
    """float32 (q, d) CLIP text embeddings of `texts`; `model` is a model id or one from `load_text_model`."""
    return np.asarray(_embed().embed_texts(list(texts), model=model), dtype=np.float32)


def load_text_model(name: str) -> Any:
    """Load the CLIP model once, for a server answering many text queries."""
    return _embed().load_model(name)


def embed_classes(labels: Sequence[str], templates: str | Sequence[str], model: str, *, weights: Any = None,
                  device: str = "cpu") -> np.ndarray:
    """Prompt-ensemble class embeddings (CLIP's zero-shot classifier) from `semzip.embed`."""
    return np.asarray(_embed().class_embeddings(list(labels), templates, model, weights=weights, device=device),
                      dtype=np.float32)
