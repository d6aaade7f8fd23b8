"""Properties every registered codec must have, parametrized from the registry."""

import numpy as np
import pytest

from semzip import InputError, NotFittedError, SpecError, available_codecs, make_codec
from semzip.codecs import codec_class, codec_from_bytes
from semzip.eval import cosine_to_reference

from .utils import unit_rows

SPECS = [spec for name in available_codecs() for spec in codec_class(name).example_specs]


def test_every_codec_has_example_specs():
    assert all(codec_class(name).example_specs for name in available_codecs())


@pytest.fixture(scope="module")
def fitted():
    X = unit_rows(600, 64, seed=1)
    return {spec: make_codec(spec).fit(X) for spec in SPECS}


@pytest.mark.parametrize("spec", SPECS)
def test_round_trip_keeps_shape_and_dtype(fitted, spec):
    codec = fitted[spec]
    X = unit_rows(37, 64, seed=2)
    Y = codec.decode(codec.encode(X), len(X))
    assert Y.shape == X.shape and Y.dtype == np.float32
    assert np.isfinite(Y).all()


@pytest.mark.parametrize("spec", SPECS)
def test_reencoding_a_decoded_vector_gives_the_same_code(fitted, spec):
    codec = fitted[spec]
    if not codec.idempotent:
        pytest.skip(f"{codec.name} does not promise idempotent re-encoding")
    codes = codec.quantize(unit_rows(50, 64, seed=3))
    again = codec.quantize(codec.reconstruct(codes))
    for key in codes:
        np.testing.assert_array_equal(again[key], codes[key])


@pytest.mark.parametrize("spec", SPECS)
def test_pack_unpack_round_trip_and_counted_bits(fitted, spec):
    codec = fitted[spec]
    X = unit_rows(80, 64, seed=4)
    codes = codec.quantize(X)
    data = codec.pack(codes)
    back = codec.unpack(data, len(X))
    for key in codes:
        np.testing.assert_array_equal(back[key], codes[key])
    # the counted rate is the payload: nothing is stored beside it
    assert codec.encode(X) == data
    assert len(data) * 8 <= codec.fixed_bits * len(X) + codec.block_overhead_bits


@pytest.mark.parametrize("spec", SPECS)
def test_save_load_gives_identical_decodes(fitted, spec):
    codec = fitted[spec]
    X = unit_rows(20, 64, seed=5)
    data = codec.encode(X)
    loaded = codec_from_bytes(codec.to_bytes())
    assert loaded.state_hash == codec.state_hash and loaded.spec == codec.spec
    np.testing.assert_array_equal(loaded.decode(data, len(X)), codec.decode(data, len(X)))


@pytest.mark.parametrize("spec", SPECS)
def test_unfitted_and_wrong_width_are_refused(fitted, spec):
    with pytest.raises(NotFittedError):
        make_codec(spec).encode(unit_rows(3, 64))
    with pytest.raises(InputError, match="width 32 does not match the codec's width 64"):
        fitted[spec].encode(unit_rows(3, 32))


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("bad, message", [
    (np.full((2, 64), np.nan, np.float32), "non-finite"),
    (np.zeros((0, 64), np.float32), "empty input"),
    (np.zeros(64, np.float32), "2-D"),
    (np.array([["a"] * 64]), "numeric"),
])
def test_bad_input_is_refused_with_a_clear_message(fitted, spec, bad, message):
    with pytest.raises(InputError, match=message):
        fitted[spec].encode(bad)


def _families():
    out = {}
    for name in available_codecs():
        specs = codec_class(name).example_specs
        if len(specs) > 1:
            out[name] = specs
    return out


@pytest.mark.parametrize("name", sorted(_families()))
def test_more_bits_never_hurts(name):
    specs = _families()[name]
    X, T = unit_rows(800, 64, seed=6), unit_rows(200, 64, seed=7)
    rates, fidelity = [], []
    for spec in specs:
        codec = make_codec(spec).fit(X)
        rates.append(len(codec.encode(T)))
        fidelity.append(cosine_to_reference(codec.decode(codec.encode(T), len(T)), T).mean())
    assert rates == sorted(rates), f"example specs of {name} must be in increasing rate"
    assert fidelity == sorted(fidelity), f"{name}: fidelity {fidelity} does not grow with rate {rates}"


