"""Stacks of stages (`A+B`): the spec grammar, residual coding, the payload layout, codec files,
and the coarse and transform stages as codecs of their own."""

import json

import numpy as np
import pytest

from semzip import FormatError, InputError, SpecError, fit_codec, make_codec, parse_spec
from semzip.cli import main
from semzip.codecs import codec_from_bytes
from semzip.codecs._base import _hash_state, read_state
from semzip.container import Archive
from semzip.spec import STACK, Spec, format_spec

from .utils import unit_rows


@pytest.fixture(scope="module")
def data():
    return unit_rows(1500, 64, seed=11, clusters=12), unit_rows(300, 64, seed=12, clusters=12)


def test_stages_join_with_plus_and_round_trip():
    spec = parse_spec("coarse:bits=8+rq:M=6,K=256")
    assert spec == Spec(STACK, stages=(Spec("coarse", (("bits", 8),)), Spec("rq", (("M", 6), ("K", 256)))))
    assert format_spec(spec) == "coarse:bits=8+rq:M=6,K=256"
    # a '+' before a digit is a float exponent's sign, not a join
    assert parse_spec("a:x=1e+20+b:y=2").stages == (Spec("a", (("x", 1e20),)), Spec("b", (("y", 2),)))
    codec = make_codec("pq:K=16,M=8+f16")
    assert str(codec.spec) == "pq:M=8,K=16,opq=1+f16"
    assert make_codec(str(codec.spec)).spec == codec.spec


@pytest.mark.parametrize("text, message", [
    ("pq:M=8,K=16++f16", "empty stage"),
    ("pq:M=8,K=16+", "empty stage"),
    ("f16+smic", "smic:.* cannot stand in a stack: it codes whole collections"),
    ("smic+f16", "cannot stand in a stack"),
    ("f16+pqvae", "pqvae:.* cannot follow another stage: it assumes unit CLIP embeddings"),
    ("f16+sign", "sign cannot follow another stage"),
    ("f16+coarse:bits=4", "cannot follow another stage"),
    ("stack", "a stack is written as its stages joined by '\\+'"),
    ("f16+rq:M=0", "rq:M must be in"),
])
def test_bad_stacks_say_what_is_wrong(text, message):
    with pytest.raises(SpecError, match=message):
        make_codec(text)


def test_a_spec_of_stages_is_well_formed():
    with pytest.raises(SpecError, match="two or more single-codec specs"):
        Spec(STACK, stages=(Spec("f16"),))
    with pytest.raises(SpecError, match="two or more single-codec specs"):
        Spec("pq", stages=(Spec("f16"), Spec("int8")))


def test_each_stage_codes_what_the_ones_before_it_left(data):
    X, T = data
    stack = fit_codec("pq:M=8,K=16,opq=0+rq:M=4,K=16,beam=4", X, seed=3)
    first = fit_codec("pq:M=8,K=16,opq=0", X, seed=3)
    pq, rq = stack.stages
    assert pq.state_hash == first.state_hash  # the first stage is fitted on the vectors themselves
    residual = X - pq.reconstruct(pq.quantize(X))
    assert rq.state_hash == fit_codec("rq:M=4,K=16,beam=4", residual, seed=3).state_hash
    codes = stack.quantize(T)
    assert sorted(codes) == ["0.codes", "1.codes", "1.stages"]
    r = T - pq.reconstruct({"codes": codes["0.codes"]})
    np.testing.assert_array_equal(codes["1.codes"], rq.quantize(r)["codes"])
    Y = stack.reconstruct(codes)
    np.testing.assert_array_equal(Y, pq.reconstruct({"codes": codes["0.codes"]})
                                  + rq.reconstruct({"codes": codes["1.codes"], "stages": codes["1.stages"]}))
    assert ((Y - T) ** 2).sum() < 0.9 * ((first.decode(first.encode(T), len(T)) - T) ** 2).sum()


