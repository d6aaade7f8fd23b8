"""The progressive residual codec `rq`: prefixes decode, budgets hold on any input, cuts need no originals."""

import json

import numpy as np
import pytest

from semzip import CodecMismatchError, FormatError, InputError, SemzipError, make_codec, save_codec
from semzip.cli import main
from semzip.container import Archive, truncate_archive, write_archive
from semzip.refine import patch_archive, refine_archive

from .utils import unit_rows

D = 64


@pytest.fixture(scope="module")
def rq():
    return make_codec("rq:M=8,K=64,beam=4").fit(unit_rows(2000, D, seed=100))


def _inputs():
    """Familiar (the training clusters), unfamiliar (other clusters), random unit vectors, a skewed mix."""
    rng = np.random.default_rng(101)
    random = rng.standard_normal((700, D)).astype(np.float32)
    skew = np.abs(rng.standard_normal((700, D))).astype(np.float32) ** 3
    return {"familiar": unit_rows(700, D, seed=100), "unfamiliar": unit_rows(700, D, seed=102, clusters=3),
            "random": random / np.linalg.norm(random, axis=1, keepdims=True),
            "skewed": skew / np.linalg.norm(skew, axis=1, keepdims=True)}


@pytest.mark.parametrize("budget", [16.0, 24.0, 40.0, 100.0])
def test_budget_holds_on_any_input_counted_from_the_file(rq, tmp_path, budget):
    for name, X in _inputs().items():
        path = tmp_path / f"{name}.smz"
        write_archive(path, rq, X, block_items=256, budget_bits=budget)
        with Archive.open(path) as arc:
            assert arc.info()["payload_bits"] <= budget * len(X), name
            assert arc.verify() == [] and np.isfinite(arc.decode()).all()


def test_more_bits_give_more_stages_and_better_fidelity(rq, tmp_path):
    X = _inputs()["unfamiliar"]
    cosines, stages = [], []
    for budget in (12.0, 24.0, 48.0):
        write_archive(tmp_path / "a.smz", rq, X, budget_bits=budget)
        with Archive.open(tmp_path / "a.smz") as arc:
            Y = arc.decode()
            stages.append(float(np.mean(arc.block_codes(0)["stages"])))
        cosines.append(float((np.sum(X * Y, axis=1) / np.linalg.norm(Y, axis=1)).mean()))
    assert stages == sorted(stages) and stages[0] < stages[-1]
    assert cosines == sorted(cosines) and cosines[-1] - cosines[0] > 0.02


def test_a_prefix_decodes_to_the_sum_of_its_stages(rq):
    X = unit_rows(50, D, seed=103)
    codes = rq.quantize(X)
    for s in (1, 3, 8):
        cut = dict(codes, stages=np.full(50, s, dtype=np.uint8))
        want = sum(rq.codebooks_[m][codes["codes"][:, m]] for m in range(s))
        np.testing.assert_allclose(rq.reconstruct(cut), want, atol=1e-6)
        back = rq.unpack(rq.pack(cut), 50)
        np.testing.assert_array_equal(back["stages"], cut["stages"])
        np.testing.assert_array_equal(rq.reconstruct(back), rq.reconstruct(cut))


def test_a_budget_below_one_stage_is_refused_and_nothing_written(rq, tmp_path):
    X = unit_rows(300, D, seed=104)
    (tmp_path / "a.smz").write_bytes(b"old")
    with pytest.raises(InputError, match="below what this codec reaches"):
        write_archive(tmp_path / "a.smz", rq, X, budget_bits=2.0)
    assert (tmp_path / "a.smz").read_bytes() == b"old" and not list(tmp_path.glob(".*.tmp"))


def test_fixed_rate_codecs_are_measured_against_the_budget(tmp_path):
    X = unit_rows(300, D, seed=105)
    pq = make_codec("pq:M=8,K=16,opq=0").fit(X)
    write_archive(tmp_path / "ok.smz", pq, X, budget_bits=40.0)
    with pytest.raises(InputError, match="over the budget of 20"):
        write_archive(tmp_path / "over.smz", pq, X, budget_bits=20.0)
    assert not (tmp_path / "over.smz").exists()


