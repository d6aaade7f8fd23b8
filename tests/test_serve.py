"""`semzip serve`: the page and JSON API over HTTP, and end to end in headless Chromium when installed."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from semzip import make_codec
from semzip.container import write_archive
from semzip.search import Collection
from semzip.search._serve import SearchApp, make_server

from .utils import unit_rows

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
    with _serving(tmp_path / "a.smz", tmp_path / "images", k=5) as url:
        yield url


@contextlib.contextmanager
def _serving(archive, images, k):
    """`semzip serve` of one archive on a free loopback port, in a thread; yields its URL."""
    with Collection([archive], preload=True) as coll:
        srv = make_server(SearchApp(coll, images=images, k=k))
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
    assert '<img src="/thumb?id=pics/3.png"' in page and 'href="/image?id=pics/3.png"' in page
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


def _dump_dom(url, profile):
    """The page's DOM after Chromium loaded it and ran its scripts."""
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


NEEDS_CHROMIUM = pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")


@NEEDS_CHROMIUM
def test_end_to_end_in_headless_chromium(server, tmp_path):
    dom = _dump_dom(f"{server}/?q={quote('like:pics/5.png')}&k=4", tmp_path / "profile")
    assert 'id="hits"' in dom
    hits = dom.split('class="hit"')[1:]
    assert len(hits) == 4 and 'data-id="pics/5.png"' in hits[0]
    assert '<input name="q" value="like:pics/5.png"' in dom
    assert 'src="/thumb?id=pics/5.png"' in hits[0]


