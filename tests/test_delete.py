"""`semzip delete`: items removed by id, every other item keeps its exact code, for every codec family."""

import json

import numpy as np
import pytest

from semzip import InputError, make_codec, save_codec
from semzip.cli import main
from semzip.codecs import available_codecs, codec_class
from semzip.container import Archive, delete_items, merge_archives, write_archive
from semzip.search import Collection

from .utils import unit_rows

SPECS = [codec_class(name).example_specs[0] for name in available_codecs()]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("embed", [True, False], ids=["embedded", "shared"])
def test_kept_items_decode_exactly_as_before(tmp_path, spec, embed):
    X = unit_rows(300, 64, seed=80)
    codec = make_codec(spec).fit(X)
    ids = [f"img{i}" for i in range(250)]
    path = tmp_path / "a.smz"
    write_archive(path, codec, X[:250], ids=ids, pixels=np.arange(250) + 10, block_items=32, embed_codec=embed)
    with Archive.open(path, codec=codec) as arc:
        before = arc.decode()
    gone = [ids[i] for i in (0, 5, 31, 32, 100, 249)] + ids[64:96]  # a whole block (64..95) among them
    result = delete_items(path, gone, codec=None if embed else codec)
    keep = np.array([i not in set(gone) for i in ids])
    assert result["deleted"] == len(gone) and result["items"] == int(keep.sum())
    with Archive.open(path, codec=codec) as arc:
        assert arc.ids == [i for i, k in zip(ids, keep) if k] and arc.verify() == []
        np.testing.assert_array_equal(arc.decode(), before[keep])
        np.testing.assert_array_equal(arc.pixels, (np.arange(250) + 10)[keep])
        assert len(arc.index) == 7  # 8 blocks of 32, one emptied
        with pytest.raises(InputError):
            arc.get("img5")


def test_deleted_items_are_gone_from_search_merge_and_compact(tmp_path):
    X = unit_rows(400, 64, seed=81)
    codec = make_codec("pq:M=8,K=16,opq=0").fit(X)
    write_archive(tmp_path / "a.smz", codec, X[:200], ids=[f"a{i}" for i in range(200)])
    write_archive(tmp_path / "b.smz", codec, X[200:], ids=[f"b{i}" for i in range(200)])
    delete_items(tmp_path / "a.smz", ["a3", "a7"])
    with Collection([tmp_path / "a.smz"]) as coll:
        hits = coll.search(X[3:4] * 1.0, k=5)
    assert len(hits.ids[0]) == 5 and not {"a3", "a7"} & set(hits.ids[0])
    merge_archives([tmp_path / "a.smz", tmp_path / "b.smz"], tmp_path / "m.smz")
    with Archive.open(tmp_path / "m.smz") as m:
        assert m.items == 398 and "a3" not in m.ids
    assert main(["compact", str(tmp_path / "a.smz"), "--force"]) == 0
    with Archive.open(tmp_path / "a.smz") as arc:
        assert arc.items == 198 and "a7" not in arc.ids


def test_cli_delete_refuses_unknown_ids_and_emptying(tmp_path, capsys):
    X = unit_rows(50, 64, seed=82)
    write_archive(tmp_path / "a.smz", make_codec("int8").fit(X), X)
    before = (tmp_path / "a.smz").read_bytes()
    assert main(["delete", str(tmp_path / "a.smz"), "3", "nope"]) == 2
    assert "not in" in capsys.readouterr().err and (tmp_path / "a.smz").read_bytes() == before
    (tmp_path / "all.txt").write_text("\n".join(str(i) for i in range(50)))
    assert main(["delete", str(tmp_path / "a.smz"), "--ids", str(tmp_path / "all.txt")]) == 2
    assert "leave no archive" in capsys.readouterr().err and (tmp_path / "a.smz").read_bytes() == before
    assert main(["delete", str(tmp_path / "a.smz")]) == 2
    assert main(["delete", str(tmp_path / "a.smz"), "3", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["deleted"] == 2 and out["items"] == 48 and out["ids_now_stored"]
    assert main(["ls", str(tmp_path / "a.smz")]) == 0
    assert capsys.readouterr().out.split()[:5] == ["0", "1", "2", "5", "6"]


def test_shared_codec_archive_needs_its_codec(tmp_path, capsys):
    X = unit_rows(50, 64, seed=83)
    codec = make_codec("pq:M=8,K=16,opq=0").fit(X)
    save_codec(codec, tmp_path / "c.smzc")
    write_archive(tmp_path / "a.smz", codec, X, embed_codec=False)
    assert main(["delete", str(tmp_path / "a.smz"), "1"]) == 4
    assert main(["delete", str(tmp_path / "a.smz"), "1", "--codec", str(tmp_path / "c.smzc")]) == 0
