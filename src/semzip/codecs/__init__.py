"""Codecs: the registry, the base class and the built-in codec families."""

from ._base import Codec, Codes, ProgressiveCodec, as_progressive, check_codec_matches
from ._registry import (
    available_codecs,
    codec_class,
    codec_from_bytes,
    fit_codec,
    load_codec,
    make_codec,
    register,
    resolve_codec,
    save_codec,
)
from . import bq, coarse, pq, pqvae, rq, scalar, smic, stack, transform  # noqa: E402,F401  (import registers the built-in codecs)

__all__ = [
    "Codec",
    "Codes",
    "ProgressiveCodec",
    "as_progressive",
    "available_codecs",
    "check_codec_matches",
    "codec_class",
    "codec_from_bytes",
    "fit_codec",
    "load_codec",
    "make_codec",
    "register",
    "resolve_codec",
    "save_codec",
]
