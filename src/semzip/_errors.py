"""Errors semzip reports to users: each carries a one-line message and a CLI exit code."""

from __future__ import annotations


class SemzipError(Exception):
    """Base class of every error semzip raises on purpose; the CLI maps it to `exit_code`."""

    exit_code = 1


class InputError(SemzipError, ValueError):
    """Bad user data: wrong shape, dtype or width, non-finite values, empty input, missing file."""

    exit_code = 2


class SpecError(SemzipError, ValueError):
    """A codec spec that does not parse or names an unknown codec or parameter."""

    exit_code = 2


class NotFittedError(SemzipError, AttributeError):
    """A trainable codec was used before `fit`."""

    exit_code = 2


class WriteError(SemzipError, OSError):
    """An output that cannot be written: a missing or read-only folder, a full disk."""

    exit_code = 5


class FormatError(SemzipError):
    """A truncated, corrupt or unsupported archive or codec file."""

    exit_code = 3


class CodecMismatchError(SemzipError):
    """An archive was opened with a codec other than the one it was written with."""

    exit_code = 4


class ModelError(SemzipError):
    """A model that cannot be loaded (CLIP, captioner, generator): unknown name, missing backend, no
    weights, bad weights file. The message says how to get what is missing."""

    exit_code = 6  # 5 is the CLI's code for OS errors