def test_truncate_cuts_without_the_originals(rq, tmp_path):
    X = _inputs()["familiar"]
    write_archive(tmp_path / "full.smz", rq, X, ids=[f"i{i}" for i in range(len(X))], block_items=200)
    with Archive.open(tmp_path / "full.smz") as full:
        full_codes = [full.block_codes(b) for b in range(len(full.index))]
        reference = full.decode()
    truncate_archive(tmp_path / "full.smz", tmp_path / "cut.smz", 20.0)
    with Archive.open(tmp_path / "cut.smz") as cut:
        assert cut.info()["payload_bits"] <= 20.0 * len(X) and cut.ids == [f"i{i}" for i in range(len(X))]
        for b in range(len(cut.index)):
            mine, theirs = cut.block_codes(b), full_codes[b]
            assert (mine["stages"] <= theirs["stages"]).all() and (mine["stages"] < 8).any()
            for m in range(8):  # every kept stage is the full code's own
                kept = mine["stages"] > m
                np.testing.assert_array_equal(mine["codes"][kept, m], theirs["codes"][kept, m])
        Y = cut.decode()
    assert 0.5 < float((np.sum(Y * reference, axis=1) / np.linalg.norm(Y, axis=1)).mean()) < 1.0
    pq_path = tmp_path / "pq.smz"
    write_archive(pq_path, make_codec("int8").fit(X), X)
    with pytest.raises(InputError, match="not progressive"):
        truncate_archive(pq_path, tmp_path / "x.smz", 20.0)


