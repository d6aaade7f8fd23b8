"""semzip: semantic compression of images as CLIP embeddings."""

from ._errors import CodecMismatchError, FormatError, InputError, NotFittedError, SemzipError, SpecError
from .codecs import Codec, available_codecs, load_codec, make_codec, save_codec
from .spec import Spec, format_spec, parse_spec

__version__ = "0.1.0"

__all__ = [
    "Codec",
    "CodecMismatchError",
    "FormatError",
    "InputError",
    "NotFittedError",
    "SemzipError",
    "Spec",
    "SpecError",
    "available_codecs",
    "format_spec",
    "load_codec",
    "make_codec",
    "parse_spec",
    "save_codec",
]
