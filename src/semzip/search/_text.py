"""Text queries: CLIP text embeddings from `semzip.embed`, imported only when a text query is made."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from .._errors import InputError
from ..container import UNKNOWN_MODEL


def _embed() -> ModuleType:
    try:
        return importlib.import_module("..embed", __package__)  # sys.modules first: tests can stand in
    except ImportError as exc:
        raise InputError(
            f"text queries need semzip's CLIP front-end (semzip.embed with torch and open_clip: "
            f"pip install 'semzip[clip]'), which is not available here ({exc}); "
            f"query by example (--like ID, or 'like:ID' in `semzip serve`) or with --vector FILE instead"
        ) from None


def query_model(archive_model: str, model: str | None) -> str:
    """The CLIP model to embed text queries for an archive: the one it records, or `model` when it
    agrees (or the archive's is unknown). Queries from another model live in another space: refused."""
    if model is None:
        if archive_model == UNKNOWN_MODEL:
            raise InputError("the archive does not record its embedding model, so text queries cannot be "
                             "embedded for it: pass --model ARCH:TAG (and --weights PATH for local weights)")
        return archive_model
    if archive_model not in (UNKNOWN_MODEL, model):
        raise InputError(f"the archive holds {archive_model} embeddings; text queries from --model {model} "
                         f"would be in another space (omit --model, or give {archive_model})")
    return model


def _checked(Q: np.ndarray, model: Any, dim: int) -> np.ndarray:
    if Q.shape[1] != dim:
        name = getattr(model, "name", model)
        raise InputError(f"text model {name} gives {Q.shape[1]}-d embeddings but the archive holds {dim}-d items")
    return Q


def embed_queries(texts: Sequence[str], model: Any, dim: int, *, weights: Any = None,
                  device: str = "cpu") -> np.ndarray:
    """float32 (q, dim) CLIP text embeddings of `texts`; `model` is a model id (with optional local
    `weights`) or one from `load_text_model`; a model of another width than the archive's is refused."""
    Q = _embed().embed_texts(list(texts), model=model, weights=weights, device=device)
    return _checked(np.asarray(Q, dtype=np.float32), model, dim)


def load_text_model(name: str, *, weights: Any = None, device: str = "cpu") -> Any:
    """Load the CLIP model once, for a server answering many text queries."""
    return _embed().load_model(name, weights=weights, device=device)


def embed_classes(labels: Sequence[str], templates: str | Sequence[str], model: str, dim: int, *,
                  weights: Any = None, device: str = "cpu") -> np.ndarray:
    """Prompt-ensemble class embeddings (CLIP's zero-shot classifier) from `semzip.embed`."""
    T = _embed().class_embeddings(list(labels), templates, model, weights=weights, device=device)
    return _checked(np.asarray(T, dtype=np.float32), model, dim)
