"""Nearest real images: each item's most similar gallery originals, on the gallery's codes; contact sheet."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from semzip import InputError, make_codec
from semzip.cli import main
from semzip.container import write_archive
from semzip.decode import nearest_images
from semzip.search import Collection

from .utils import unit_rows


@pytest.fixture
def gallery(tmp_path):
    """A 40-image gallery (small PNGs under pics/, ids are their paths) and an archive of 12 items,
    item i a noisy copy of gallery image 3i, so its nearest real image is known."""
    G = unit_rows(40, 64, seed=5)
    pics = tmp_path / "pics"
    (pics / "sub").mkdir(parents=True)
    ids = [f"sub/g{i}.png" for i in range(40)]
    for i, name in enumerate(ids):
        Image.new("RGB", (40 + i, 30), (6 * i, 100, 200)).save(pics / name)
    write_archive(tmp_path / "g.smz", make_codec("f16").fit(G), G, ids=ids, model="m:a")
    rng = np.random.default_rng(6)
    X = G[::3][:12] + 0.05 * rng.standard_normal((12, 64)).astype(np.float32)
    write_archive(tmp_path / "a.smz", make_codec("int8").fit(X), X, ids=[f"x{i}" for i in range(12)], model="m:a")
    return tmp_path


def test_nearest_finds_the_source_image_best_first(gallery):
    with Collection([gallery / "a.smz"]) as items, Collection([gallery / "g.smz"]) as g:
        rows = nearest_images(items, g, k=3, gallery_images=gallery / "pics")
        some = nearest_images(items, g, k=1, ids=["x4", "x1"])
    assert [r["id"] for r in rows] == [f"x{i}" for i in range(12)]
    assert all(r["nearest"][0]["id"] == f"sub/g{3 * i}.png" for i, r in enumerate(rows))
    assert all(r["nearest"][0]["image"] == str((gallery / "pics" / f"sub/g{3 * i}.png").resolve())
               for i, r in enumerate(rows))
    assert all(np.diff([n["score"] for n in r["nearest"]]).max() <= 0 for r in rows)
    assert [r["nearest"][0]["id"] for r in some] == ["sub/g12.png", "sub/g3.png"]
    assert some[0]["nearest"][0]["image"] is None  # no --images: no originals


def test_nearest_refuses_mismatches(gallery, tmp_path):
    Y = unit_rows(10, 32, seed=7)
    write_archive(tmp_path / "narrow.smz", make_codec("f16").fit(Y), Y, model="m:a")
    X = unit_rows(10, 64, seed=8)
    write_archive(tmp_path / "other.smz", make_codec("f16").fit(X), X, model="m:b")
    with Collection([gallery / "a.smz"]) as items:
        for path, match in (("narrow.smz", "32-d"), ("other.smz", "not comparable")):
            with Collection([tmp_path / path]) as g, pytest.raises(InputError, match=match):
                nearest_images(items, g, k=2)
        with Collection([gallery / "g.smz"]) as g, pytest.raises(InputError, match="k must be"):
            nearest_images(items, g, k=41)
        with Collection([gallery / "g.smz"]) as g, pytest.raises(InputError, match="no item with id"):
            nearest_images(items, g, k=2, ids=["nope"])


def test_cli_nearest_json_csv_sheet_and_self_gallery(gallery, capsys):
    out = gallery / "n.csv"
    sheet = gallery / "sheet.png"
    assert main(["nearest", str(gallery / "a.smz"), "--gallery", str(gallery / "g.smz"), "--images",
                 str(gallery / "pics"), "-k", "2", "--id", "x2", "--id", "x0", "-o", str(out),
                 "--sheet", str(sheet), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["nearest"][0]["id"] for r in rows] == ["sub/g6.png", "sub/g0.png"]
    with open(out) as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["id", "rank", "neighbour", "score", "image"] and len(lines) == 5
    assert lines[1][:3] == ["x2", "1", "sub/g6.png"] and lines[1][4].endswith("g6.png")
    with Image.open(sheet) as im:  # 2 rows, 1 own-original cell + 2 neighbours
        assert im.format == "PNG" and im.width > 3 * 160 and im.height > 2 * 160
    # the gallery searched against itself: an item is never its own neighbour
    assert main(["nearest", str(gallery / "g.smz"), "--gallery", str(gallery / "g.smz"), "-k", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["nearest"][0]["id"] != r["id"] for r in rows)
    assert main(["nearest", str(gallery / "a.smz"), "--gallery", str(gallery / "g.smz"),
                 "--images", str(gallery / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