def test_cli_compress_with_a_budget_and_truncate(rq, tmp_path, capsys):
    save_codec(rq, tmp_path / "rq.smzc")
    np.save(tmp_path / "x.npy", _inputs()["random"])
    assert main(["compress", str(tmp_path / "x.npy"), "--codec", str(tmp_path / "rq.smzc"), "--bits", "30",
                 "--shared", "-o", str(tmp_path / "a.smz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["payload_bits_per_item"] <= 30
    assert main(["truncate", str(tmp_path / "a.smz"), "--bits", "15", "--codec", str(tmp_path / "rq.smzc"),
                 "-o", str(tmp_path / "b.smz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["payload_bits_per_item"] <= 15
    assert main(["compress", str(tmp_path / "x.npy"), "--codec", "pq:M=8,K=16,opq=0", "--bits", "10",
                 "-o", str(tmp_path / "c.smz")]) == 2
    assert "over the budget" in capsys.readouterr().err and not (tmp_path / "c.smz").exists()


def _cut_and_refine(rq, tmp_path, X, budgets):
    """full.smz, its cut at budgets[0], then refinements patched in turn; yields each patched archive's path."""
    write_archive(tmp_path / "full.smz", rq, X, ids=[f"i{i}" for i in range(len(X))], block_items=256)
    truncate_archive(tmp_path / "full.smz", tmp_path / "have.smz", budgets[0])
    for step, bits in enumerate(budgets[1:]):
        result = refine_archive(tmp_path / "full.smz", tmp_path / "have.smz", tmp_path / f"r{step}.smzr", bits)
        patch_archive(tmp_path / "have.smz", tmp_path / f"r{step}.smzr", tmp_path / "have.smz")
        yield bits, result


def test_refinements_grow_a_cut_to_each_budget_with_the_full_codes_own_stages(rq, tmp_path):
    X = _inputs()["unfamiliar"]
    write_archive(tmp_path / "f.smz", rq, X, block_items=256)
    with Archive.open(tmp_path / "f.smz") as full:
        reference = full.decode()
    errors, prev_stages = [], None
    for bits, result in _cut_and_refine(rq, tmp_path, X, [12.0, 20.0, 32.0, 60.0]):
        with Archive.open(tmp_path / "have.smz") as have, Archive.open(tmp_path / "full.smz") as full:
            assert have.info()["payload_bits"] <= bits * len(X) and have.verify() == []
            assert result["payload_bits_per_item_after"] == have.info()["payload_bits_per_item"]
            stages = np.concatenate([have.block_codes(b)["stages"] for b in range(len(have.index))])
            for b in range(len(have.index)):
                mine, theirs = have.block_codes(b), full.block_codes(b)
                kept = np.arange(8)[None, :] < mine["stages"][:, None]
                np.testing.assert_array_equal(mine["codes"][kept], theirs["codes"][kept])
            errors.append(float(((have.decode() - reference) ** 2).sum(axis=1).mean()))
        assert prev_stages is None or ((stages >= prev_stages).all() and (stages > prev_stages).any())
        prev_stages = stages
        # the link carries what the payload grew by, plus at most: each item's count of new stages, the counts
        # the archive no longer stores (all 8 stages need none) and a histogram per block
        grew = result["payload_bits_per_item_after"] - result["payload_bits_per_item_before"]
        assert result["refinement_payload_bits_per_item"] <= grew + np.log2(9) + np.log2(8) + 3 * 8 * 24 / len(X)
        assert result["refinement_bytes"] < 1200 + result["refinement_payload_bits_per_item"] * len(X) / 8
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.5 * errors[0]


def test_a_patch_equals_the_senders_archive_and_refuses_any_other(rq, tmp_path):
    X = _inputs()["familiar"]
    list(_cut_and_refine(rq, tmp_path, X, [12.0, 24.0]))
    truncate_archive(tmp_path / "full.smz", tmp_path / "other.smz", 16.0)
    with pytest.raises(CodecMismatchError, match="refines another archive"):
        patch_archive(tmp_path / "other.smz", tmp_path / "r0.smzr", tmp_path / "out.smz")
    with pytest.raises(CodecMismatchError, match="refines another archive"):  # applied twice
        patch_archive(tmp_path / "have.smz", tmp_path / "r0.smzr", tmp_path / "out.smz")
    raw = bytearray((tmp_path / "r0.smzr").read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / "bad.smzr").write_bytes(bytes(raw))
    truncate_archive(tmp_path / "full.smz", tmp_path / "again.smz", 12.0)
    with pytest.raises(FormatError, match="damaged"):
        patch_archive(tmp_path / "again.smz", tmp_path / "bad.smzr", tmp_path / "again.smz")
    (tmp_path / "junk.smzr").write_bytes(b"not a refinement")
    with pytest.raises(FormatError, match="not a semzip refinement"):
        patch_archive(tmp_path / "again.smz", tmp_path / "junk.smzr", tmp_path / "out.smz")
    assert not (tmp_path / "out.smz").exists()
    patch_archive(tmp_path / "again.smz", tmp_path / "r0.smzr", tmp_path / "out.smz")  # the same cut, made again
    assert (tmp_path / "out.smz").read_bytes() == (tmp_path / "have.smz").read_bytes()
    before = (tmp_path / "have.smz").read_bytes()
    with pytest.raises(InputError, match="one of the archives"):
        refine_archive(tmp_path / "full.smz", tmp_path / "have.smz", tmp_path / "have.smz", 40.0)
    assert (tmp_path / "have.smz").read_bytes() == before
    with pytest.raises(InputError, match="the stages the receiver holds"):  # lower than it holds
        refine_archive(tmp_path / "full.smz", tmp_path / "have.smz", tmp_path / "low.smzr", 12.0)
    write_archive(tmp_path / "alien.smz", rq, unit_rows(len(X), D, seed=7), ids=[f"i{i}" for i in range(len(X))],
                  block_items=256)
    with pytest.raises(CodecMismatchError, match="not a cut"):
        refine_archive(tmp_path / "full.smz", tmp_path / "alien.smz", tmp_path / "x.smzr", 30.0)


def test_cli_truncate_refine_patch(rq, tmp_path, capsys):
    np.save(tmp_path / "x.npy", _inputs()["random"])
    save_codec(rq, tmp_path / "rq.smzc")
    assert main(["compress", str(tmp_path / "x.npy"), "--codec", str(tmp_path / "rq.smzc"), "-o", str(tmp_path / "full.smz")]) == 0
    assert main(["truncate", str(tmp_path / "full.smz"), "--bits", "12", "-o", str(tmp_path / "first.smz")]) == 0
    capsys.readouterr()
    assert main(["refine", str(tmp_path / "full.smz"), "--have", str(tmp_path / "first.smz"), "--bits", "30",
                 "-o", str(tmp_path / "more.smzr"), "--json"]) == 0
    sent = json.loads(capsys.readouterr().out)
    assert sent["payload_bits_per_item_before"] <= 12 < sent["payload_bits_per_item_after"] <= 30
    assert main(["patch", str(tmp_path / "first.smz"), str(tmp_path / "more.smzr"), "-o", str(tmp_path / "first.smz"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["payload_bits_per_item"] == sent["payload_bits_per_item_after"]
    assert main(["patch", str(tmp_path / "first.smz"), str(tmp_path / "more.smzr"), "-o", str(tmp_path / "x.smz")]) != 0
    assert "refines another archive" in capsys.readouterr().err and not (tmp_path / "x.smz").exists()


def test_mutated_refinements_are_refused_cleanly(rq, tmp_path):
    X = _inputs()["skewed"][:300]
    list(_cut_and_refine(rq, tmp_path, X, [12.0, 30.0]))
    truncate_archive(tmp_path / "full.smz", tmp_path / "base.smz", 12.0)
    good = (tmp_path / "r0.smzr").read_bytes()
    rng = np.random.default_rng(5)
    mutants = [good[:cut] for cut in rng.integers(0, len(good), 20)]
    for at in rng.integers(0, len(good), 60):
        raw = bytearray(good)
        raw[at] ^= 1 << int(rng.integers(8))
        mutants.append(bytes(raw))
    for i, raw in enumerate(mutants):
        (tmp_path / "m.smzr").write_bytes(raw)
        with pytest.raises(SemzipError):
            patch_archive(tmp_path / "base.smz", tmp_path / "m.smzr", tmp_path / "out.smz")
        assert not (tmp_path / "out.smz").exists(), i
