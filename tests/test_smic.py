"""SMIC: dictionary recovery, rate control, append/compact, damage detection, spec errors, semantics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semzip import FormatError, InputError, SpecError, format_spec, make_codec, parse_spec
from semzip.cli import main
from semzip.codecs import codec_from_bytes
from semzip.compaction import compact_archive
from semzip.container import Archive, append_archive, write_archive
from semzip.eval import cosine_to_reference
from semzip.semantic import atom_concepts, semantic_add, semantic_subtract

from .utils import unit_rows


def sparse_collection(n: int, d: int = 64, atoms: int = 16, k: int = 2, seed: int = 0):
    """Items = mean + k random atoms with positive weights, plus a little noise; returns (X, atoms)."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((atoms, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    mean = rng.standard_normal(d)
    mean *= 1.5 / np.linalg.norm(mean)
    X = np.repeat(mean[None, :], n, axis=0)
    for _ in range(k):
        X += rng.uniform(0.6, 1.0, (n, 1)) * D[rng.integers(atoms, size=n)]
    X += 0.02 * rng.standard_normal((n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), D


# ---- method ------------------------------------------------------------------------------------------
def test_known_sparse_structure_is_recovered():
    X, D = sparse_collection(1500, k=1)
    codec = make_codec("smic:atoms=16,k=1,coef=3,dbits=16").fit(X)
    match = np.abs(codec.atoms_f32_ @ D.T).max(axis=0)  # best learned atom for each true atom
    assert match.min() > 0.9, match
    assert cosine_to_reference(codec.decode(codec.encode(X), len(X)), X).mean() > 0.995


def test_two_atom_items_are_coded_better_with_two_atoms():
    X, D = sparse_collection(2000, k=2, seed=1)
    one = make_codec("smic:atoms=16,k=1,coef=4,dbits=8").fit(X)
    two = make_codec("smic:atoms=16,k=2,coef=4,dbits=8").fit(X)
    cos1 = cosine_to_reference(one.decode(one.encode(X), len(X)), X).mean()
    cos2 = cosine_to_reference(two.decode(two.encode(X), len(X)), X).mean()
    assert cos2 > 0.98 and cos2 > cos1 + 0.04
    assert (np.abs(two.atoms_f32_ @ D.T).max(axis=0) > 0.9).sum() >= 14  # of 16 true atoms


def test_dictionary_quantisation_costs_little_at_4_bits():
    X, _ = sparse_collection(1000, atoms=64, seed=2)
    exact = make_codec("smic:atoms=64,k=2,coef=4,dbits=16").fit(X)
    coarse = make_codec("smic:atoms=64,k=2,coef=4,dbits=4").fit(X)
    assert len(coarse.to_bytes()) < 0.4 * len(exact.to_bytes())
    c_exact = cosine_to_reference(exact.decode(exact.encode(X), len(X)), X).mean()
    c_coarse = cosine_to_reference(coarse.decode(coarse.encode(X), len(X)), X).mean()
    assert c_coarse > c_exact - 0.01


def test_counted_rate_is_close_to_the_entropy_estimate():
    X, _ = sparse_collection(1200, seed=3)
    codec = make_codec("smic:atoms=16,k=2,coef=4,dbits=4").fit(X)
    counted = 8 * len(codec.encode(X)) / len(X)
    assert abs(counted - codec.estimated_bits(X).mean()) < 0.5
    assert counted < codec.fixed_bits


# ---- rate control ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits, extra", [(24.0, ",k=2,coef=3,dbits=2"), (16.0, "")])
def test_bits_target_is_met_by_the_written_archive(tmp_path, bits, extra):
    X = unit_rows(1500, 64, seed=11)
    codec = make_codec(f"smic:bits={bits}{extra}").fit(X)
    assert codec.spec.as_dict()["atoms"] > 0 and codec.spec.as_dict()["bits"] == bits
    write_archive(tmp_path / "a.smz", codec, X)
    with Archive.open(tmp_path / "a.smz") as arc:
        info = arc.info()
    assert info["bits_per_item"] <= bits
    assert info["bits_per_item"] > 0.7 * bits  # the budget is used, not wasted


def test_more_bits_gives_better_fidelity():
    X = unit_rows(1000, 64, seed=12)
    cos = []
    for bits in (24.0, 32.0, 48.0):  # 16 bits on 1,000 items buys 2 atoms: refused as a collapse
        codec = make_codec(f"smic:bits={bits},dbits=2").fit(X)
        cos.append(cosine_to_reference(codec.decode(codec.encode(X), len(X)), X).mean())
    assert cos == sorted(cos) and cos[-1] > cos[0] + 0.02


def test_impossible_bits_target_is_refused_clearly():
    with pytest.raises(InputError, match="smic:bits=2.0 cannot be met on 300 items"):
        make_codec("smic:bits=2").fit(unit_rows(300, 64))
    with pytest.raises(InputError, match="needs at least 512 training vectors"):
        make_codec("smic:atoms=512").fit(unit_rows(300, 64))


def test_cos_target_is_met_on_average_with_fewer_atoms_than_k():
    X, _ = sparse_collection(1500, k=3, seed=4)
    codec = make_codec("smic:atoms=16,k=6,coef=4,dbits=8,cos=0.97").fit(X)
    codes = codec.quantize(X)
    assert cosine_to_reference(codec.reconstruct(codes), X).mean() >= 0.97
    assert codes["count"].mean() < 6  # items stop once they reach the target
    full = make_codec("smic:atoms=16,k=6,coef=4,dbits=8").fit(X)
    assert len(codec.encode(X)) < len(full.encode(X))


def test_unreachable_cos_target_is_refused():
    with pytest.raises(InputError, match="cannot be met on average"):
        make_codec("smic:atoms=8,k=1,coef=0,dbits=1,cos=0.99").fit(unit_rows(400, 64))


# ---- spec --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, message", [
    ("smic:atoms=1", "smic:atoms must be 0"),
    ("smic:k=0", r"smic:k \(atoms per item\) must be in \[1, 32\]"),
    ("smic:coef=9", "smic:coef"),
    ("smic:dbits=12", "smic:dbits"),
    ("smic:cos=1.5", "smic:cos"),
    ("smic:bits=-3", "smic:bits"),
    ("smic:bits=16,cos=0.9", "not both"),
    ("smic:atom=16", "unknown parameter 'atom'"),
    ("smic:atoms=many", "must be an integer"),
])
def test_spec_errors_name_the_problem(spec, message):
    with pytest.raises(SpecError, match=message):
        make_codec(spec)


