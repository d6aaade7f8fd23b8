"""Export to faiss: codes reused where faiss has the layout (pq, f16), else decoded into a flat index;
the faiss index reconstructs and ranks as semzip does."""

import json

import numpy as np
import pytest

import faiss

from semzip import make_codec
from semzip.cli import main
from semzip.container import Archive, write_archive
from semzip.search import Collection

from .utils import unit_rows


@pytest.mark.parametrize("spec, reused, kind", [
    ("pq:M=8,K=256,opq=1", True, "IndexPreTransform(IndexPQ)"), ("pq:M=16,K=16,opq=0", True, "IndexPQ"),
    ("pq:M=8,K=64,opq=0", True, "IndexPQ"), ("pq:M=16,K=16,opq=1,raw=1", True, "IndexPreTransform(IndexPQ)"),
    ("f16", True, "IndexScalarQuantizer"), ("int8", False, "IndexFlatIP"), ("sign", False, "IndexFlatIP")])
def test_exported_index_reconstructs_and_ranks_as_the_archive(tmp_path, capsys, spec, reused, kind):
    X = unit_rows(1500, 64, seed=1)
    write_archive(tmp_path / "a.smz", make_codec(spec).fit(X), X[:700], block_items=128)
    assert main(["export", str(tmp_path / "a.smz"), "--faiss", str(tmp_path / "a.index"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["codes_reused"], info["index"], info["items"]) == (reused, kind, 700)
    index = faiss.read_index(str(tmp_path / "a.index"))
    with Archive.open(tmp_path / "a.smz") as arc:
        R = arc.decode()
    np.testing.assert_allclose(index.reconstruct_n(0, index.ntotal), R, atol=1e-6)
    Q = unit_rows(16, 64, seed=2)
    D, I = index.search(Q, 10)
    with Collection([tmp_path / "a.smz"]) as coll:
        found = coll.search(Q, 10, normalize=False)
    assert (I == found.positions).mean() > 0.99  # the same ranking (ties may order differently)
    np.testing.assert_allclose(D, found.scores, atol=1e-5)
    if reused:  # the codes themselves were copied: the index is about the archive's size, not float32's
        assert info["bytes"] < 0.6 * 700 * 64 * 4


def test_export_refuses_bad_paths_with_clear_errors(tmp_path, capsys):
    X = unit_rows(50, 32, seed=3)
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X)
    assert main(["export", str(tmp_path / "a.smz"), "--faiss", str(tmp_path / "no" / "x.index")]) == 5
    assert "cannot write" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.smz"), "--faiss", str(tmp_path / "x.index")]) == 2
    assert "no such archive" in capsys.readouterr().err and not (tmp_path / "x.index").exists()