def test_baselines_fidelity_order():
    X = unit_rows(300, 64, seed=8)
    cos = {}
    for spec in ("f16", "int8", "sign"):
        codec = make_codec(spec).fit(X)
        cos[spec] = cosine_to_reference(codec.decode(codec.encode(X), len(X)), X).mean()
    assert cos["f16"] > 0.99999 and cos["f16"] > cos["int8"] > 0.999 and cos["int8"] > cos["sign"] > 0.7


def test_pq_entropy_coding_beats_fixed_length_on_skewed_data():
    rng = np.random.default_rng(9)
    distinct = unit_rows(20, 64, seed=9)
    weights = 1.0 / np.arange(1, 21)
    X = distinct[rng.choice(20, size=3000, p=weights / weights.sum())]  # very uneven centroid usage
    codec = make_codec("pq:M=8,K=64,opq=0").fit(X)
    counted = 8 * len(codec.encode(X)) / len(X)
    assert counted < 0.9 * codec.fixed_bits
    assert abs(counted - codec.estimated_bits(X).mean()) < 1.0


def test_pq_rejects_impossible_shapes():
    with pytest.raises(InputError, match="must divide the embedding width 64"):
        make_codec("pq:M=6,K=16").fit(unit_rows(100, 64))
    with pytest.raises(InputError, match="at least 256 training vectors"):
        make_codec("pq:M=8,K=256").fit(unit_rows(100, 64))
    with pytest.raises(InputError, match="opq=1 needs at least as many training vectors"):
        make_codec("pq:M=8,K=16,opq=1").fit(unit_rows(40, 64))


def test_pq_training_is_deterministic_whatever_the_thread_count():
    import faiss
    from threadpoolctl import threadpool_limits

    X = unit_rows(400, 64, seed=10)
    first = make_codec("pq:M=8,K=16").fit(X).state_hash
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        with threadpool_limits(2):
            assert make_codec("pq:M=8,K=16").fit(X).state_hash == first
    finally:
        faiss.omp_set_num_threads(before)


def test_pq_raw_option_keeps_old_specs_canonical():
    from semzip.spec import parse_spec

    assert str(make_codec("pq:M=8,K=16,opq=1").spec) == "pq:M=8,K=16,opq=1"
    assert make_codec("pq:M=8,K=16,opq=1,raw=0").spec == parse_spec("pq:M=8,K=16,opq=1")
    assert str(make_codec("pq:M=8,K=16,raw=1").spec) == "pq:M=8,K=16,opq=1,raw=1"
    with pytest.raises(SpecError, match="pq:raw must be 0 or 1"):
        make_codec("pq:M=8,K=16,raw=2")


def test_pq_raw_stores_fixed_width_indices_without_entropy_coding(monkeypatch):
    import constriction

    from semzip import FormatError

    X, T = unit_rows(600, 64, seed=10), unit_rows(101, 64, seed=11)
    ans, raw = make_codec("pq:M=8,K=16,opq=1").fit(X), make_codec("pq:M=8,K=16,opq=1,raw=1").fit(X)
    assert "counts" not in raw.get_state() and "counts" in ans.get_state()
    np.testing.assert_array_equal(raw.get_state()["centroids"], ans.get_state()["centroids"])  # same training
    data = raw.encode(T)
    assert data[:4] == b"\x01\0\0\0" and len(data) == 4 + 101 * 8 * 4 // 8  # mode word, then 4-bit fields
    assert raw.estimated_bits(T).tolist() == [32.0] * 101

    def refuse(*args, **kwargs):
        raise AssertionError("ANS used")

    monkeypatch.setattr(constriction.stream.stack, "AnsCoder", refuse)
    codes = raw.unpack(data, 101)
    assert codes["codes"].dtype == np.uint8
    np.testing.assert_array_equal(raw.decode(data, 101), ans.reconstruct(ans.quantize(T)))
    assert raw.encode(T) == data
    monkeypatch.undo()
    with pytest.raises(FormatError, match="raw=1 payload is entropy-coded"):
        raw.unpack(ans.pack(ans.quantize(X[:500])), 500)