def test_canonical_spec_is_explicit_and_fitted_spec_names_the_dictionary_size():
    codec = make_codec("smic:bits=32")
    assert format_spec(codec.spec) == "smic:atoms=0,k=1,coef=0,dbits=1,bits=32.0,cos=0.0"
    codec.fit(unit_rows(1000, 64, seed=13))
    atoms = codec.spec.as_dict()["atoms"]
    assert atoms >= 2 and codec.get_params()["atoms"] == 0
    loaded = codec_from_bytes(codec.to_bytes())
    assert loaded.spec == codec.spec and loaded.state_hash == codec.state_hash


@settings(max_examples=60, deadline=None)
@given(atoms=st.sampled_from([0, 2, 300, 65536]), k=st.integers(1, 32), coef=st.integers(0, 8),
       dbits=st.sampled_from([1, 2, 5, 8, 16]), target=st.sampled_from(["", "bits", "cos"]),
       value=st.floats(0.01, 0.99))
def test_spec_round_trips(atoms, k, coef, dbits, target, value):
    text = f"smic:atoms={atoms},k={k},coef={coef},dbits={dbits}"
    text += {"": "", "bits": f",bits={value * 100}", "cos": f",cos={value}"}[target]
    spec = make_codec(text).spec
    assert parse_spec(format_spec(spec)) == spec
    assert make_codec(format_spec(spec)).spec == spec


# ---- archives: append, compact, damage ---------------------------------------------------------------
def drifted(seed: int):
    X, _ = sparse_collection(1200, seed=seed)
    Y, _ = sparse_collection(800, seed=seed + 100)  # other atoms, other mean
    return X, Y