def test_payload_is_the_stages_payloads_with_lengths(data):
    X, T = data
    stack = fit_codec("coarse:bits=4+pq:M=8,K=16,opq=0+transform:bits=40", X)
    codes = stack.quantize(T)
    parts = [stage.pack({k.split(".", 1)[1]: v for k, v in codes.items() if k.startswith(f"{i}.")})
             for i, stage in enumerate(stack.stages)]
    data_ = stack.pack(codes)
    assert data_ == len(parts[0]).to_bytes(4, "little") + len(parts[1]).to_bytes(4, "little") + b"".join(parts)
    assert len(data_) * 8 <= stack.fixed_bits * len(T) + stack.block_overhead_bits
    assert stack.block_overhead_bits == 3 * 64 + 2 * 32
    for cut in (0, 7, len(data_) - 1):
        with pytest.raises(FormatError):
            stack.unpack(data_[:cut], len(T))
    with pytest.raises(FormatError, match="overrun"):
        stack.unpack((10**6).to_bytes(4, "little") + data_[4:], len(T))


def test_codec_file_holds_each_stage_under_its_index(data, tmp_path):
    from safetensors.numpy import save

    X, T = data
    stack = fit_codec("coarse:bits=4+pq:M=8,K=16,opq=0", X)
    blob = stack.to_bytes()
    _, spec, _, _, arrays, info = read_state(blob)
    assert spec == "coarse:bits=4+pq:M=8,K=16,opq=0"
    assert {k.split(".")[0] for k in arrays} == {"0", "1"} and "0.centroids" in arrays
    assert len(info["stages"]) == 2
    again = codec_from_bytes(blob)
    assert again.state_hash == stack.state_hash
    np.testing.assert_array_equal(again.decode(stack.encode(T), len(T)), stack.decode(stack.encode(T), len(T)))
    # arrays filed under a stage the spec does not have are refused, hash or no hash
    bad = arrays | {"2.centroids": arrays["0.centroids"]}
    meta = {"format": "semzip-codec", "format_version": "1", "codec_id": "STAK", "spec": spec,
            "n_features_in": "64", "fit_info": "{}"}
    meta["hash"] = _hash_state(b"STAK", spec, 64, bad)
    with pytest.raises(FormatError, match="not '<stage>.<name>' of its 2 stages"):
        codec_from_bytes(save(bad, metadata=meta))


def test_scores_are_the_sum_of_the_stages_scores(data):
    X, T = data
    stack = fit_codec("pq:M=8,K=16,opq=1+bq:D=32,b=1", X)
    codes = stack.quantize(T)
    Q = T[:7]
    np.testing.assert_allclose(stack.scores(codes, Q), stack.reconstruct(codes) @ Q.T, rtol=1e-5, atol=1e-5)


def test_a_coarse_first_stage_is_the_partition(data):
    X, T = data
    stack = fit_codec("coarse:bits=4+pq:M=8,K=16,opq=0", X)
    np.testing.assert_array_equal(stack.partition_centroids(), stack.stages[0].partition_centroids())
    np.testing.assert_array_equal(stack.partition_of(stack.quantize(T)), stack.stages[0].partition_of(
        stack.stages[0].quantize(T)))
    assert fit_codec("f16+int8", X).partition_centroids() is None


def test_transform_meets_its_bits_on_held_out_items(data):
    X, T = data
    for bits in (32, 96):
        codec = fit_codec(f"transform:bits={bits}", X[:1200])
        held_out = codec.fit_info()["held_out_bits_per_item"]
        assert bits - 2 <= held_out <= bits
        assert abs(len(codec.encode(X[1200:])) * 8 / 300 - bits) < 0.15 * bits  # new items of the same kind
        # unfamiliar items (other clusters) cost more, never beyond fixed-width fields
        assert bits < len(codec.encode(T)) * 8 / len(T) <= codec.fixed_bits + 64 / len(T)
    assert codec.fixed_bits == 64 * np.ceil(np.log2(codec.table_.alphabet))


