"""`semzip serve`: the page and JSON API over HTTP, and end to end in headless Chromium when installed."""

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

from semzip import make_codec
from semzip.container import write_archive
from semzip.search import Collection
from semzip.search._serve import SearchApp, make_server

from .conftest import unit_rows

IDS = [f"pics/{i}.png" for i in range(40)]


@pytest.fixture
def server(tmp_path):
    from PIL import Image

    X = unit_rows(40, 32, seed=30)
    write_archive(tmp_path / "a.smz", make_codec("int8").fit(X), X, ids=IDS, model="ViT-B-32:openai")
    (tmp_path / "images" / "pics").mkdir(parents=True)
    for name in IDS[:10]:  # only some originals on disk: the others get no thumbnail
        Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "images" / name)
    (tmp_path / "secret.txt").write_text("outside the images folder")
    with Collection([tmp_path / "a.smz"], preload=True) as coll:
        srv = make_server(SearchApp(coll, images=tmp_path / "images", k=5))
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        host, port = srv.server_address[:2]
        try:
            yield f"http://{host}:{port}"
        finally:
            srv.shutdown()
            srv.server_close()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


def test_binds_to_localhost(server):
    assert server.startswith("http://127.0.0.1:")


def test_page_shows_hits_with_thumbnails(server):
    status, kind, body = get(f"{server}/?q={quote('like:pics/3.png')}")
    page = body.decode()
    assert status == 200 and kind.startswith("text/html")
    assert page.count('class="hit"') == 5
    assert 'data-id="pics/3.png"' in page.split('class="hit"')[1]  # the item itself ranks first
    assert '<img src="/image?id=pics/3.png"' in page
    assert "http" not in page.replace(server, "")  # no external assets


def test_api_and_images(server):
    status, kind, body = get(f"{server}/api/search?q={quote('like:pics/12.png')}&k=3")
    result = json.loads(body)
    assert status == 200 and kind == "application/json"
    assert [h["rank"] for h in result["hits"]] == [1, 2, 3] and result["hits"][0]["id"] == "pics/12.png"
    status, kind, body = get(f"{server}/image?id=pics/3.png")
    assert status == 200 and kind == "image/png" and body.startswith(b"\x89PNG")
    assert get(f"{server}/image?id=pics/30.png")[0] == 404  # not on disk
    assert get(f"{server}/image?id={quote('../secret.txt')}")[0] == 404  # never outside --images
    assert get(f"{server}/nothing")[0] == 404


def test_errors_are_shown_not_crashes(server, monkeypatch):
    monkeypatch.setitem(sys.modules, "semzip.embed", None)
    status, _, body = get(f"{server}/?q={quote('a dog on a beach')}")
    assert status == 400 and 'id="error"' in body.decode() and "semzip[clip]" in body.decode()
    status, _, body = get(f"{server}/api/search?q={quote('like:missing')}")
    assert status == 400 and "no item with id 'missing'" in json.loads(body)["error"]


def test_text_queries_use_the_embedder(server, monkeypatch):
    import types

    vec = unit_rows(40, 32, seed=30)[21]
    loads, seen = [], []

    def embed_texts(texts, model, weights=None, device="cpu"):
        seen.append((texts, model))
        return vec[None]

    def load_model(name, weights=None, device="cpu"):
        loads.append(name)
        return f"loaded {name}"

    fake = types.SimpleNamespace(load_model=load_model, embed_texts=embed_texts)
    monkeypatch.setitem(sys.modules, "semzip.embed", fake)
    for _ in range(2):
        status, _, body = get(f"{server}/api/search?q={quote('a red square')}&k=1")
        assert status == 200 and json.loads(body)["hits"][0]["id"] == "pics/21.png"
    assert loads == ["ViT-B-32:openai"]  # the model is loaded once, not per query
    assert seen == [(["a red square"], "loaded ViT-B-32:openai")] * 2


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_end_to_end_in_headless_chromium(server, tmp_path):
    url = f"{server}/?q={quote('like:pics/5.png')}&k=4"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    assert 'id="hits"' in dom
    hits = dom.split('class="hit"')[1:]
    assert len(hits) == 4 and 'data-id="pics/5.png"' in hits[0]
    assert '<input name="q" value="like:pics/5.png"' in dom
    assert 'src="/image?id=pics/5.png"' in hits[0]


def test_cli_serve_refuses_a_missing_images_folder(tmp_path, capsys):
    from semzip.cli import main

    X = unit_rows(5, 32, seed=31)
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X)
    assert main(["serve", str(tmp_path / "a.smz"), "--images", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
