"""SMIC: a collection codec with a learned, quantised semantic dictionary (Bachard & Maugey).

Every item is coded as the collection mean plus a few atoms of a dictionary learned on the
collection itself; decoding is projection onto the dictionary, re-normalised. The dictionary is the
codec's state, so an archive that embeds its codec pays for it once (its CODC section) and each item
pays only for its atom indices and quantised coefficients, entropy-coded with counts learned on the
collection. See docs/SMIC.md for the method, the measurements behind its choices and the format.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import numpy as np

from .._errors import FormatError, InputError, SpecError
from .._layout import overhead_bytes
from .._validate import l2_normalize
from ..entropy import FrequencyTable, SymbolReader, encode_symbols
from ..spec import Spec
from ._base import Codec, Codes, _spec_value
from ._dictionary import lloyd_levels, mod_update, pursuit_exact, quantised_pursuit, quantization_aware_kmeans
from ._rate import amortised_bits, dictionary_sizes, stop_counts, stopping_threshold
from ._registry import register

#: Step of the uniform quantiser minimising MSE for a unit Gaussian, by bits (Max 1960).
_GAUSS_STEP = {1: 1.596, 2: 0.9957, 3: 0.5860, 4: 0.3352, 5: 0.1881, 6: 0.1041, 7: 0.0573, 8: 0.0312}
#: Largest stored count of the learned frequency tables (they are stored as uint16).
_MAX_STORED_COUNT = 65535
#: Fewest atoms a dictionary chosen at fit may have: below it the collection decodes to a handful of
#: vectors (measured: 5 atoms on 2,465 Caltech images gave nearest-centroid top-1 0.20, float 0.91).
_MIN_ATOMS = 16


@dataclass(frozen=True)
class _Stream:
    """One symbol stream of a block: its table, the codes field it carries (`count` as count - 1),
    whether it holds one symbol per item or one per pursuit step after the first that an item uses,
    and whether it exists only for k > 1 or only for coef > 0."""

    table: str
    field: str
    per_step: bool
    needs_k: bool = False
    needs_coef: bool = False

    def present(self, codec: SMICCodec) -> bool:
        return (codec.k > 1 or not self.needs_k) and (codec.coef > 0 or not self.needs_coef)

    def alphabet(self, codec: SMICCodec) -> int:
        return {"count": codec.k, "atoms": codec.atoms_, "levels": 1 << codec.coef}[self.field]

    def symbols(self, codes: Codes, more: np.ndarray) -> np.ndarray:
        """This stream's symbols (1-D) from codes; `more` (n, k-1) marks the steps after the first used."""
        if self.field == "count":
            return np.asarray(codes["count"]) - 1
        values = np.asarray(codes[self.field])
        return values[:, 1:][more] if self.per_step else values[:, 0]


#: The block layout, in stream order: pack, unpack, estimated_bits, the fitted tables and the codec
#: file's table arrays are all derived from it (docs/FORMAT.md, SMIC).
_STREAMS = (
    _Stream("count", "count", per_step=False, needs_k=True),
    _Stream("first", "atoms", per_step=False),
    _Stream("coef_first", "levels", per_step=False, needs_coef=True),
    _Stream("next", "atoms", per_step=True, needs_k=True),
    _Stream("coef_next", "levels", per_step=True, needs_k=True, needs_coef=True),
)