def test_append_and_compact_keep_every_item_in_order(tmp_path):
    X, Y = drifted(5)
    path = tmp_path / "c.smz"
    codec = make_codec("smic:atoms=16,k=2,coef=4,dbits=4").fit(X)
    write_archive(path, codec, X, ids=[f"a{i}" for i in range(len(X))], pixels=np.full(len(X), 640 * 480),
                  model="ViT-B-32:openai")
    append_archive(path, Y, ids=[f"b{i}" for i in range(len(Y))], pixels=np.full(len(Y), 100))
    with Archive.open(path) as arc:
        before_ids, before = list(arc.ids), arc.decode()
        before_cos = cosine_to_reference(before, np.concatenate([X, Y]))
    assert before_ids == [f"a{i}" for i in range(len(X))] + [f"b{i}" for i in range(len(Y))]
    assert before_cos[: len(X)].mean() > 0.98 and before_cos[len(X):].mean() < 0.5  # old dictionary misses the drift

    report = compact_archive(path, force=True)
    assert report["replaced"]
    with Archive.open(path) as arc:
        assert list(arc.ids) == before_ids and arc.items == len(X) + len(Y)
        assert arc.model == "ViT-B-32:openai"
        assert arc.pixels.tolist() == [640 * 480] * len(X) + [100] * len(Y)
        after = arc.decode()
    # same items in the same order: each new decode matches its own previous decode
    assert cosine_to_reference(after, before).mean() > 0.98
    assert cosine_to_reference(after, np.roll(before, 1, axis=0)).mean() < 0.9  # a shift would show
    assert report["cos_to_previous"] > 0.98


def test_compact_keeps_the_archive_when_refitting_does_not_help(tmp_path):
    X, _ = sparse_collection(1000, seed=6)
    path = tmp_path / "c.smz"
    write_archive(path, make_codec("smic:atoms=16,k=2,coef=4,dbits=4").fit(X), X)
    before = path.read_bytes()
    report = compact_archive(path, "smic:atoms=128,k=1,coef=0,dbits=16")  # much larger dictionary
    assert not report["replaced"] and path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.smz"]  # no temp file left behind


def test_compact_refuses_shared_codec_archives(tmp_path):
    X, _ = sparse_collection(300, seed=7)
    write_archive(tmp_path / "s.smz", make_codec("smic:atoms=8,k=1,coef=0,dbits=4").fit(X), X, embed_codec=False)
    with pytest.raises(InputError, match="does not embed its codec"):
        compact_archive(tmp_path / "s.smz")


def test_damaged_dictionary_section_is_detected(tmp_path):
    X, _ = sparse_collection(500, seed=8)
    codec = make_codec("smic:atoms=16,k=2,coef=4,dbits=2").fit(X)
    path = tmp_path / "d.smz"
    write_archive(path, codec, X)
    with Archive.open(path) as arc:
        sec = arc.sections[b"CODC"]
    state = codec.to_bytes()
    stream = codec.get_state()["dictionary"].tobytes()
    at = sec.offset + state.index(stream) + len(stream) // 2  # a byte inside the coded dictionary
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="CODC"):
        Archive.open(path)
    # the codec file alone: its content hash catches the same damage
    bad = bytearray(state)
    bad[state.index(stream) + len(stream) // 2] ^= 0x40
    with pytest.raises(FormatError, match="damaged"):
        codec_from_bytes(bytes(bad))


def test_inconsistent_state_arrays_are_refused():
    X, _ = sparse_collection(300, seed=9)
    codec = make_codec("smic:atoms=8,k=2,coef=2,dbits=2").fit(X)
    state = codec.get_state()
    other = make_codec("smic:atoms=16,k=2,coef=2,dbits=2")
    other.n_features_in_ = 64
    with pytest.raises(FormatError, match="do not match"):
        other._set_state(state)
    truncated = dict(state, dictionary=state["dictionary"][:-8])
    fresh = make_codec("smic:atoms=8,k=2,coef=2,dbits=2")
    fresh.n_features_in_ = 64
    with pytest.raises(FormatError):
        fresh._set_state(truncated)


# ---- semantics ----------------------------------------------------------------------------------------
def test_semantic_add_and_subtract():
    rng = np.random.default_rng(0)
    a, b = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 32)))
    plus = semantic_add(a, b, 0.5)
    assert plus.shape == (32,) and abs(np.linalg.norm(plus) - 1) < 1e-5
    np.testing.assert_allclose(plus, (a + 0.5 * b) / np.linalg.norm(a + 0.5 * b), atol=1e-6)
    minus = semantic_subtract(a, b, 0.5)
    assert minus @ b < a @ b < plus @ b  # adding moves towards b, subtracting away
    many = semantic_add(np.stack([a, b, a]), b, 1.0)  # one row broadcasts
    assert many.shape == (3, 32)
    np.testing.assert_allclose(semantic_subtract(plus, b, 0.0), plus, atol=1e-6)
    with pytest.raises(InputError, match="zero vector"):
        semantic_subtract(a, a, 1.0)
    with pytest.raises(InputError, match="width 16 does not match"):
        semantic_add(a, np.ones(16))
    with pytest.raises(InputError, match="give equal counts"):
        semantic_add(np.stack([a, b]), np.stack([a, b, a]))


