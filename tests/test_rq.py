"""The progressive residual codec `rq`: prefixes decode, budgets hold on any input, cuts need no originals."""

import json

import numpy as np
import pytest

from semzip import InputError, make_codec, save_codec
from semzip.cli import main
from semzip.container import Archive, truncate_archive, write_archive

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