def test_pq_codes_are_compact():
    X = unit_rows(600, 64, seed=12)
    assert make_codec("pq:M=8,K=16,opq=0").fit(X).quantize(X[:5])["codes"].dtype == np.uint8
    wide = make_codec("pq:M=2,K=512,opq=0").fit(X)
    codes = wide.quantize(X[:50])
    assert codes["codes"].dtype == np.uint16
    assert wide.unpack(wide.pack(codes), 50)["codes"].dtype == np.uint16


def test_pq_norms_in_runs_equal_the_whole_sum_and_the_decoded_norms():
    """pq sums reconstruction norms in runs of rows (bounded memory): the same bits as one sum over
    every row, and the norms of the decoded vectors."""
    from semzip.codecs.pq import _NORM_ROWS

    codec = make_codec("pq:M=4,K=16,opq=1").fit(unit_rows(600, 32, seed=13))
    codes = {"codes": np.random.default_rng(14).integers(0, 16, size=(_NORM_ROWS + 99, 4)).astype(np.uint8)}
    whole = np.sqrt(np.take(codec._sqnorms, codes["codes"] + codec._offsets).sum(axis=1)).astype(np.float32)
    np.testing.assert_array_equal(codec.norms(codes), whole, strict=True)
    np.testing.assert_allclose(codec.norms(codes)[:500], np.linalg.norm(codec.reconstruct(
        {"codes": codes["codes"][:500]}), axis=1), rtol=1e-5)


@pytest.mark.parametrize("spec", [*SPECS, "pqvae:dim=8,K=16,grid=2,C=16,H=16,blocks=1,coarse=2,bits=80"])
def test_refitting_equals_a_fresh_fit(spec):
    """Derived caches are reset when the state changes: fit -> use -> refit behaves as a fresh fit."""
    X1, X2, Q = unit_rows(600, 64, seed=40), unit_rows(600, 64, seed=41, clusters=3), unit_rows(4, 64, seed=42)
    codec = make_codec(spec).fit(X1)
    codes1 = codec.quantize(X1[:50])
    codec.scores(codes1, Q), codec.norms(codes1), codec.decode(codec.encode(X1[:50]), 50)
    codec.fit(X2)
    fresh = make_codec(spec).fit(X2)
    assert codec.state_hash == fresh.state_hash
    codes = fresh.quantize(X2[:50])
    np.testing.assert_array_equal(codec.scores(codes, Q), fresh.scores(codes, Q))
    np.testing.assert_array_equal(codec.norms(codes), fresh.norms(codes))
    np.testing.assert_array_equal(codec.reconstruct(codes), fresh.reconstruct(codes))


@pytest.mark.parametrize("spec", ["f16", "int8"])
def test_half_precision_codecs_refuse_what_float16_cannot_hold(spec):
    X = unit_rows(5, 64)
    X[2, 3] = 1e5
    codec = make_codec(spec).fit(unit_rows(20, 64))
    with pytest.raises(InputError, match="does not fit float16"):
        codec.encode(X)


def test_set_params_follows_scikit_learn_and_guards_fitted_state():
    codec = make_codec("pq:M=4,K=16,opq=0")
    assert codec.set_params(seed=3, M=8) is codec and codec.get_params()["seed"] == 3 and codec.M == 8
    with pytest.raises(SpecError, match="no parameter bogus"):
        codec.set_params(bogus=1)
    with pytest.raises(SpecError, match="pq:M must be"):
        codec.set_params(M=0)
    codec.set_params(M=4).fit(unit_rows(300, 64))
    codec.set_params(threads=1)  # a training option: allowed after the fit
    with pytest.raises(SpecError, match="cannot change M of a fitted"):
        codec.set_params(M=8)
