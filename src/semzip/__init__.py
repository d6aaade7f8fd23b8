"""semzip: semantic compression of images as CLIP embeddings."""

from ._version import __version__
from ._errors import CodecMismatchError, FormatError, InputError, NotFittedError, SemzipError, SpecError, WriteError
from .codecs import Codec, available_codecs, fit_codec, load_codec, make_codec, save_codec
from .container import Archive, append_archive, write_archive
from .spec import Spec, format_spec, parse_spec

__all__ = [
    "__version__",
    "Archive",
    "Codec",
    "CodecMismatchError",
    "FormatError",
    "InputError",
    "NotFittedError",
    "SemzipError",
    "Spec",
    "SpecError",
    "WriteError",
    "append_archive",
    "available_codecs",
    "format_spec",
    "load_codec",
    "fit_codec",
    "make_codec",
    "parse_spec",
    "save_codec",
    "write_archive",
]
