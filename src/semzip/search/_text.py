"""Text queries: CLIP text embeddings from `semzip.embed`, imported only when a text query is made."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._errors import InputError


def embed_queries(texts: Sequence[str], model: str) -> np.ndarray:
    """float32 (q, d) CLIP text embeddings of `texts` with the archive's embedding model."""
    try:
        from ..embed import embed_texts
    except ImportError as exc:
        raise InputError(
            f"text queries need semzip's CLIP front-end (semzip.embed with torch and open_clip: "
            f"pip install 'semzip[clip]'), which is not available here ({exc}); "
            f"query by example (--like ID, or 'like:ID' in `semzip serve`) or with --vector FILE instead"
        ) from None
    return np.asarray(embed_texts(list(texts), model=model), dtype=np.float32)
