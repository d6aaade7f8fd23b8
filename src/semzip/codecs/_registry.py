"""Registry of codec classes by spec name and by never-reused 4-byte id; codec files on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._atomic import atomic_write_bytes
from .._errors import FormatError, InputError, SemzipError, SpecError
from ..spec import Spec, format_spec, parse_spec
from ._base import Codec, read_state

_BY_NAME: dict[str, type[Codec]] = {}
_BY_ID: dict[bytes, type[Codec]] = {}


def register(cls: type[Codec]) -> type[Codec]:
    """Class decorator adding a codec to the registry; names and ids must be unique."""
    if len(cls.codec_id) != 4:
        raise ValueError(f"codec id of {cls.__name__} must be 4 bytes, got {cls.codec_id!r}")
    if cls.name in _BY_NAME or cls.codec_id in _BY_ID:
        raise ValueError(f"codec {cls.name!r} / id {cls.codec_id!r} is registered twice")
    _BY_NAME[cls.name] = cls
    _BY_ID[cls.codec_id] = cls
    return cls


def available_codecs() -> list[str]:
    """Spec names of every registered codec."""
    return sorted(_BY_NAME)


def codec_class(name: str) -> type[Codec]:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SpecError(f"unknown codec {name!r}; known codecs: {', '.join(available_codecs())}") from None


def codec_class_by_id(codec_id: bytes) -> type[Codec]:
    try:
        return _BY_ID[codec_id]
    except KeyError:
        raise FormatError(f"unknown codec id {codec_id!r}: written by a newer semzip?") from None


def make_codec(spec: str | Spec) -> Codec:
    """An unfitted codec from a spec such as 'pq:M=32,K=256'."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    return codec_class(parsed.name).from_spec(parsed)


def fit_codec(spec: str | Spec | Codec, X: Any, *, seed: int = 0, threads: int = 1, progress: bool = False) -> Codec:
    """A codec from `spec` (or an unfitted codec) fitted on X with training options applied where the
    codec takes them: its `seed`, `threads` (else BLAS and faiss are held to `threads` around the fit)
    and `progress` bars (a spinner with elapsed time for codecs that report no progress of their own).
    Seeded training gives the same codec for a given thread count."""
    from .._progress import status
    from .._threads import limited_threads

    codec = spec if isinstance(spec, Codec) else make_codec(spec)
    params = codec.get_params()
    codec.set_params(**{k: v for k, v in (("seed", seed), ("threads", threads), ("progress", progress)) if k in params})
    label = f"fitting {format_spec(codec.spec)} on {len(X)} vectors"
    with limited_threads(threads), status(label, enabled=progress and "progress" not in params):
        return codec.fit(X)


def codec_from_bytes(data: bytes) -> Codec:
    """A fitted codec from `.smzc` bytes, verified against its content hash."""
    codec_id, spec, width, _, arrays, _ = read_state(data)
    cls = codec_class_by_id(codec_id)
    try:
        codec = cls.from_spec(parse_spec(spec))
    except SpecError as exc:
        raise FormatError(f"codec file has a bad spec: {exc}") from None
    codec.n_features_in_ = width
    try:
        codec._set_state(arrays)
    except SemzipError:
        raise
    except ValueError as exc:  # a stored array its constructor refuses (e.g. frequency counts below 1)
        raise FormatError(f"codec file holds an invalid array: {exc}") from None
    return codec


def resolve_codec(arg: str | Path | Codec) -> Codec:
    """What a `--codec` argument names: a codec object as given, a `.smzc` file (or any existing file)
    loaded and fitted, else a spec made into an unfitted codec; one message for neither."""
    if isinstance(arg, Codec):
        return arg
    path = Path(str(arg))
    if path.suffix == ".smzc" or path.is_file():
        return load_codec(path)
    try:
        return make_codec(str(arg))
    except SpecError as exc:
        raise SpecError(f"codec {str(arg)!r} is neither a codec file nor a valid spec: {exc}") from None


def save_codec(codec: Codec, path: str | Path) -> None:
    """Write a fitted codec to a `.smzc` file atomically."""
    atomic_write_bytes(path, codec.to_bytes())


_MAX_CODEC_BYTES = 1 << 31


def load_codec(path: str | Path) -> Codec:
    """Read a `.smzc` file written by `save_codec` (at most 2 GiB; fitted codecs are a few MB)."""
    try:
        size = Path(path).stat().st_size
        if size > _MAX_CODEC_BYTES:
            raise FormatError(f"codec file {str(path)!r} is {size} bytes; semzip reads codec files of at most "
                              f"{_MAX_CODEC_BYTES} bytes")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read codec file {str(path)!r}: {exc.strerror}") from None
    return codec_from_bytes(data)