def test_cli_serve_refuses_a_missing_images_folder(tmp_path, capsys):
    from semzip.cli import main

    X = unit_rows(5, 32, seed=31)
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X)
    assert main(["serve", str(tmp_path / "a.smz"), "--images", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_text_queries_use_the_given_weights_and_refuse_another_model(tmp_path, monkeypatch):
    """serve --weights/--device/--model reach the model loader; a model of another space is refused."""
    import types

    from semzip import InputError

    X = unit_rows(10, 32, seed=31)
    write_archive(tmp_path / "a.smz", make_codec("int8").fit(X), X, model="ViT-B-32:openai")
    loads = []

    def load_model(name, weights=None, device="cpu"):
        loads.append((name, weights, device))
        return name

    fake = types.SimpleNamespace(load_model=load_model, embed_texts=lambda texts, model, **kw: X[:1])
    monkeypatch.setitem(sys.modules, "semzip.embed", fake)
    with Collection([tmp_path / "a.smz"]) as coll:
        app = SearchApp(coll, text={"weights": tmp_path / "w.safetensors", "device": "cpu"})
        assert app.search("a cat", 1)[0]["id"]
        assert loads == [("ViT-B-32:openai", tmp_path / "w.safetensors", "cpu")]
        with pytest.raises(InputError, match="another space"):
            SearchApp(coll, text={"model": "ViT-L-14:openai"}).search("a cat", 1)


def _request(base, path, method="GET", host=None):
    """(status, headers, body) of a raw request, with an optional Host header of our choosing."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest(method, path, skip_host=host is not None)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def test_only_the_archives_own_images_are_served(server, tmp_path):
    (tmp_path / "images" / "notes.txt").write_text("private")
    (tmp_path / "images" / "page.html").write_text("<script>alert(1)</script>")
    for name in ("notes.txt", "page.html", "pics/9.png"):
        status, _, body = get(f"{server}/image?id={quote(name)}")
        assert (status == 200) == (name == "pics/9.png"), name  # 9.png is an item; the others are not
    for bad in ("%00", "a" * 300, "../secret.txt"):
        assert get(f"{server}/image?id={bad}")[0] == 404


def test_security_headers_host_check_and_head(server):
    status, headers, body = _request(server, "/?q=like:pics/1.png")
    assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    port = server.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", "localhost:1"):
        assert _request(server, "/", host=host)[0] == 421, host
    assert _request(server, "/", host=f"localhost:{port}")[0] == 200
    status, headers, body = _request(server, "/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_everything_from_the_archive_is_escaped_and_long_ids_work(tmp_path):
    from PIL import Image

    X = unit_rows(6, 32, seed=32)
    long_id = "x" * 300 + ".png"  # longer than a file name may be: no thumbnail, but the page works
    ids = ["<b>bold</b>.png", long_id, "a.png", "b.png", "c.png", "d.png"]
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X, ids=ids, model="<img src=x onerror=alert(1)>")
    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a.png")
    with Collection([tmp_path / "a.smz"]) as coll:
        app = SearchApp(coll, images=tmp_path / "images", k=6)
        status, page = app.page("like:a.png", 6)
    assert status == 200 and "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;.png" in page and long_id in page
    assert 'name="viewport"' in page


@NEEDS_CHROMIUM
def test_hostile_model_and_ids_stay_text_in_chromium(tmp_path):
    """Markup in the archive's model id and item ids is shown as text: Chromium builds no element
    from it and runs none of its handlers (the CSP would also block them; this tests the escaping)."""
    X = unit_rows(4, 32, seed=33)
    attack = "<img src=x onerror=\"document.body.setAttribute('data-pwned', 1)\">"
    ids = [f"{attack}{i}" for i in range(3)] + ["</script><script>document.title='pwned'</script>"]
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X, ids=ids, model=attack)
    (tmp_path / "images").mkdir()
    with _serving(tmp_path / "a.smz", tmp_path / "images", k=4) as url:
        dom = _dump_dom(f"{url}/?q={quote('like:' + ids[0])}&k=4", tmp_path / "profile")
    assert 'id="hits"' in dom and len(dom.split('class="hit"')) == 5
    assert 'data-pwned="1"' not in dom and "pwned</title>" not in dom and '<img src="x"' not in dom
    assert "&lt;img src=x onerror=" in dom and "&lt;/script&gt;&lt;script&gt;" in dom


def test_idle_connections_are_closed(tmp_path):
    import socket
    import time

    X = unit_rows(4, 32, seed=33)
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X)
    with Collection([tmp_path / "a.smz"]) as coll:
        srv = make_server(SearchApp(coll), idle_timeout=0.5)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            sock = socket.create_connection(srv.server_address[:2], timeout=5)
            start = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server, not by our 5 s timeout
            assert time.monotonic() - start < 4
            sock.close()
        finally:
            srv.shutdown()
            srv.server_close()


@pytest.fixture
def product(tmp_path):
    """A served archive with everything a hit can show: originals, tags, captions, generated images."""
    from PIL import Image

    X = unit_rows(40, 32, seed=30)
    write_archive(tmp_path / "a.smz", make_codec("int8").fit(X), X, ids=IDS, model="ViT-B-32:openai")
    (tmp_path / "images" / "pics").mkdir(parents=True)
    for i, name in enumerate(IDS[:20]):
        Image.new("RGB", (300 + i, 200), (6 * i, 120, 255 - 6 * i)).save(tmp_path / "images" / name)
    (tmp_path / "gen").mkdir()
    Image.new("RGB", (16, 16), "green").save(tmp_path / "gen" / "00000_g.png")
    (tmp_path / "gen" / "index.json").write_text(json.dumps({"items": [
        {"id": "pics/5.png", "file": "00000_g.png"}, {"id": "pics/6.png", "file": "../../secret.png"},
        {"id": "not-an-item", "file": "00000_g.png"}]}))
    words = [f"word{i}" for i in range(8)]
    vocab = (X[:8], words)
    captions = {"pics/5.png": "a <b>bold</b> caption"}
    with Collection([tmp_path / "a.smz"], preload=True) as coll:
        app = SearchApp(coll, images=tmp_path / "images", k=5, vocab=vocab, captions=captions, generated=tmp_path / "gen")
        srv = make_server(app)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        host, port = srv.server_address[:2]
        try:
            yield f"http://{host}:{port}", app, X
        finally:
            srv.shutdown()
            srv.server_close()


def test_hits_link_more_like_this_and_show_tags_captions_generated(product):
    url, app, X = product
    page = get(f"{url}/?q={quote('like:pics/5.png')}")[2].decode()
    first = page.split('class="hit"')[1]
    assert f'href="/?q={quote("like:pics/5.png")}&amp;k=5"' in first and 'title="more like this"' in first
    assert 'src="/generated?id=pics/5.png"' in first and "a &lt;b&gt;bold&lt;/b&gt; caption" in first
    S = (X[5] / np.linalg.norm(X[5])) @ (X[:8] / np.linalg.norm(X[:8], axis=1, keepdims=True)).T
    hits = json.loads(get(f"{url}/api/search?q={quote('like:pics/5.png')}")[2])["hits"]
    assert hits[0]["tags"][0] == f"word{int(np.argmax(S))}" and len(hits[0]["tags"]) == 3  # int8 keeps the best
    assert hits[0]["caption"] == "a <b>bold</b> caption" and hits[0]["generated"] and hits[0]["image"]
    assert get(f"{url}/generated?id=pics/5.png")[0] == 200
    assert get(f"{url}/generated?id=pics/6.png")[0] == 404  # its index entry points outside the folder
    assert get(f"{url}/generated?id=not-an-item")[0] == 404  # not an item of the collection


def test_pages_go_on_and_stop(product):
    url, app, _ = product
    whole = [h["id"] for h in app.search("like:pics/3.png", 15)]
    pages = [[h["id"] for h in json.loads(get(f"{url}/api/search?q={quote('like:pics/3.png')}&k=5&page={p}")[2])["hits"]]
             for p in range(3)]
    assert pages[0] + pages[1] + pages[2] == whole
    html1 = get(f"{url}/?q={quote('like:pics/3.png')}&k=5&page=1")[2].decode()
    assert '<ol id="hits" start="6">' in html1 and 'rel="prev"' in html1 and 'rel="next"' in html1
    last = get(f"{url}/?q={quote('like:pics/3.png')}&k=5&page=7")[2].decode()  # items 36-40 of 40
    assert last.count('class="hit"') == 5 and 'rel="next"' not in last
    status, _, body = get(f"{url}/api/search?q={quote('like:pics/3.png')}&k=200&page=9")
    assert status == 400 and "pages reach at most" in json.loads(body)["error"]


def test_thumbnails_are_small_cached_jpegs_and_ids_without_images_read_as_text(product):
    from PIL import Image

    from semzip.decode import _images

    url, _, _ = product
    before = _images._jpeg.cache_info().hits
    for _ in range(2):
        status, kind, body = get(f"{url}/thumb?id=pics/4.png")
        assert status == 200 and kind == "image/jpeg"
    assert _images._jpeg.cache_info().hits == before + 1
    with Image.open(io.BytesIO(body)) as im:
        assert max(im.size) <= _images.THUMB_PX and im.format == "JPEG"
    assert get(f"{url}/thumb?id=pics/30.png")[0] == 404
    page = get(f"{url}/?q={quote('like:pics/30.png')}&k=40")[2].decode()
    assert '<div class="noimg">pics/30.png</div>' in page


@NEEDS_CHROMIUM
def test_type_a_query_click_a_hit_and_page_on_in_chromium(product, tmp_path):
    """In headless Chromium: type a query and submit, click the second hit (more like it), page on,
    and the page fits a 390 px phone; a screenshot is written (to $SEMZIP_SCREENSHOT when set)."""
    from .browser import Browser

    url, app, _ = product
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(url + "/")
        browser.act("document.querySelector('input[name=q]').value = 'like:pics/5.png';"
                    "document.querySelector('form').requestSubmit()")
        shown = browser.js("[...document.querySelectorAll('.hit')].map(h => h.dataset.id)")
        assert shown == [h["id"] for h in app.search("like:pics/5.png", 5)]
        assert browser.js("[...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)")
        png = browser.screenshot()
        assert png.startswith(b"\x89PNG")
        if os.environ.get("SEMZIP_SCREENSHOT"):
            Path(os.environ["SEMZIP_SCREENSHOT"]).write_bytes(png)
        browser.act("document.querySelectorAll('.hit a.more')[1].click()")
        assert browser.js("new URLSearchParams(location.search).get('q')") == f"like:{shown[1]}"
        assert browser.js("document.querySelector('.hit').dataset.id") == shown[1]
        browser.act("document.querySelector('a[rel=next]').click()")
        assert browser.js("document.querySelector('#hits').start") == 6
        assert browser.js("[...document.querySelectorAll('.hit')].map(h => h.dataset.id)") == \
            [h["id"] for h in app.search(f"like:{shown[1]}", 5, page=1)]
        browser.call("Emulation.setDeviceMetricsOverride", session=True, width=390, height=800,
                     deviceScaleFactor=1, mobile=True)
        browser.goto(f"{url}/?q={quote('like:pics/5.png')}")
        assert browser.js("document.documentElement.scrollWidth") <= 390
    finally:
        browser.close()
