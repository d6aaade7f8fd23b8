"""The codec contract: scikit-learn lifecycle for training, CompressAI-style split of coding.

A codec maps float vectors to *codes* (a dict of integer or small-float arrays, first axis = items)
and back. `pack`/`unpack` turn codes into the bytes that are stored, so the reported rate is always
counted from bytes actually written; `estimated_bits` is the model's idea of the rate (e.g. -log2 p)
and is never reported as measured.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Self

import numpy as np

from .._errors import CodecMismatchError, FormatError, InputError, NotFittedError, SpecError
from .._exact import ExactMatrix
from .._validate import MAX_DIM, check_embeddings
from ..spec import Spec, Value, format_spec

Codes = dict[str, np.ndarray]

_STATE_FORMAT = "semzip-codec"
_STATE_VERSION = 1


class Codec(ABC):
    """Base class of every codec.

    Subclasses set `name` (spec name), `codec_id` (4 bytes, never reused), `spec_params`
    (parameter name -> type, in spec order), store their parameters in `__init__` unchanged, and
    implement `_fit`, `_quantize`, `reconstruct`, `pack`, `unpack`, `fixed_bits` and the state hooks.
    """

    name: ClassVar[str]
    codec_id: ClassVar[bytes]
    spec_params: ClassVar[dict[str, type]] = {}
    #: Parameters that set the rate: specs differing only in them are points of one rate-fidelity curve.
    rate_params: ClassVar[tuple[str, ...]] = ()
    #: What each spec parameter means (shown by `semzip codecs`, with its default).
    param_help: ClassVar[dict[str, str]] = {}
    #: Specs used by the registry-wide tests, smallest rate first.
    example_specs: ClassVar[tuple[str, ...]] = ()
    #: True when quantize(reconstruct(codes)) == codes is guaranteed.
    idempotent: ClassVar[bool] = True
    #: True for codecs learned on the collection they code (their state is its dictionary, paid by its items).
    collection: ClassVar[bool] = False
    #: Where the codec may stand in a stack of stages (`A+B`, codecs/stack.py): "any" (it codes any
    #: vector, so also what earlier stages left), "first" (it assumes unit CLIP embeddings) or
    #: "none" (collection codecs, whose state is the collection's own dictionary).
    stacking: ClassVar[str] = "first"
    #: Parameters added after a codec first shipped, with the value that means "absent": left out of
    #: the canonical spec at that value, so specs (and codec hashes) written before them stay valid.
    later_params: ClassVar[dict[str, Any]] = {}

    # ---- parameters and spec -------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: Spec) -> Self:
        """Instantiate from a parsed spec, checking names and types of its parameters."""
        if spec.name != cls.name:
            raise SpecError(f"spec {format_spec(spec)!r} is not a {cls.name!r} spec")
        kwargs: dict[str, Any] = {}
        for key, value in spec.params:
            if key not in cls.spec_params:
                accepted = ", ".join(cls.spec_params) or "none"
                raise SpecError(f"unknown parameter {key!r} for codec {cls.name!r}; accepted: {accepted}")
            kwargs[key] = _coerce(cls.name, key, value, cls.spec_params[key])
        codec = cls(**kwargs)
        codec._check_params()
        return codec

    def _check_params(self) -> None:
        """Validate parameters that do not depend on data; raise SpecError naming the bad one."""

    @property
    def spec(self) -> Spec:
        """The canonical spec of this codec, all structural parameters written out (but `later_params`
        at their "absent" value)."""
        return Spec(self.name, tuple((k, _spec_value(getattr(self, k))) for k in self.spec_params
                                     if k not in self.later_params or getattr(self, k) != self.later_params[k]))

    def refit_spec(self) -> Spec:
        """The spec to fit again on new data (compaction): this codec's, with whatever fit chose from
        a target set free to be chosen again."""
        return self.spec

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Name, id, one-paragraph summary and every spec parameter's type, default and meaning."""
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
        summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        params = {k: {"type": t.__name__, "default": _spec_value(defaults[k]), "meaning": cls.param_help.get(k, "")}
                  for k, t in cls.spec_params.items()}
        return {"name": cls.name, "id": cls.codec_id.decode(), "summary": summary, "params": params,
                "examples": list(cls.example_specs)}

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, as scikit-learn's `get_params`."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def set_params(self, **params: Any) -> Self:
        """Set constructor arguments, as scikit-learn's `set_params`; returns self. Spec parameters of
        a fitted codec are refused (its state was learned for them): make and fit a new codec."""
        known = self.get_params()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise SpecError(f"codec {self.name!r} has no parameter {', '.join(unknown)}; it has: {', '.join(known)}")
        if self.is_fitted and set(params) & set(self.spec_params):
            raise SpecError(f"cannot change {', '.join(sorted(set(params) & set(self.spec_params)))} of a fitted "
                            f"{format_spec(self.spec)}: make and fit a new codec")
        for name, value in params.items():
            setattr(self, name, value)
        self._check_params()
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({format_spec(self.spec)!r})"

    # ---- lifecycle -----------------------------------------------------------------------------
    def fit(self, X: Any) -> Self:
        """Learn the codec's state from training vectors X (n, d) and return self."""
        X = check_embeddings(X, name="training vectors")
        self._check_params()
        self._fit(X)
        self.n_features_in_ = int(X.shape[1])
        return self

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "n_features_in_")

    def check_is_fitted(self) -> None:
        """NotFittedError unless the codec is fitted (scikit-learn's `check_is_fitted`, as a method)."""
        if not self.is_fitted:
            raise NotFittedError(
                f"codec {format_spec(self.spec)!r} is not fitted: call fit(X) or load a fitted .smzc file"
            )

    def quantize(self, X: Any) -> Codes:
        """Codes of X; X must have the width the codec was fitted on."""
        self.check_is_fitted()
        return self._quantize(check_embeddings(X, dim=self.n_features_in_))

    def encode(self, X: Any) -> bytes:
        """Bytes of X's codes: what an archive stores for a batch of items."""
        return self.pack(self.quantize(X))

    def decode(self, data: bytes | memoryview, n: int) -> np.ndarray:
        """float32 (n, d) vectors from `n` items' bytes written by `encode`."""
        self.check_is_fitted()
        return self.reconstruct(self.unpack(data, n))

    def estimated_bits(self, X: Any) -> np.ndarray:
        """Model estimate of bits per item (float64, (n,)); the counted rate comes from `encode`."""
        codes = self.quantize(X)
        return np.full(_items(codes), self.fixed_bits, dtype=np.float64)

    # ---- compressed-domain search (semzip.search) ----------------------------------------------
    def scorer(self, queries: Any) -> Callable[[Codes], np.ndarray]:
        """`f(codes) -> float32 (n, q)`: inner products of the items' reconstructions with queries (q, d).

        The query-side work (rotation, lookup tables) is done once here, so `f` can be applied to
        every block of an archive. Codecs override `_scorer` to work on the codes directly. An item's
        score is a function of its code and the queries alone (not of the block it is scored in), so
        identical codes tie exactly and the engine's tie order (collection order) is well defined.
        """
        self.check_is_fitted()
        return self._scorer(check_embeddings(queries, dim=self.n_features_in_, name="queries"))

    def scores(self, codes: Codes, queries: Any) -> np.ndarray:
        """float32 (n, q) inner products of the reconstructions with queries; see `scorer`."""
        return self.scorer(queries)(codes)

    def _scorer(self, Q: np.ndarray) -> Callable[[Codes], np.ndarray]:
        product = ExactMatrix(Q.T)  # exact: an item's score depends on its code alone, not its neighbours
        return lambda codes: product.left_product(self.reconstruct(codes)).astype(np.float32)

    def norms(self, codes: Codes) -> np.ndarray:
        """float32 (n,) L2 norms of the reconstructions, for cosine scores; override when cheaper."""
        return np.linalg.norm(self.reconstruct(codes), axis=1)

    def partition_centroids(self) -> np.ndarray | None:
        """Unit centroids (L, d) of a first stage whose index every code starts with (rq's first
        codebook, the PQ-VAE's coarse stage, `coarse`, a stack's first stage): a partition an inverted index can take from the codes
        without clustering (`partition_of`). None for codecs without one."""
        return None

    def partition_of(self, codes: Codes) -> np.ndarray:
        """The first-stage index (n,) of each item's code, a row of `partition_centroids`."""
        raise NotImplementedError(f"codec {self.name!r} codes hold no first-stage index")

    @property
    def has_fast_index(self) -> bool:
        """True when the codec offers `fast_index` and `fast_ranker` (optional fast top-k search)."""
        return False

    def fast_index(self, codes: Codes) -> Any | None:
        """An index over a run of items' codes for `fast_ranker`; None without `has_fast_index`.

        Without one the engine scores every item with `scorer`. The index is built once per run of
        blocks (and kept by `Collection(preload=True)`); it must offer `items` (int) and `codes()`
        (the run's codes, for searches that need every score, such as `classify`).
        """
        self.check_is_fitted()
        return self._fast_index(codes) if self.has_fast_index else None

    def fast_ranker(self, queries: Any, normalize: bool,
                    shortlist: int | None = None) -> Callable[[Any, int, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """`f(index, keep, threshold) -> (positions (q, w), scores (q, w))` over a `fast_index`, or None.

        For each query, `f` returns every item of the run whose exact score (cosine when `normalize`)
        could enter a running top-`keep` whose k-th best is `threshold` (q,) (-inf while fewer than
        `keep` items are known), with exact scores; rows are padded with position -1, score -inf.
        So a running top-k merged with `f`'s rows equals exact search, without scoring every item.
        `shortlist`: candidates a query's first pass keeps (None: the codec's default); work, not results.
        """
        self.check_is_fitted()
        if not self.has_fast_index:
            return None
        return self._fast_ranker(check_embeddings(queries, dim=self.n_features_in_, name="queries"), normalize,
                                 shortlist)

    def _fast_index(self, codes: Codes) -> Any:
        raise NotImplementedError(f"codec {self.name!r} declares has_fast_index but has no _fast_index")

    def _fast_ranker(self, Q: np.ndarray, normalize: bool,
                     shortlist: int | None) -> Callable[[Any, int, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError(f"codec {self.name!r} declares has_fast_index but has no _fast_ranker")

    @property
    @abstractmethod
    def fixed_bits(self) -> float:
        """Bits per item of the codes written at fixed length, before any entropy coding."""

    @property
    def block_overhead_bits(self) -> int:
        """Most bits a block's payload spends beyond `fixed_bits` x its items (a symbol stream's
        mode word and padding): the bound on what data unlike the training set can cost."""
        return 64

    @abstractmethod
    def _fit(self, X: np.ndarray) -> None: ...

    @abstractmethod
    def _quantize(self, X: np.ndarray) -> Codes: ...

    @abstractmethod
    def reconstruct(self, codes: Codes) -> np.ndarray:
        """float32 (n, d) vectors from codes."""

    @abstractmethod
    def pack(self, codes: Codes) -> bytes:
        """Serialise codes for n items into bytes."""

    @abstractmethod
    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        """Inverse of `pack`; raises FormatError on bytes that cannot be n items' codes."""

    # ---- state ---------------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays (names -> arrays) that, with the spec and width, define the codec."""
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore learned arrays written by `get_state`; raise FormatError when inconsistent."""
        if state:
            raise FormatError(f"codec {self.name!r} has no learned arrays, got {sorted(state)}")

    def fit_info(self) -> dict[str, Any]:
        """Provenance of training (seed, iterations, losses...) stored beside the state, not hashed."""
        return {}

    @property
    def state_hash(self) -> str:
        """SHA-256 (hex) of everything that affects the bitstream: id, spec, width and arrays."""
        self.check_is_fitted()
        return _hash_state(self.codec_id, format_spec(self.spec), self.n_features_in_, self.get_state())

    def to_bytes(self) -> bytes:
        """The `.smzc` serialisation: safetensors with JSON metadata; see docs/FORMAT.md."""
        from safetensors.numpy import save

        self.check_is_fitted()
        state = self.get_state()
        meta = {
            "format": _STATE_FORMAT,
            "format_version": str(_STATE_VERSION),
            "codec_id": self.codec_id.decode("ascii"),
            "spec": format_spec(self.spec),
            "n_features_in": str(self.n_features_in_),
            "hash": _hash_state(self.codec_id, format_spec(self.spec), self.n_features_in_, state),
            "fit_info": json.dumps(self.fit_info(), sort_keys=True),
        }
        return save({k: np.ascontiguousarray(v) for k, v in state.items()}, metadata=meta)


class ProgressiveCodec(Codec):
    """A codec whose items' codes can stop at any stage boundary and still decode (`rq`). It meets a
    bit budget (`encode_within`; `container.write_archive(budget_bits=B)`), is cut to a lower one
    without the originals (`truncate_within`) and grown back by refinements (refine.py)."""

    @abstractmethod
    def encode_within(self, X: object, max_bits: float) -> bytes:
        """Bytes of X's codes in at most `max_bits` bits (a block's share of a budget)."""

    @abstractmethod
    def truncate_within(self, codes: Codes, max_bits: float) -> bytes:
        """Coded items cut to at most `max_bits` bits, each keeping a prefix of its stages."""

    @abstractmethod
    def refine_within(self, have: Codes, full: Codes, max_bits: float) -> np.ndarray:
        """Stage counts (n,) that grow `have`, a cut of `full`, to at most `max_bits` bits."""

    @abstractmethod
    def pack_refinement(self, have_stages: np.ndarray, codes: Codes) -> bytes:
        """What a receiver holding `have_stages` stages per item lacks of `codes`."""

    @abstractmethod
    def apply_refinement(self, have: Codes, data: bytes | memoryview) -> Codes:
        """`have` grown by a `pack_refinement` payload."""

    @abstractmethod
    def stage_counts(self, codes: Codes) -> np.ndarray:
        """Stages (n,) each item's code keeps."""

    @abstractmethod
    def with_stages(self, full: Codes, stages: np.ndarray) -> Codes:
        """`full` cut to `stages` (n,) stages per item."""

    @abstractmethod
    def is_cut_of(self, held: Codes, full: Codes) -> bool:
        """Whether every item of `held` keeps a prefix of its code in `full`."""


def check_codec_matches(given: Codec, spec: str, state_hash: str, what: str) -> None:
    """Refuse (CodecMismatchError) a fitted codec `given` for `what`, written with the codec `spec` of
    hash `state_hash`, unless it is that very codec."""
    given.check_is_fitted()
    if given.state_hash != state_hash:
        raise CodecMismatchError(f"wrong codec: {what} was written with {spec} (hash {state_hash[:12]}), "
                                 f"given {given.spec} (hash {given.state_hash[:12]})")


def as_progressive(codec: Codec, doing: str) -> ProgressiveCodec:
    """`codec` typed as progressive, or InputError saying that only such archives can be `doing`."""
    if not isinstance(codec, ProgressiveCodec):
        raise InputError(f"{codec.spec} codes are not progressive (a prefix of a code is no code); "
                         f"only rq archives (or stacks ending in rq) can be {doing}")
    return codec


def _coerce(codec: str, key: str, value: Value, kind: type) -> Any:
    where = f"{codec}:{key}"
    if kind is bool:
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise SpecError(f"{where} must be 0 or 1, got {value!r}")
    if kind is int:
        if isinstance(value, int):
            return value
        raise SpecError(f"{where} must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)):
            return float(value)
        raise SpecError(f"{where} must be a number, got {value!r}")
    if isinstance(value, str):
        return value
    raise SpecError(f"{where} must be a word, got {value!r}")


def _spec_value(value: Any) -> Value:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    raise TypeError(f"spec parameter of type {type(value).__name__}")


def _items(codes: Codes) -> int:
    return int(next(iter(codes.values())).shape[0])


def _hash_state(codec_id: bytes, spec: str, width: int, state: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(b"semzip-codec-v1\0" + codec_id + b"\0" + spec.encode() + b"\0" + str(width).encode())
    for name in sorted(state):
        arr = np.ascontiguousarray(state[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        h.update(f"\0{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} in fit_info (not JSON; `semzip info --json` could not print it)")


_MAX_STATE_VALUE = 1e12  # far above any fitted state (unit-scale embeddings), far below float32 overflow


def read_state(data: bytes) -> tuple[bytes, str, int, str, dict[str, np.ndarray], dict[str, Any]]:
    """Parse `.smzc` bytes: (codec_id, spec, width, hash, arrays, fit_info); FormatError on damage."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(bytes(data))
        header_len = int.from_bytes(bytes(data[:8]), "little")
        meta = json.loads(bytes(data[8 : 8 + header_len])).get("__metadata__") or {}
    except (SafetensorError, ValueError, TypeError, OverflowError, UnicodeDecodeError, RecursionError,
            AttributeError, KeyError) as exc:
        raise FormatError(f"not a readable semzip codec file ({exc})") from None
    if meta.get("format") != _STATE_FORMAT:
        raise FormatError("not a semzip codec file (missing 'format: semzip-codec' metadata)")
    if meta.get("format_version") != str(_STATE_VERSION):
        raise FormatError(f"unsupported codec file version {meta.get('format_version')!r}; this semzip reads 1")
    try:
        codec_id = meta["codec_id"].encode("ascii")
        spec = meta["spec"]
        width = int(meta["n_features_in"])
        stored = meta["hash"]
        if not 1 <= width <= MAX_DIM:
            raise ValueError(f"width {width} outside 1..{MAX_DIM}")
        fit_info = json.loads(meta.get("fit_info", "{}"), parse_constant=_refuse_constant)
    except (KeyError, ValueError, UnicodeEncodeError, RecursionError, TypeError, AttributeError) as exc:
        raise FormatError(f"codec file metadata is incomplete or malformed ({exc})") from None
    actual = _hash_state(codec_id, spec, width, arrays)
    if actual != stored:
        raise FormatError("codec file is damaged: its content hash does not match its arrays")
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and arr.size and not (np.isfinite(arr).all() and float(np.abs(arr).max()) <= _MAX_STATE_VALUE):
            raise FormatError(f"codec file array {name!r} holds non-finite or absurd values (|x| > {_MAX_STATE_VALUE:g}); "
                              "no fitted codec does, and it would decode to inf/NaN")
    return codec_id, spec, width, stored, arrays, fit_info