def test_coarse_codes_an_item_as_its_nearest_centroid(data):
    X, T = data
    codec = fit_codec("coarse:bits=5", X)
    Y = codec.decode(codec.encode(T), len(T))
    C = codec.partition_centroids()
    np.testing.assert_allclose(np.linalg.norm(C, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(Y, C[(T @ C.T).argmax(axis=1)])
    assert len(codec.encode(T)) * 8 <= 5 * len(T) + 64
    with pytest.raises(InputError, match="needs at least 32 training vectors"):
        fit_codec("coarse:bits=5", X[:20])


def test_cli_fits_compresses_and_searches_a_stack(data, tmp_path, capsys):
    X, T = data
    np.save(tmp_path / "train.npy", X)
    np.savez(tmp_path / "items.npz", features=T, ids=np.array([f"p{i}" for i in range(len(T))]))
    spec = "coarse:bits=4+rq:M=4,K=16,beam=4"
    assert main(["fit", spec, str(tmp_path / "train.npy"), "-o", str(tmp_path / "s.smzc")]) == 0
    assert main(["compress", str(tmp_path / "items.npz"), "--codec", str(tmp_path / "s.smzc"),
                 "-o", str(tmp_path / "a.smz")]) == 0
    capsys.readouterr()
    assert main(["search", str(tmp_path / "a.smz"), "--like", "p7", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert len(hits) == 3 and hits[0]["id"] == "p7"
    with Archive.open(tmp_path / "a.smz") as arc:
        assert arc.codec.spec == parse_spec(spec)
        assert arc.verify() == []
    assert main(["fit", "f16+smic", str(tmp_path / "train.npy"), "-o", str(tmp_path / "bad.smzc")]) == 2
    assert "cannot stand in a stack" in capsys.readouterr().err


def test_a_stack_ending_in_rq_meets_budgets_is_cut_and_refined(data, tmp_path):
    from semzip.codecs import ProgressiveCodec
    from semzip.container import truncate_archive, write_archive
    from semzip.refine import patch_archive, refine_archive

    X, T = data
    stack = fit_codec("coarse:bits=4+rq:M=8,K=16,beam=4", X)
    assert isinstance(stack, ProgressiveCodec) and not isinstance(fit_codec("rq:M=2,K=16+f16", X), ProgressiveCodec)
    assert isinstance(codec_from_bytes(stack.to_bytes()), ProgressiveCodec)
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((300, 64)).astype(np.float32)
    for name, items in (("unfamiliar", T), ("random", noise / np.linalg.norm(noise, axis=1, keepdims=True))):
        for budget in (12.0, 20.0):
            write_archive(tmp_path / "a.smz", stack, items, block_items=100, budget_bits=budget)
            with Archive.open(tmp_path / "a.smz") as arc:
                assert arc.info()["payload_bits"] <= budget * len(items), name
                codes = arc.block_codes(0)
                assert (codes["0.coarse"] == stack.quantize(items[:100])["0.coarse"]).all()  # first stages whole
    with pytest.raises(InputError, match="below what its first stages alone spend"):
        write_archive(tmp_path / "b.smz", stack, T, budget_bits=3.0)
    write_archive(tmp_path / "full.smz", stack, T, block_items=100)
    truncate_archive(tmp_path / "full.smz", tmp_path / "have.smz", 14.0)
    truncate_archive(tmp_path / "full.smz", tmp_path / "want.smz", 22.0)
    refine_archive(tmp_path / "full.smz", tmp_path / "have.smz", tmp_path / "r.smzr", 22.0)
    patch_archive(tmp_path / "have.smz", tmp_path / "r.smzr", tmp_path / "have.smz")
    assert (tmp_path / "have.smz").read_bytes() == (tmp_path / "want.smz").read_bytes()
    with Archive.open(tmp_path / "have.smz") as cut, Archive.open(tmp_path / "full.smz") as full:
        assert cut.info()["payload_bits"] <= 22.0 * len(T)
        assert stack.is_cut_of(cut.block_codes(0), full.block_codes(0))
        other = dict(full.block_codes(0), **{"0.coarse": (full.block_codes(0)["0.coarse"] + 1) % 16})
        assert not stack.is_cut_of(cut.block_codes(0), other)
