"""Interop: clip-retrieval / autofaiss embedding folders as inputs, parquet ids and results in and out."""

import importlib.util
import json

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from semzip import InputError  # noqa: E402
from semzip._inputs import read_embeddings  # noqa: E402
from semzip.cli import main  # noqa: E402
from semzip.container import Archive  # noqa: E402
from semzip.decode.caption import read_captions  # noqa: E402

from .utils import unit_rows  # noqa: E402


@pytest.fixture
def folder(tmp_path):
    """clip-retrieval's output layout: img_emb/img_emb_{0,1}.npy, text_emb/text_emb_{0,1}.npy and
    metadata/metadata_{0,1}.parquet (image_path, caption); part 10 sorts after 2 numerically."""
    root = tmp_path / "emb"
    for d in ("img_emb", "text_emb", "metadata"):
        (root / d).mkdir(parents=True)
    X, T = unit_rows(70, 32, seed=1), unit_rows(70, 32, seed=2)
    cuts = {0: (0, 30), 2: (30, 50), 10: (50, 70)}
    for n, (a, b) in cuts.items():
        np.save(root / "img_emb" / f"img_emb_{n}.npy", X[a:b].astype(np.float16))
        np.save(root / "text_emb" / f"text_emb_{n}.npy", T[a:b])
        pq.write_table(pa.table({"image_path": [f"photos/{i}.jpg" for i in range(a, b)],
                                 "caption": [f"caption {i}" for i in range(a, b)]}), root / "metadata" / f"metadata_{n}.parquet")
    return root, X, T


def test_an_embedding_folder_reads_in_part_order_with_metadata_ids(folder):
    root, X, T = folder
    got = read_embeddings(str(root))
    np.testing.assert_array_equal(got.features, X.astype(np.float16).astype(np.float32))
    assert got.ids == [f"photos/{i}.jpg" for i in range(70)]
    np.testing.assert_array_equal(read_embeddings(f"{root}:text_emb").features, T)
    (root / "metadata" / "metadata_2.parquet").unlink()
    assert read_embeddings(str(root)).ids[30:32] == ["2/0", "2/1"]  # no metadata: part/row
    pq.write_table(pa.table({"image_path": ["x"]}), root / "metadata" / "metadata_0.parquet")
    with pytest.raises(InputError, match="1 rows for the 30 embeddings"):
        read_embeddings(str(root))


def test_cli_fit_compress_ls_and_captions_from_an_embedding_folder(folder, tmp_path, capsys):
    root, X, _ = folder
    assert main(["fit", "pq:M=4,K=16,opq=0", str(root), "-o", str(tmp_path / "pq.smzc")]) == 0
    assert main(["compress", str(root), "--codec", str(tmp_path / "pq.smzc"), "-o", str(tmp_path / "a.smz")]) == 0
    assert main(["compress", f"{root}:text_emb", "--codec", "f16", "-o", str(tmp_path / "t.smz")]) == 0
    with Archive.open(tmp_path / "a.smz") as arc, Archive.open(tmp_path / "t.smz") as text:
        assert arc.items == 70 and arc.ids[69] == "photos/69.jpg" and text.ids[:1] == ["photos/0.jpg"]
    assert main(["ls", str(tmp_path / "a.smz"), "-o", str(tmp_path / "ids.parquet")]) == 0
    assert pq.read_table(tmp_path / "ids.parquet").column("id").to_pylist() == [f"photos/{i}.jpg" for i in range(70)]
    rows, texts = read_captions(root / "metadata" / "metadata_2.parquet", [f"photos/{i}.jpg" for i in range(70)], 70)
    assert rows == list(range(30, 50)) and texts[0] == "caption 30"


def test_parquet_ids_in_and_results_out(tmp_path, capsys):
    X = unit_rows(12, 32, seed=4)
    np.save(tmp_path / "x.npy", X)
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(12)]}), tmp_path / "ids.parquet")
    assert main(["compress", str(tmp_path / "x.npy"), "--codec", "int8", "--ids", str(tmp_path / "ids.parquet"),
                 "-o", str(tmp_path / "a.smz")]) == 0
    np.savez(tmp_path / "v.npz", text_features=X[:4], classnames=np.array(list("abcd")))
    assert main(["tags", str(tmp_path / "a.smz"), "--vocab", str(tmp_path / "v.npz"), "-k", "2",
                 "-o", str(tmp_path / "t.parquet")]) == 0
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column_names == ["id", "rank", "tag", "score"] and table.num_rows == 24
    assert table.column("id").to_pylist()[:2] == ["k0", "k0"] and table.column("tag").to_pylist()[0] == "a"
    pq.write_table(pa.table({"name": ["x"] * 12}), tmp_path / "bad.parquet")
    assert main(["compress", str(tmp_path / "x.npy"), "--codec", "int8", "--ids", str(tmp_path / "bad.parquet"),
                 "-o", str(tmp_path / "b.smz")]) == 2
    assert "none of the columns" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray (pip install 'semzip[ray]')")
def test_compress_ray_reads_an_embedding_folder(folder, tmp_path, capsys):
    root, X, _ = folder
    assert main(["compress", str(root), "--ray", "--workers", "1", "--shard-items", "40", "--codec", "f16",
                 "-o", str(tmp_path / "big"), "--json"]) == 0
    capsys.readouterr()
    assert main(["ls", str(tmp_path / "big"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [f"photos/{i}.jpg" for i in range(70)]