@register
class SMICCodec(Codec):
    """`smic:atoms=1024,k=2,coef=4,dbits=1,bits=0,cos=0`: learned dictionary, k atoms per item.

    Defaults (atoms=0, k=1, coef=0, dbits=1) spend the rate on the dictionary, which measured best
    for semantic tasks at a few tens of bits per item (docs/SMIC.md).

    atoms: dictionary size (0 = chosen at fit); k: most atoms per item; coef: bits per coefficient
    (0 = one learned value); dbits: bits per dictionary value (1-8, or 16 for float16); bits: target
    mean bits per item, dictionary included (0 = none); cos: target mean cosine to the original
    (0 = none). A target sets each item's atom count through a learned stopping threshold.
    """

    name = "smic"
    codec_id = b"SMIC"
    stacking = "none"
    #: What fit measured on the training items (fit_info); absent from a loaded codec.
    _train_bits: float
    _train_cos: float
    spec_params = {"atoms": int, "k": int, "coef": int, "dbits": int, "bits": float, "cos": float}
    example_specs = (
        "smic:atoms=16,k=1,coef=0,dbits=2,bits=0.0,cos=0.0",
        "smic:atoms=32,k=4,coef=4,dbits=4,bits=0.0,cos=0.0",
        "smic:atoms=64,k=8,coef=5,dbits=8,bits=0.0,cos=0.0",
    )
    idempotent = False  # greedy pursuit on a decoded vector may pick another atom of equal gain
    collection = True
    rate_params = ("atoms", "k", "coef", "dbits", "bits", "cos")
    param_help = {"atoms": "dictionary size (0 = chosen at fit from the budget and the collection size)",
                  "k": "most atoms per item",
                  "coef": "bits per coefficient (0 = one learned value per step)",
                  "dbits": "bits per dictionary value (1-8, or 16 for float16)",
                  "bits": "target mean bits per item, dictionary and archive included (0 = none)",
                  "cos": "target mean cosine to the originals instead of a bits target (0 = none)"}

    def __init__(self, atoms: int = 0, k: int = 1, coef: int = 0, dbits: int = 1, bits: float = 0.0,
                 cos: float = 0.0, *, seed: int = 0, niter: int = 20, mod_iter: int = 4, search: int = 3) -> None:
        """Size: a scikit-learn estimator takes every hyper-parameter as a constructor keyword
        (`get_params`/`set_params` read them): the spec's structural ones, then the training options."""
        self.atoms = atoms
        self.k = k
        self.coef = coef
        self.dbits = dbits
        self.bits = bits
        self.cos = cos
        self.seed = seed
        self.niter = niter
        self.mod_iter = mod_iter
        self.search = search

    def _check_params(self) -> None:
        if self.atoms != 0 and not 2 <= self.atoms <= 65536:
            raise SpecError(f"smic:atoms must be 0 (chosen at fit) or in [2, 65536], got {self.atoms}")
        if not 1 <= self.k <= 32:
            raise SpecError(f"smic:k (atoms per item) must be in [1, 32], got {self.k}")
        if not 0 <= self.coef <= 8:
            raise SpecError(f"smic:coef (bits per coefficient) must be in [0, 8], got {self.coef}")
        if self.dbits not in (*_GAUSS_STEP, 16):
            raise SpecError(f"smic:dbits (bits per dictionary value) must be 1-8 or 16, got {self.dbits}")
        if self.bits < 0:
            raise SpecError(f"smic:bits (target bits per item) must be >= 0, got {self.bits}")
        if not 0 <= self.cos < 1:
            raise SpecError(f"smic:cos (target cosine) must be in [0, 1), got {self.cos}")
        if self.bits and self.cos:
            raise SpecError("smic: give a bits= target or a cos= target, not both")

    @property
    def spec(self) -> Spec:
        """Canonical spec; once fitted, `atoms` is the dictionary size in force, never 0."""
        atoms = getattr(self, "atoms_", self.atoms)
        values = dict(atoms=atoms, k=self.k, coef=self.coef, dbits=self.dbits, bits=self.bits, cos=self.cos)
        return Spec(self.name, tuple((k, _spec_value(values[k])) for k in self.spec_params))

    def refit_spec(self) -> Spec:
        """With a bits= target, the dictionary size is chosen again (atoms=0)."""
        spec = self.spec
        return replace(spec, params=tuple((k, 0 if k == "atoms" else v) for k, v in spec.params)) if self.bits else spec

    @property
    def fixed_bits(self) -> float:
        self.check_is_fitted()
        count = (self.k - 1).bit_length() if self.k > 1 else 0
        return float(count + self.k * ((self.atoms_ - 1).bit_length() + self.coef))

    # ---- training --------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        n, d = X.shape
        if self.atoms and n < self.atoms:
            raise InputError(f"smic:atoms={self.atoms} needs at least {self.atoms} training vectors, got {n}")
        if n < 2:
            raise InputError(f"smic needs at least 2 training vectors, got {n}")
        self.n_features_in_ = d  # to_bytes() is measured during rate control
        try:
            candidates = [self.atoms] if self.atoms else _atom_candidates(n, d, self)
            best: tuple[float, float, int, dict[str, np.ndarray]] | None = None  # cos, bits, atoms, state
            tried = 0
            for atoms in candidates:
                self._fit_dictionary(X, atoms)
                codes = self._choose_threshold(X)
                if codes is None:
                    continue
                self._set_tables(codes)
                score = float(codes["cos"].mean())
                if best is None or score > best[0]:
                    best = (score, self._counted_bits(codes, n), atoms,
                            {k: v.copy() for k, v in self.get_state().items()})
                tried += 1
                # one atom and one coefficient value per item: a larger dictionary only fits better
                if tried >= (1 if self.k == 1 and self.coef == 0 else self.search):
                    break
            if best is None:
                self._refuse_target(X)
            self._train_cos, self._train_bits, atoms, state = best
            self._restore(state, atoms)  # the best candidate as its codec file will hold it
            if not self.atoms and self.atoms_ < _MIN_ATOMS:
                self._refuse_collapse(n, d)
        except BaseException:
            for attr in ("n_features_in_", "atoms_", "_train_cos", "_train_bits"):  # left unfitted
                if hasattr(self, attr):
                    delattr(self, attr)
            raise

    def _fit_dictionary(self, X: np.ndarray, atoms: int) -> None:
        """Mean, dictionary (k-means init, MOD updates, quantisation-aware) and coefficient levels."""
        rng = np.random.default_rng(self.seed)
        self.atoms_ = atoms
        self.mean_ = X.mean(axis=0).astype(np.float16)
        R = X - self.mean_.astype(np.float32)
        D = quantization_aware_kmeans(R, atoms, self.niter, rng, self._quantize_dictionary, shared_norm=self.coef == 0)
        for _ in range(self.mod_iter if self.k > 1 else 0):
            idx, coef = pursuit_exact(R, D, self.k)
            D = mod_update(R, idx, coef, D)
        self._store_dictionary(D)
        idx, coef = pursuit_exact(R, self.atoms_f32_, self.k)
        first = coef[:, 0]
        rest = coef[:, 1:].ravel() if self.k > 1 else first
        L = 1 << self.coef
        self.levels_ = np.stack([lloyd_levels(first, L), lloyd_levels(rest, L)]).astype(np.float32)

    def _quantize_dictionary(self, D: np.ndarray) -> np.ndarray:
        """Unit atoms as the decoder will see them after storage at `dbits` per value."""
        if self.dbits == 16:
            return l2_normalize(l2_normalize(D).astype(np.float16).astype(np.float32))
        step = self._steps(l2_normalize(D))
        return l2_normalize(_dequantize(_quantize_values(l2_normalize(D), step, self.dbits), step))

    def _steps(self, U: np.ndarray) -> np.ndarray:
        sigma = np.maximum(U.std(axis=0), 1e-4)
        return (sigma * _GAUSS_STEP[self.dbits]).astype(np.float16).astype(np.float32)

    def _store_dictionary(self, D: np.ndarray) -> None:
        U = l2_normalize(D)
        if self.dbits == 16:
            self.dictionary_ = U.astype(np.float16)
            self.steps_ = None
        else:
            self.steps_ = self._steps(U)
            self.dictionary_ = _quantize_values(U, self.steps_, self.dbits)
        self._prepare()

    def _prepare(self) -> None:
        """Decoder-side float32 atoms from the stored dictionary."""
        if self.steps_ is None:
            self.atoms_f32_ = l2_normalize(self.dictionary_.astype(np.float32))
        else:
            self.atoms_f32_ = l2_normalize(_dequantize(self.dictionary_, self.steps_))
        self._mean32 = self.mean_.astype(np.float32)
        self._dictionary_stream: tuple[np.ndarray, np.ndarray] | None = None
        # (atom Gram matrix, atom . mean): derived on first use; reset here, whenever the atoms change
        self._gram: tuple[np.ndarray, np.ndarray] | None = None

    def _choose_threshold(self, X: np.ndarray) -> Codes | None:
        """Codes at the per-item stopping cosine meeting the target (`_rate.stopping_threshold`);
        None when the target cannot be met."""
        idx, lev, cos = self._pursuit(X)
        fits = self._fits_budget(idx, lev, cos) if self.bits else None
        threshold = stopping_threshold(cos, target_cos=self.cos, fits=fits)
        if threshold is None:
            return None
        self.threshold_ = threshold
        return _truncate(idx, lev, cos, threshold)

    def _fits_budget(self, idx: np.ndarray, lev: np.ndarray, cos: np.ndarray) -> Callable[[float], bool]:
        """Whether the archive of these items, stopped at a threshold, fits `bits` per item: its
        bytes counted with the tables that threshold gives (the state's size is fixed by its shapes)."""
        budget = self.bits * len(idx)
        self.threshold_ = 0.0
        self._set_tables(_truncate(idx, lev, cos, 0.0))
        state_bytes = len(self.to_bytes())  # every state array has a fixed shape

        def fits(t: float) -> bool:
            codes = _truncate(idx, lev, cos, t)
            self.threshold_ = t
            self._set_tables(codes)
            return self._counted_bits(codes, len(idx), state_bytes) <= budget

        return fits

    def _refuse_target(self, X: np.ndarray) -> NoReturn:
        if self.cos:
            raise InputError(f"smic:cos={self.cos} cannot be met on average with atoms={self.atoms_}, "
                             f"k={self.k}, coef={self.coef}, dbits={self.dbits}: raise k, coef or atoms")
        codes = _truncate(*self._pursuit(X), 0.0)
        self._set_tables(codes)
        need = self._counted_bits(codes, len(X)) / len(X)
        raise InputError(f"smic:bits={self.bits} cannot be met on {len(X)} items: the smallest dictionary "
                         f"tried ({self.atoms_} atoms at dbits={self.dbits}) already needs {need:.1f} bits "
                         "per item with one atom each; give more bits, a larger collection or lower dbits")

    def _refuse_collapse(self, n: int, d: int) -> NoReturn:
        """A budget that buys only a handful of atoms would decode the collection to a handful of
        vectors: refuse, saying what it would give and what to do instead."""
        what = f"smic:bits={self.bits:g}" if self.bits else "smic with atoms=0"
        need = _amortised_bits(n, d, self, _MIN_ATOMS * 8)
        distinct = (f"at most {self.atoms_} distinct decoded vectors" if self.k == 1 and self.coef == 0
                    else f"items built from only {self.atoms_} directions")
        raise InputError(
            f"{what} on {n} items leaves room for only {self.atoms_} dictionary atoms ({distinct}; "
            f"nearest-neighbour and zero-shot accuracy collapse): a collection codec pays its dictionary "
            f"from its items' bits. Use a per-item codec fitted on a training pool and shared "
            f"(`semzip fit pq:M=2,K=256 POOL -o c.smzc`, then `compress --codec c.smzc --shared`), "
            f"about {need:.0f} bits per item for a {_MIN_ATOMS * 8}-atom dictionary, or a larger collection")

    def _streams(self) -> list[_Stream]:
        return [s for s in _STREAMS if s.present(self)]

    def _more(self, count: np.ndarray) -> np.ndarray:
        """(n, k-1): which pursuit steps after the first each item uses."""
        return np.arange(self.k)[None, 1:] < np.asarray(count)[:, None]

    def _set_tables(self, codes: Codes) -> None:
        more = self._more(codes["count"])
        self.tables_ = {s.table: _table(s.symbols(codes, more), s.alphabet(self)) for s in self._streams()}

    def _counted_bits(self, codes: Codes, n: int, state_bytes: int | None = None) -> float:
        """Bits an archive of these n items would take: codec state, payload and headers."""
        state = len(self.to_bytes()) if state_bytes is None else state_bytes + 64  # + fit_info digits
        return 8.0 * (state + len(self.pack(codes)) + overhead_bytes(n))

    # ---- coding ----------------------------------------------------------------------------------
    def _pursuit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return quantised_pursuit(X, self.atoms_f32_, self._mean32, self.levels_, self.k)

    def _quantize(self, X: np.ndarray) -> Codes:
        codes = _truncate(*self._pursuit(X), self.threshold_)
        del codes["cos"]
        return codes

    def reconstruct(self, codes: Codes) -> np.ndarray:
        cnt, idx, lev = codes["count"], codes["atoms"], codes["levels"]
        Y = np.repeat(self._mean32[None, :], len(cnt), axis=0)
        for step in range(self.k):
            use = cnt > step
            if not use.any():
                break
            c = self.levels_[min(step, 1)][lev[use, step]]
            Y[use] += c[:, None] * self.atoms_f32_[idx[use, step]]
        return l2_normalize(Y)

    def _terms(self, codes: Codes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(items, atom index, coefficient) of each pursuit step actually used."""
        cnt, idx, lev = codes["count"], codes["atoms"], codes["levels"]
        out = []
        for step in range(self.k):
            use = np.flatnonzero(cnt > step)
            if len(use):
                out.append((use, idx[use, step], self.levels_[min(step, 1)][lev[use, step]]))
        return out

    def _scorer(self, Q: np.ndarray) -> Callable[[Codes], np.ndarray]:
        """Sparse products: atoms and mean against the queries once, then each item sums its few terms,
        divided by the unnormalised reconstruction's norm (from the atoms' Gram matrix)."""
        atom_q, mean_q = self.atoms_f32_ @ Q.T, self._mean32 @ Q.T

        def score(codes: Codes) -> np.ndarray:
            S = np.repeat(mean_q[None, :], len(codes["count"]), axis=0)
            for use, atom, c in self._terms(codes):
                S[use] += c[:, None] * atom_q[atom]
            norms = self._raw_norms(codes)
            return (S / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)

        return score

    def _raw_norms(self, codes: Codes) -> np.ndarray:
        if self._gram is None:
            self._gram = self.atoms_f32_ @ self.atoms_f32_.T, self.atoms_f32_ @ self._mean32
        gram, mean_atom = self._gram
        sq = np.full(len(codes["count"]), float(self._mean32 @ self._mean32))
        terms = self._terms(codes)
        for i, (use, atom, c) in enumerate(terms):
            sq[use] += 2 * c * mean_atom[atom] + c * c * gram[atom, atom]
            for use2, atom2, c2 in terms[i + 1 :]:  # later steps cover a subset of earlier ones' items
                pos = np.searchsorted(use, use2)
                sq[use2] += 2 * c[pos] * c2 * gram[atom[pos], atom2]
        return np.sqrt(np.maximum(sq, 0.0))

    def norms(self, codes: Codes) -> np.ndarray:
        """Reconstructions are unit vectors (zero only if the mean and atoms cancel exactly)."""
        return (self._raw_norms(codes) > 1e-12).astype(np.float32)

    def pack(self, codes: Codes) -> bytes:
        more = self._more(codes["count"])
        parts = [(self.tables_[s.table], s.symbols(codes, more)[:, None]) for s in self._streams()]
        return encode_symbols([p for p in parts if len(p[1])])

    def unpack(self, data: bytes | memoryview, n: int) -> Codes:
        reader = SymbolReader(data)
        codes = {"count": np.ones(n, dtype=np.int32), "atoms": np.zeros((n, self.k), dtype=np.int32),
                 "levels": np.zeros((n, self.k), dtype=np.int32)}
        more = self._more(codes["count"])
        for s in self._streams():  # the count stream comes first: it says which later steps are used
            size = int(more.sum()) if s.per_step else n
            if not size:
                continue
            values = reader.read(self.tables_[s.table], size)[:, 0]
            if s.field == "count":
                codes["count"] = (values + 1).astype(np.int32)
                more = self._more(codes["count"])
            elif s.per_step:
                codes[s.field][:, 1:][more] = values
            else:
                codes[s.field][:, 0] = values
        reader.finish()
        return codes

    def estimated_bits(self, X: Any) -> np.ndarray:
        codes = self.quantize(X)
        cnt = codes["count"]
        more = self._more(cnt)
        bits = np.zeros(len(cnt))
        for s in self._streams():
            info = self.tables_[s.table].information_bits(s.symbols(codes, more)[:, None])
            if s.per_step:  # step symbols in item-major order: each item's used steps in turn
                np.add.at(bits, np.nonzero(more)[0], info)
            else:
                bits += info
        return bits

    # ---- state -----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        state = {
            "mean": self.mean_,
            "levels": self.levels_,
            "threshold": np.array([self.threshold_], dtype=np.float32),
        }
        if self.steps_ is None:
            state["dictionary"] = self.dictionary_
        else:
            if self._dictionary_stream is None:
                values = self.dictionary_.reshape(-1, 1).astype(np.int32) + (1 << (self.dbits - 1))
                table = _table(values[:, 0], 1 << self.dbits)
                stream = np.frombuffer(encode_symbols([(table, values)]), dtype=np.uint8)
                self._dictionary_stream = (stream, table.counts.astype(np.uint16))
            state["dictionary"], state["dictionary_counts"] = self._dictionary_stream
            state["steps"] = self.steps_.astype(np.float16)
        for key, table in self.tables_.items():
            state[f"counts_{key}"] = table.counts.astype(np.uint16)
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        if self.atoms == 0:
            raise FormatError("smic codec file: its spec must name the dictionary size (atoms=0)")
        self._restore(state, self.atoms)

    def _restore(self, state: dict[str, np.ndarray], atoms: int) -> None:
        """The learned state from `get_state`'s arrays (a codec file's, or the best candidate at fit)."""
        d, A, L = self.n_features_in_, atoms, 1 << self.coef
        self.atoms_ = A  # the stream alphabets below read it
        expect: dict[str, tuple[tuple[int, ...], str]] = {
            "mean": ((d,), "f2"), "levels": ((2, L), "f4"), "threshold": ((1,), "f4"),
        } | {f"counts_{s.table}": ((1, s.alphabet(self)), "u2") for s in self._streams()}
        if self.dbits == 16:
            expect["dictionary"] = ((A, d), "f2")
        else:
            expect |= {"dictionary_counts": ((1, 1 << self.dbits), "u2"), "steps": ((d,), "f2")}
        dictionary = state.get("dictionary")
        if self.dbits != 16 and (dictionary is None or dictionary.dtype != np.uint8 or dictionary.ndim != 1):
            raise FormatError("smic codec file: the dictionary section must be a uint8 byte stream")
        wrong = {key: (state[key].shape, state[key].dtype.str) for key in state if key in expect
                 and (state[key].shape != expect[key][0] or state[key].dtype != np.dtype(expect[key][1]))}
        missing = set(expect) - set(state)
        extra = set(state) - set(expect) - {"dictionary"}
        if wrong or missing or extra:
            raise FormatError(f"smic codec file arrays do not match {self.spec} at width {d}: "
                              f"wrong {wrong}, missing {sorted(missing)}, unexpected {sorted(extra)}")
        try:
            self.mean_ = state["mean"]
            self.levels_ = state["levels"].astype(np.float32)
            self.threshold_ = float(state["threshold"][0])
            if self.dbits == 16:
                self.dictionary_, self.steps_ = state["dictionary"], None
            else:
                table = FrequencyTable(state["dictionary_counts"].astype(np.uint32))
                reader = SymbolReader(state["dictionary"].tobytes())
                values = reader.read(table, A * d)
                reader.finish()
                self.dictionary_ = (values.reshape(A, d) - (1 << (self.dbits - 1))).astype(np.int8)
                self.steps_ = state["steps"].astype(np.float32)
            self.tables_ = {key[7:]: FrequencyTable(state[key].astype(np.uint32))
                            for key in expect if key.startswith("counts_")}
        except FormatError as exc:
            raise FormatError(f"smic codec file: damaged dictionary or tables ({exc})") from None
        if not (np.isfinite(self.levels_).all() and np.isfinite(self.mean_).all()):
            raise FormatError("smic codec file: non-finite mean or coefficient levels")
        self._prepare()
        if self.dbits != 16:
            self._dictionary_stream = (state["dictionary"], state["dictionary_counts"])

    def fit_info(self) -> dict[str, object]:
        info: dict[str, object] = {"seed": self.seed, "niter": self.niter, "mod_iter": self.mod_iter}
        if hasattr(self, "_train_bits"):
            info |= {"search": self.search, "train_counted_bits": self._train_bits, "train_mean_cos": self._train_cos}
        return info


# ---- helpers -------------------------------------------------------------------------------------
def _amortised_bits(n: int, d: int, codec: SMICCodec, atoms: int) -> float:
    """Estimated archive bits per item of a dictionary of `atoms` atoms, one atom per item."""
    item_bits = 0.97 * math.log2(atoms) + 0.8 * codec.coef + (0.3 if codec.k > 1 else 0)
    return amortised_bits(n, d, atoms, 16 if codec.dbits == 16 else codec.dbits, 2 if codec.k > 1 else 1, item_bits)


def _atom_candidates(n: int, d: int, codec: SMICCodec) -> list[int]:
    """Dictionary sizes to try, largest first.

    Without a bits target: the largest power of two up to 1024 and n/4. With one: the sizes whose
    estimated archive fits the budget (`_rate.dictionary_sizes`), the four largest; when `fit`
    compares several (k > 1 or coef > 0), sizes a factor sqrt(2) apart, `search` + 2 of them.
    """
    if not codec.bits:
        return [int(max(2, min(1024, 2 ** math.floor(math.log2(max(2, n // 4))))))]
    simple = codec.k == 1 and codec.coef == 0
    return dictionary_sizes(n, codec.bits, lambda a: _amortised_bits(n, d, codec, a), 1 if simple else 4,
                            4 if simple else codec.search + 2)


def _table(symbols: np.ndarray, alphabet: int) -> FrequencyTable:
    """Frequency table of one stream (all of `symbols`), its counts fitting the uint16 they are stored in."""
    return FrequencyTable.fit(np.asarray(symbols, dtype=np.int64).reshape(-1, 1), alphabet, _MAX_STORED_COUNT)


def _truncate(idx: np.ndarray, lev: np.ndarray, cos: np.ndarray, threshold: float) -> Codes:
    """Codes using, per item, atoms up to the first step whose cosine reaches `threshold`."""
    cnt = stop_counts(cos, threshold)
    keep = np.arange(idx.shape[1])[None, :] < cnt[:, None]
    return {"count": cnt, "atoms": np.where(keep, idx, 0).astype(np.int32),
            "levels": np.where(keep, lev, 0).astype(np.int32), "cos": cos[np.arange(len(cnt)), cnt - 1]}


def _quantize_values(U: np.ndarray, step: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return np.clip(np.floor(U / step), -half, half - 1).astype(np.int8)


def _dequantize(q: np.ndarray, step: np.ndarray) -> np.ndarray:
    return ((q.astype(np.float32) + 0.5) * step).astype(np.float32)
