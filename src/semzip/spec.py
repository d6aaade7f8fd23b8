"""The codec spec language: `name` or `name:key=value,key=value`, one parser, round-trippable.

Values are integers (`32`), floats (`0.9`, `1e-05`) or words (`opq`). `format_spec(parse_spec(s))`
is canonical and `parse_spec(format_spec(spec)) == spec` for every spec.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ._errors import SpecError

Value = int | float | str

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT = re.compile(r"[-+]?\d+\Z")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?\Z")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*\Z")


@dataclass(frozen=True)
class Spec:
    """A parsed codec spec: a codec name and its parameters in written order."""

    name: str
    params: tuple[tuple[str, Value], ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SpecError(f"bad codec name {self.name!r}: lower-case letters, digits and '_' only")
        seen: set[str] = set()
        for key, value in self.params:
            if not _KEY.match(key):
                raise SpecError(f"bad parameter name {key!r} in spec for {self.name!r}")
            if key in seen:
                raise SpecError(f"parameter {key!r} given twice in spec for {self.name!r}")
            seen.add(key)
            _format_value(value)

    def __str__(self) -> str:
        return format_spec(self)

    def as_dict(self) -> dict[str, Value]:
        return dict(self.params)


def _format_value(value: Value) -> str:
    if isinstance(value, bool):
        raise SpecError(f"boolean parameter values are written 0 or 1, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"parameter values must be finite, got {value!r}")
        return repr(value)
    if isinstance(value, str) and _WORD.match(value):
        return value
    raise SpecError(f"bad parameter value {value!r}: use an integer, a float or a word")


def _parse_value(token: str) -> Value:
    if _INT.match(token):
        return int(token)
    if _FLOAT.match(token):
        return float(token)
    if _WORD.match(token):
        return token
    raise SpecError(f"bad value {token!r}: expected an integer, a float or a word")


def parse_spec(text: str) -> Spec:
    """Parse `name[:key=value[,key=value...]]`; a bad spec raises SpecError naming the bad token."""
    if not isinstance(text, str):
        raise SpecError(f"a spec is a string, got {type(text).__name__}")
    name, sep, rest = text.strip().partition(":")
    if not _NAME.match(name):
        raise SpecError(f"bad codec name {name!r} in spec {text!r}")
    params: list[tuple[str, Value]] = []
    if sep:
        if not rest:
            raise SpecError(f"spec {text!r} has ':' but no parameters")
        for item in rest.split(","):
            key, eq, raw = item.partition("=")
            if not eq or not key or not raw:
                raise SpecError(f"expected key=value, got {item!r} in spec {text!r}")
            if not _KEY.match(key):
                raise SpecError(f"bad parameter name {key!r} in spec {text!r}")
            params.append((key, _parse_value(raw)))
    return Spec(name, tuple(params))


def format_spec(spec: Spec) -> str:
    """The canonical text of `spec`."""
    if not spec.params:
        return spec.name
    return spec.name + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in spec.params)
