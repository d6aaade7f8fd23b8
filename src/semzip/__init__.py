"""semzip: semantic compression of images as CLIP embeddings."""

__version__ = "0.1.0"

# __version__ comes first: container.py imports it while the package initialises.
from ._errors import CodecMismatchError, FormatError, InputError, NotFittedError, SemzipError, SpecError, WriteError  # noqa: E402
from .codecs import Codec, available_codecs, fit_codec, load_codec, make_codec, save_codec  # noqa: E402
from .container import Archive, append_archive, write_archive  # noqa: E402
from .spec import Spec, format_spec, parse_spec  # noqa: E402

__all__ = [
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
