"""Tags: each item's nearest words of a text vocabulary, on the codes; and tags5, what survives compression."""

import csv
import json

import numpy as np
import pytest

from semzip import InputError, make_codec
from semzip.cli import main
from semzip.container import Archive, write_archive
from semzip.eval.metrics import tag_overlap
from semzip.search import Collection

from .utils import unit_rows


def test_tags_are_the_decoded_vectors_nearest_words_in_order(tmp_path):
    X = unit_rows(600, 64, seed=90)
    words = unit_rows(40, 64, seed=91)
    names = [f"w{i}" for i in range(40)]
    write_archive(tmp_path / "a.smz", make_codec("pq:M=16,K=16,opq=0").fit(X), X, block_items=128)
    with Collection([tmp_path / "a.smz"]) as coll:
        top, scores = coll.tags(words, names, k=5)
        labels, best = coll.classify(words, names)
    with Archive.open(tmp_path / "a.smz") as arc:
        R = arc.decode()
    S = (R / np.linalg.norm(R, axis=1, keepdims=True)) @ (words / np.linalg.norm(words, axis=1, keepdims=True)).T
    assert top.shape == (600, 5) and (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_allclose(scores, -np.sort(-S, axis=1)[:, :5], atol=1e-5)
    assert (top[:, 0] == labels).all() and (scores[:, 0] == best).all()  # classify is tags with k=1
    with Collection([tmp_path / "a.smz"]) as coll, pytest.raises(InputError, match="k must be"):
        coll.tags(words, names, k=41)


def test_tag_overlap_counts_shared_tags():
    words = np.eye(8, dtype=np.float32)
    ref = np.array([[8, 7, 6, 5, 4, 3, 2, 1]], dtype=np.float32)
    assert tag_overlap(ref, ref, words, k=3) == 1.0
    moved = np.array([[8, 7, 1, 1, 1, 6, 1, 1]], dtype=np.float32)  # tags {0, 1, 5} vs {0, 1, 2}
    assert tag_overlap(moved, ref, words, k=3) == pytest.approx(2 / 3)
    with pytest.raises(InputError, match="vocabulary size"):
        tag_overlap(ref, ref, words, k=9)


def test_cli_tags_csv_json_and_mismatches(tmp_path, capsys):
    X = unit_rows(30, 64, seed=92)
    write_archive(tmp_path / "a.smz", make_codec("int8").fit(X), X, ids=[f"i{i}" for i in range(30)], model="m:a")
    np.savez(tmp_path / "v.npz", text_features=X[:6], classnames=np.array(list("abcdef")), model=np.array("m:a"))
    assert main(["tags", str(tmp_path / "a.smz"), "--vocab", str(tmp_path / "v.npz"), "-k", "2",
                 "-o", str(tmp_path / "t.csv"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[3]["id"] == "i3" and rows[3]["tags"][0]["tag"] == "d" and len(rows[3]["tags"]) == 2
    with open(tmp_path / "t.csv") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["id", "rank", "tag", "score"] and len(lines) == 1 + 60 and lines[1][:3] == ["i0", "1", "a"]
    np.savez(tmp_path / "other.npz", text_features=X[:6], classnames=np.array(list("abcdef")), model=np.array("m:b"))
    assert main(["tags", str(tmp_path / "a.smz"), "--vocab", str(tmp_path / "other.npz")]) == 2
    assert "not comparable" in capsys.readouterr().err
    np.savez(tmp_path / "nonames.npz", text_features=X[:6])
    assert main(["tags", str(tmp_path / "a.smz"), "--vocab", str(tmp_path / "nonames.npz")]) == 2
    assert "--names" in capsys.readouterr().err
    (tmp_path / "words.txt").write_text("\n".join("uvwxyz"))
    assert main(["tags", str(tmp_path / "a.smz"), "--vocab", str(tmp_path / "nonames.npz"), "--names",
                 str(tmp_path / "words.txt"), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tags"][0]["tag"] == "u"


def test_eval_reports_tags5_on_real_data(shared_data, tmp_path, capsys):
    d = shared_data / "clip-vit-b-32"
    assert main(["eval", str(d / "zeroshot_caltech101.npz"), "--codecs", "sign,pq:M=8,K=16,opq=0",
                 "--vocab", str(d / "text_lvis.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reference"]["metrics"]["tags5"] == 1.0
    tags5 = {r["codec"]: r["metrics"]["tags5"] for r in report["rows"]}
    assert 0.3 < tags5["pq:M=8,K=16,opq=0"] < tags5["sign"] < 1.0  # 32 bits keep fewer tags than 512
