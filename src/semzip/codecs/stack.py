"""Codecs composed of stages: `A+B+...`, each stage coding what the stages before it left.

The spec joins single-codec specs with `+` (semzip/spec.py), as faiss's index_factory joins
`OPQ16,IVF,PQ16`: `coarse:bits=8+rq:M=6,K=256` is an IVF-style coarse partition refined by residual
quantisation, `pqvae:...+transform:bits=96` the PQ-VAE topped up by a transform coder. Stage i is
fitted on the residuals of the training vectors after stages 0..i-1 and codes the residual of an
item; the reconstruction is the sum of the stages' reconstructions, in stage order (so the same
floats on every machine when each stage's are). Only codecs that code any vector (`stacking =
"any"`) may follow the first stage; collection codecs (smic) may not stand in a stack at all.

A block's payload is the stages' payloads in order, each but the last preceded by its length
(uint32 LE): the counted rate is the stages' bytes plus 4 bytes per block per extra stage.

A stack whose last stage is progressive (rq) is progressive too (`ProgressiveStack`): the earlier
stages' codes are kept whole and the last stage's are cut, so it meets any budget its earlier
stages leave room for, is truncated without the originals and grown by refinements.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Self, cast

import numpy as np

from .._errors import FormatError, InputError, SpecError
from .._validate import check_embeddings
from ..spec import STACK, Spec, format_spec
from ._base import Codec, Codes, ProgressiveCodec
from ._registry import fit_codec, make_codec, register

_LENGTH = struct.Struct("<I")


@register
class StackCodec(Codec):
    """`A+B+...`: stages joined by `+`, each coding the residual the stages before it left; the
    reconstruction is their sum. The first stage may be any codec but smic; later ones must code
    any vector (pq, rq, bq, transform, f16, int8)."""

    name = STACK
    codec_id = b"STAK"
    example_specs = ("coarse:bits=3+rq:M=4,K=16,beam=4", "pq:M=4,K=16,opq=0+rq:M=4,K=16,beam=4",
                     "bq:D=16,b=1+transform:bits=48")
    idempotent = False  # a decoded item's residuals need not quantise to the same codes again

    def __init__(self, stages: Sequence[Codec] = (), *, seed: int = 0, threads: int = 1,
                 progress: bool = False) -> None:
        self.stages = tuple(stages)
        self.seed = seed
        self.threads = threads
        self.progress = progress

    @classmethod
    def from_spec(cls, spec: Spec) -> Self:
        if spec.name != STACK or not spec.stages:
            raise SpecError(f"a stack is written as its stages joined by '+' (e.g. {cls.example_specs[1]}), "
                            f"not {format_spec(spec)!r}")
        stages = [make_codec(stage) for stage in spec.stages]
        kind = ProgressiveStack if isinstance(stages[-1], ProgressiveCodec) else StackCodec
        codec = cast(Self, kind(stages))
        codec._check_params()
        return codec

    def _check_params(self) -> None:
        if len(self.stages) < 2:
            raise SpecError(f"a stack needs two or more stages, got {len(self.stages)}")
        for i, stage in enumerate(self.stages):
            if stage.stacking == "none" or (i and stage.stacking != "any"):
                where = "stand in a stack" if stage.stacking == "none" else "follow another stage"
                why = ("it codes whole collections with their own dictionary" if stage.stacking == "none"
                       else "it assumes unit CLIP embeddings, not the residuals earlier stages leave")
                raise SpecError(f"{format_spec(stage.spec)} cannot {where}: {why}")

    @property
    def spec(self) -> Spec:
        return Spec(STACK, stages=tuple(stage.spec for stage in self.stages))

    def set_params(self, **params: Any) -> Self:
        if self.is_fitted and "stages" in params:
            raise SpecError(f"cannot change the stages of a fitted {format_spec(self.spec)}: make and fit a new codec")
        return super().set_params(**params)

    @property
    def fixed_bits(self) -> float:
        return float(sum(stage.fixed_bits for stage in self.stages))

    @property
    def block_overhead_bits(self) -> int:
        """The stages' overheads plus a 32-bit length per stage but the last."""
        return sum(stage.block_overhead_bits for stage in self.stages) + 8 * _LENGTH.size * (len(self.stages) - 1)

    # ---- training and coding -----------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        R = X
        for stage in self.stages:
            fit_codec(stage, R, seed=self.seed, threads=self.threads, progress=self.progress)
            R = R - stage.reconstruct(stage.quantize(R))

    def _quantize(self, X: np.ndarray) -> Codes:
        head, R = self._head(X)
        return head | self._prefixed(len(self.stages) - 1, self.stages[-1].quantize(R))

    def _head(self, X: np.ndarray) -> tuple[Codes, np.ndarray]:
        """Codes of every stage but the last, and the residual they leave it."""
        out: Codes = {}
        R = X
        for i, stage in enumerate(self.stages[:-1]):
            codes = stage.quantize(R)
            out |= self._prefixed(i, codes)
            R = R - stage.reconstruct(codes)
        return out, R

    @staticmethod
    def _prefixed(i: int, codes: Codes) -> Codes:
        return {f"{i}.{key}": value for key, value in codes.items()}

    def _parts(self, arrays: dict[str, np.ndarray], what: str = "codes") -> list[dict[str, np.ndarray]]:
        """Each stage's codes (or state arrays), keys without their `<stage>.` prefix."""
        parts: list[dict[str, np.ndarray]] = [{} for _ in self.stages]
        for key, value in arrays.items():
            i, _, name = key.partition(".")
            if not i.isdigit() or int(i) >= len(self.stages):
                raise FormatError(f"stack {what} hold {key!r}, not '<stage>.<name>' of its {len(self.stages)} stages")
            parts[int(i)][name] = value
        return parts

    def reconstruct(self, codes: Codes) -> np.ndarray:
        total: np.ndarray | None = None
        for stage, part in zip(self.stages, self._parts(codes)):
            Y = stage.reconstruct(part)
            total = Y if total is None else total + Y
        assert total is not None  # a stack has two or more stages
        return total.astype(np.float32)

    def _scorer(self, Q: np.ndarray) -> Callable[[Codes], np.ndarray]:
        """The sum of the stages' scores: each is a function of its stage's codes and the queries."""
        scorers = [stage.scorer(Q) for stage in self.stages]

        def score(codes: Codes) -> np.ndarray:
            parts = self._parts(codes)
            total = scorers[0](parts[0])
            for f, part in zip(scorers[1:], parts[1:]):
                total = total + f(part)
            return total

        return score

    def estimated_bits(self, X: Any) -> np.ndarray:
        total = np.zeros(len(X))
        R = np.asarray(X, dtype=np.float32)
        for stage in self.stages:
            total = total + stage.estimated_bits(R)
            R = R - stage.reconstruct(stage.quantize(R))
        return total

    def partition_centroids(self) -> np.ndarray | None:
        return self.stages[0].partition_centroids()

    def partition_of(self, codes: Codes) -> np.ndarray:
        return self.stages[0].partition_of(self._parts(codes)[0])

    # ---- bytes and state ---------------------------------------------------------------------
    def pack(self, codes: Codes) -> bytes:
        parts = self._parts(codes)
        return self._pack_head(parts[:-1]) + self.stages[-1].pack(parts[-1])

    def _pack_head(self, parts: list[Codes]) -> bytes:
        """The lengths and payloads of every stage but the last: all of a block's bytes before the last stage's."""
        payloads = [stage.pack(part) for stage, part in zip(self.stages, parts)]
        return b"".join(_LENGTH.pack(len(p)) for p in payloads) + b"".join(payloads)

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        view = memoryview(data).cast("B")
        head = _LENGTH.size * (len(self.stages) - 1)
        if len(view) < head:
            raise FormatError(f"stack payload of {len(view)} bytes is shorter than its {head}-byte length table")
        sizes = [_LENGTH.unpack_from(view, _LENGTH.size * i)[0] for i in range(len(self.stages) - 1)]
        if sum(sizes) > len(view) - head:
            raise FormatError(f"stack payload's stage lengths {sizes} overrun its {len(view) - head} bytes")
        sizes.append(len(view) - head - sum(sizes))
        out: Codes = {}
        at = head
        for i, (stage, size) in enumerate(zip(self.stages, sizes)):
            out |= {f"{i}.{key}": value for key, value in stage.unpack(view[at : at + size], n).items()}
            at += size
        return out

    def get_state(self) -> dict[str, np.ndarray]:
        return {f"{i}.{key}": value for i, stage in enumerate(self.stages) for key, value in stage.get_state().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        parts = self._parts(state, "codec file arrays")
        for stage, part in zip(self.stages, parts):
            stage.n_features_in_ = self.n_features_in_
            stage._set_state(part)

    def fit_info(self) -> dict[str, Any]:
        return {"seed": self.seed, "threads": self.threads, "stages": [stage.fit_info() for stage in self.stages]}


class ProgressiveStack(StackCodec, ProgressiveCodec):
    """A stack ending in a progressive stage (`coarse:bits=8+rq:M=8,K=256`): the earlier stages'
    codes are whole in every cut, the last stage's are cut and grown as that stage's own are."""

    @property
    def _last(self) -> ProgressiveCodec:
        return cast(ProgressiveCodec, self.stages[-1])

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.stages[-1], ProgressiveCodec):
            raise SpecError(f"a progressive stack ends in a progressive stage, not {format_spec(self.stages[-1].spec)}")

    def _split(self, codes: Codes) -> tuple[Codes, Codes]:
        """(the earlier stages' codes, prefixed as stored; the last stage's, unprefixed)."""
        last = f"{len(self.stages) - 1}."
        return ({k: v for k, v in codes.items() if not k.startswith(last)},
                {k[len(last):]: v for k, v in codes.items() if k.startswith(last)})

    def _rest(self, head: bytes, max_bits: float, n: int) -> float:
        """What `max_bits` leaves the last stage after the earlier stages' `head` bytes."""
        left = max_bits - 8 * len(head)
        if left <= 0:
            raise InputError(f"{format_spec(self.spec)}: {max_bits / n:.1f} bits per item are below what its first stages "
                             f"alone spend on this block ({8 * len(head) / n:.1f}); raise the budget or drop a stage")
        return left

    def encode_within(self, X: object, max_bits: float) -> bytes:
        self.check_is_fitted()
        X = check_embeddings(X, dim=self.n_features_in_)
        codes, R = self._head(X)
        head = self._pack_head(self._parts(codes)[:-1])
        return head + self._last.encode_within(R, self._rest(head, max_bits, len(X)))

    def truncate_within(self, codes: Codes, max_bits: float) -> bytes:
        first, last = self._split(codes)
        head = self._pack_head(self._parts(first)[:-1])
        return head + self._last.truncate_within(last, self._rest(head, max_bits, len(self.stage_counts(codes))))

    def refine_within(self, have: Codes, full: Codes, max_bits: float) -> np.ndarray:
        first, last = self._split(full)
        head = self._pack_head(self._parts(first)[:-1])
        return self._last.refine_within(self._split(have)[1], last, self._rest(head, max_bits, len(self.stage_counts(full))))

    def pack_refinement(self, have_stages: np.ndarray, codes: Codes) -> bytes:
        return self._last.pack_refinement(have_stages, self._split(codes)[1])

    def apply_refinement(self, have: Codes, data: bytes | memoryview) -> Codes:
        first, last = self._split(have)
        return first | self._prefixed(len(self.stages) - 1, self._last.apply_refinement(last, data))

    def stage_counts(self, codes: Codes) -> np.ndarray:
        return self._last.stage_counts(self._split(codes)[1])

    def with_stages(self, full: Codes, stages: np.ndarray) -> Codes:
        first, last = self._split(full)
        return first | self._prefixed(len(self.stages) - 1, self._last.with_stages(last, stages))

    def is_cut_of(self, held: Codes, full: Codes) -> bool:
        (a, x), (b, y) = self._split(held), self._split(full)
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a) and self._last.is_cut_of(x, y)