def concept_collection(seed: int = 0):
    """A vocabulary of 24 concepts; images = image mean + one of the first 8 concepts' directions."""
    rng = np.random.default_rng(seed)
    T = rng.standard_normal((24, 64))
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    names = [f"concept{i}" for i in range(24)]
    centred = T - T.mean(axis=0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    mean = rng.standard_normal(64)
    mean *= 1.2 / np.linalg.norm(mean)
    which = rng.integers(8, size=1200)
    X = mean + 0.8 * centred[which] + 0.05 * rng.standard_normal((1200, 64))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), T.astype(np.float32), names


def test_atoms_read_as_the_concepts_that_built_the_collection():
    X, T, names = concept_collection()
    codec = make_codec("smic:atoms=8,k=1,coef=2,dbits=4").fit(X)
    rows = atom_concepts(codec, T, names, top=3)
    assert len(rows) == 8 and abs(sum(r["usage"] for r in rows) - 1) < 1e-6
    best = {r["concepts"][0][0] for r in rows}
    assert best == {f"concept{i}" for i in range(8)}
    assert all(r["concepts"][0][1] > 0.9 for r in rows)
    with pytest.raises(InputError, match="3 names for 24"):
        atom_concepts(codec, T, names[:3])
    with pytest.raises(InputError, match="need a smic codec"):
        atom_concepts(make_codec("sign").fit(X), T, names)


# ---- CLI ------------------------------------------------------------------------------------------------
def test_cli_compact_and_atoms(tmp_path, capsys):
    X, T, names = concept_collection(1)
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "vocab.npz", text_features=T, classnames=np.array(names))
    arc = str(tmp_path / "c.smz")
    assert main(["compress", str(tmp_path / "x.npy"), "--codec", "smic:atoms=8,k=1,coef=2,dbits=4", "-o", arc]) == 0
    capsys.readouterr()
    assert main(["atoms", arc, "--vocab", str(tmp_path / "vocab.npz"), "--top", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["concepts"][0][0] for r in rows} == {f"concept{i}" for i in range(8)}
    assert main(["atoms", arc, "--vocab", str(tmp_path / "vocab.npz")]) == 0
    assert "concept" in capsys.readouterr().out
    assert main(["compact", arc, "--force", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["replaced"] and report["items"] == len(X)
    assert main(["atoms", arc, "--vocab", str(tmp_path / "x.npy")]) == 2
    assert "cannot read vocabulary" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_atoms_name_the_collection_classes(shared_data):
    z = np.load(shared_data / "clip-vit-b-32" / "zeroshot_caltech101.npz")
    lvis = np.load(shared_data / "clip-vit-b-32" / "text_lvis.npz")
    X = z["image_features"].astype(np.float32)
    codec = make_codec("smic:atoms=64,k=1").fit(X)
    rows = atom_concepts(codec, lvis["text_features"], lvis["classnames"], top=1)
    classes = {str(c) for c in z["classnames"]}
    named = np.mean([r["concepts"][0][0] in classes for r in rows])
    assert named > 0.5, named  # 46 of 1203 names are the collection's classes


def test_a_budget_that_buys_a_handful_of_atoms_is_refused():
    """smic:bits=16 on 2,000 512-d items could pay for 2 atoms: refused, with what to use instead."""
    with pytest.raises(InputError, match=r"only 2 dictionary atoms .*at most 2 distinct decoded vectors.*--shared"):
        make_codec("smic:bits=16").fit(unit_rows(2000, 512, seed=11))
    assert make_codec("smic:atoms=4,k=1,coef=0,dbits=1").fit(unit_rows(200, 512)).atoms_ == 4  # asked for
