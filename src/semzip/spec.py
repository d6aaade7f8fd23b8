"""The codec spec language: `name` or `name:key=value,key=value`, one parser, round-trippable.

Values are integers (`32`), floats (`0.9`, `1e-05`) or words (`opq`). Stages join with `+`
(`coarse:bits=8+rq:M=4,K=256`: each codes what the ones before it left), as faiss's index_factory
joins `OPQ16,IVF,PQ16`; a `+` before a digit is a float exponent's sign, so words hold no `+`.
`format_spec(parse_spec(s))` is canonical and `parse_spec(format_spec(spec)) == spec` for every spec.
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
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
#: Where one stage ends and the next begins: a `+` that is not a float exponent's sign.
_JOIN = re.compile(r"\+(?![0-9])")
#: The name of a spec made of stages.
STACK = "stack"


@dataclass(frozen=True)
class Spec:
    """A parsed codec spec: a codec name and its parameters in written order, or (name `stack`)
    the specs of its stages, in coding order."""

    name: str
    params: tuple[tuple[str, Value], ...] = ()
    stages: tuple[Spec, ...] = ()

    def __post_init__(self) -> None:
        if self.stages and (self.name != STACK or self.params or len(self.stages) < 2
                            or any(s.stages for s in self.stages)):
            raise SpecError(f"a spec of stages is named {STACK!r}, has no parameters of its own and joins "
                            "two or more single-codec specs")
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
    """Parse `name[:key=value[,key=value...]]`, or stages joined by `+`; a bad spec raises SpecError
    naming the bad token."""
    if not isinstance(text, str):
        raise SpecError(f"a spec is a string, got {type(text).__name__}")
    parts = _JOIN.split(text.strip())
    if len(parts) == 1:
        return _parse_one(parts[0], text)
    if not all(p.strip() for p in parts):
        raise SpecError(f"empty stage in spec {text!r}: stages are joined by single '+'")
    return Spec(STACK, stages=tuple(_parse_one(p.strip(), text) for p in parts))


def _parse_one(part: str, text: str) -> Spec:
    name, sep, rest = part.partition(":")
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
    if spec.stages:
        return "+".join(format_spec(s) for s in spec.stages)
    if not spec.params:
        return spec.name
    return spec.name + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in spec.params)
