"""`semzip serve`: a one-page local search UI over archives (stdlib http.server, no external assets).

GET /?q=QUERY&k=K&page=P renders the hits server-side (works without JavaScript): each hit links to
"more like this" (`like:ID`), shows a cached Pillow thumbnail of its original (GET /thumb?id=ID; the
original itself at /image?id=ID) when `images` holds it, its tags when a vocabulary is given, its
caption (from `semzip caption`) and generated image (GET /generated?id=ID, from `semzip generate`)
when configured; pages go on with `page`. GET /api/search answers the same as JSON. A query is
`like:ID` (an item's own vector) or text (needs semzip.embed).

Hostile input is expected (archives come from elsewhere, any web page can send requests to a local
port): everything put in the page is escaped, responses carry a Content-Security-Policy and
`nosniff`, only image files of the archive's own items are served (never other files, never HTML),
a request whose Host is not the address served is refused (DNS rebinding), idle connections time out,
and any error in a handler is answered with a status, never a dropped connection.
"""

from __future__ import annotations

import html
import json
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np

from .._errors import InputError, SemzipError
from .._validate import l2_normalize
from ._engine import Collection, best_columns
from ._text import embed_queries, load_text_model, query_model

_MAX_K = 200
#: Deepest hit a page may reach (k * (page + 1)), so paging cannot ask for the whole collection.
_MAX_DEPTH = 1000
#: Tags shown per hit.
_TAGS = 3
#: Seconds an idle connection is kept.
_IDLE_TIMEOUT_S = 10
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>semzip search</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
form {{ margin-bottom: 1.5em; }} input[name=q] {{ width: 30em; max-width: 100%; font-size: 1.1em; }}
#hits {{ display: flex; flex-wrap: wrap; gap: 1em; padding: 0; list-style: none; }}
.hit {{ width: 12em; border: 1px solid #ccc; padding: .5em; overflow-wrap: anywhere; }}
.hit img {{ max-width: 100%; max-height: 10em; display: block; }}
.hit a.more {{ text-decoration: none; color: inherit; display: block; }}
.noimg {{ height: 6em; display: flex; align-items: center; justify-content: center; background: #f3f3f3;
  font-size: 1.1em; text-align: center; }}
.id {{ font-weight: 600; }} .tags {{ color: #064; font-size: .9em; }} .caption {{ font-style: italic; }}
.score {{ color: #555; font-variant-numeric: tabular-nums; }} #error {{ color: #b00; }}
nav {{ margin-top: 1em; display: flex; gap: 1em; }}
</style></head><body>
<h1>semzip search</h1>
<p id="about">{about}</p>
<form method="get" action="/"><input name="q" value="{q}" placeholder="like:ID or text" autofocus>
<input name="k" type="number" min="1" max="{max_k}" value="{k}"> <button type="submit">Search</button></form>
{body}
</body></html>
"""


class SearchApp:
    """Answers queries against a collection; kept apart from HTTP so it can be tested directly."""

    def __init__(self, collection: Collection, images: Path | None = None, k: int = 12,
                 text: dict[str, Any] | None = None, vocab: tuple[np.ndarray, list[str]] | None = None,
                 captions: dict[str, str] | None = None, generated: Path | None = None) -> None:
        """`text`: how text queries are embedded: `model` (None = the archive's), `weights`, `device`.
        `vocab`: (text embeddings, words) for tags; `captions`: id -> caption; `generated`: a folder
        written by `semzip generate` (its index.json names each item's image)."""
        self.collection = collection
        self.text = {"model": None, "weights": None, "device": "cpu"} | (text or {})
        self.images = images.resolve() if images is not None else None
        self.k = k
        self._lock = threading.Lock()  # one search at a time bounds memory
        self._ids = frozenset(i for a in collection.archives for i in a.ids)
        self._text_model: Any = None  # loaded on the first text query, then kept
        self.vocab: tuple[np.ndarray, list[str]] | None = None
        if vocab is not None:
            T, words = vocab
            if T.shape[1] != collection.dim or len(words) != len(T):
                raise InputError(f"the vocabulary is {len(words)} words of {T.shape[1]} dims for {T.shape[0]} "
                                 f"embeddings; the archive holds {collection.dim}-d items")
            self.vocab = (l2_normalize(np.asarray(T, dtype=np.float32)), list(words))
        self.captions = captions or {}
        self.generated = _generated_files(generated, self._ids) if generated is not None else {}

    def query_vector(self, q: str) -> np.ndarray:
        q = q.strip()
        if not q:
            raise InputError("empty query")
        if q.startswith("like:"):
            return self.collection.vector(q[len("like:"):])
        with self._lock:
            if self._text_model is None:
                name = query_model(self.collection.model, self.text["model"])
                self._text_model = load_text_model(name, weights=self.text["weights"], device=self.text["device"])
        return embed_queries([q], self._text_model, self.collection.dim)[0]

    def search(self, q: str, k: int, page: int = 0) -> list[dict[str, Any]]:
        """Hits `page * k + 1 .. (page + 1) * k` of a query: {rank, id, score} and, when configured,
        tags, caption and whether an original / a generated image can be shown."""
        depth = (page + 1) * k
        if page < 0 or depth > _MAX_DEPTH:
            raise InputError(f"pages reach at most hit {_MAX_DEPTH}; page {page} of {k} goes to {depth}")
        vector = self.query_vector(q)
        with self._lock:
            found = self.collection.search(vector, min(depth, self.collection.items))
        hits = found.to_json()[0]["hits"][page * k :]
        tags = self._tags(self.vocab, [h["id"] for h in hits]) if self.vocab is not None and hits else None
        for n, h in enumerate(hits):
            h["image"] = self.image_path(h["id"]) is not None
            h["generated"] = h["id"] in self.generated
            if h["id"] in self.captions:
                h["caption"] = self.captions[h["id"]]
            if tags is not None:
                h["tags"] = tags[n]
        return hits

    def _tags(self, vocab: tuple[np.ndarray, list[str]], ids: list[str]) -> list[list[str]]:
        """The best words of `vocab` for each item's decoded vector (ties to the earlier word)."""
        T, words = vocab
        _, V = self.collection.vectors(ids)
        best, _ = best_columns(l2_normalize(V) @ T.T, _TAGS)
        return [[words[j] for j in row] for row in best]

    def image_path(self, item_id: str) -> Path | None:
        """The original image of an item of the collection when `images` holds it (never a file that
        is not an item's; see `semzip.decode.item_image`)."""
        from ..decode._images import item_image

        return item_image(self.images, item_id) if item_id in self._ids else None

    def page(self, q: str, k: int, page: int = 0) -> tuple[HTTPStatus, str]:
        about = (f"{self.collection.items} items in {len(self.collection.archives)} archive(s), "
                 f"model {html.escape(self.collection.model)}. Query with <code>like:ID</code> or text; "
                 "click a hit for more like it.")
        status, body = HTTPStatus.OK, ""
        if q:
            try:
                hits = self.search(q, k, page)
            except SemzipError as exc:
                status, body = HTTPStatus.BAD_REQUEST, f'<p id="error">{html.escape(str(exc))}</p>'
            else:
                body = f'<ol id="hits" start="{page * k + 1}">{"".join(_hit(h, k) for h in hits)}</ol>'
                links = []
                if page > 0:
                    links.append(f'<a rel="prev" href="{_href(q, k, page - 1)}">previous</a>')
                if len(hits) == k and (page + 2) * k <= min(_MAX_DEPTH, self.collection.items):
                    links.append(f'<a rel="next" href="{_href(q, k, page + 1)}">next</a>')
                body += f'<nav>{"".join(links)}</nav>'
        return status, _PAGE.format(about=about, q=html.escape(q), k=k, max_k=_MAX_K, body=body)


def _href(q: str, k: int, page: int) -> str:
    return html.escape(f"/?q={quote(q)}&k={k}" + (f"&page={page}" if page else ""))


def _hit(h: dict[str, Any], k: int) -> str:
    """One hit: its picture (thumbnail, generated image, or its id in large type), linked to "more like this"."""
    item = quote(h["id"])
    pictures = []
    if h["image"]:
        pictures.append(f'<img src="/thumb?id={item}" alt="{html.escape(h["id"])}">')
    if h["generated"]:
        pictures.append(f'<img class="generated" src="/generated?id={item}" alt="generated from {html.escape(h["id"])}">')
    label = f'<span class="id">{html.escape(h["id"])}</span>' if pictures else ""
    picture = "".join(pictures) or f'<div class="noimg">{html.escape(h["id"])}</div>'
    extra = ""
    if "caption" in h:
        extra += f'<div class="caption">{html.escape(h["caption"])}</div>'
    if "tags" in h:
        extra += f'<div class="tags">{html.escape(", ".join(h["tags"]))}</div>'
    original = f' <a class="original" href="/image?id={item}">original</a>' if h["image"] else ""
    return (f'<li class="hit" data-id="{html.escape(h["id"])}"><a class="more" href="{_href("like:" + h["id"], k, 0)}" '
            f'title="more like this">{picture}{label}</a>{extra}'
            f'<span class="score">{h["score"]:.4f}</span>{original}</li>')


def _generated_files(folder: Path, ids: frozenset[str]) -> dict[str, Path]:
    """id -> generated PNG from a `semzip generate` folder's index.json (items of this collection,
    files inside the folder only)."""
    from ..decode._images import item_image

    try:
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        entries = [(e["id"], e["file"]) for e in index["items"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--generated {str(folder)!r} has no readable index.json from `semzip generate` ({exc})") from None
    found = {i: item_image(folder, f) for i, f in entries if isinstance(i, str) and isinstance(f, str) and i in ids}
    return {i: p for i, p in found.items() if p is not None}


def make_server(app: SearchApp, host: str = "127.0.0.1", port: int = 0,
                idle_timeout: float = _IDLE_TIMEOUT_S) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0 = a free one; see `server.server_address`); call serve_forever.
    Connections idle for `idle_timeout` seconds are closed."""
    handler = type("Handler", (_Handler,), {"app": app, "timeout": idle_timeout})
    return ThreadingHTTPServer((host, port), handler)


class _Handler(BaseHTTPRequestHandler):
    """One request to the page of `app` (set by `make_server` on a subclass)."""

    app: SearchApp
    head_only = False

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        try:
            if not _allowed_host(self.headers.get("Host", ""), self.server.server_address):
                self._send(HTTPStatus.MISDIRECTED_REQUEST, b"unknown host", "text/plain")
                return
            self._route()
        except Exception:  # noqa: BLE001 - whatever a request does, it gets an answer
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error", "text/plain")

    def do_HEAD(self) -> None:  # noqa: N802
        self.head_only = True
        self.do_GET()

    def _route(self) -> None:
        url = urlsplit(self.path)
        args = parse_qs(url.query)
        q, item = args.get("q", [""])[0], args.get("id", [""])[0]
        k = min(max(_int_arg(args, "k", self.app.k), 1), _MAX_K)
        page = max(_int_arg(args, "page", 0), 0)
        if url.path == "/":
            status, body = self.app.page(q, k, page)
            self._send(status, body.encode(), "text/html; charset=utf-8")
        elif url.path == "/api/search":
            self._api(q, k, page)
        elif url.path in ("/image", "/thumb", "/generated"):
            self._image(url.path, item)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def _image(self, route: str, item: str) -> None:
        from ..decode._images import thumbnail_jpeg

        path = self.app.generated.get(item) if route == "/generated" else self.app.image_path(item)
        data = None
        if path is not None:
            data = thumbnail_jpeg(path) if route == "/thumb" else path.read_bytes()
        if path is None or data is None:
            self._send(HTTPStatus.NOT_FOUND, b"no such image", "text/plain")
            return
        kind = "image/jpeg" if route == "/thumb" else mimetypes.guess_type(path.name)[0] or ""
        self._send(HTTPStatus.OK, data, kind if kind.startswith("image/") else "application/octet-stream")

    def _api(self, q: str, k: int, page: int) -> None:
        try:
            payload: Any = {"query": q, "page": page, "hits": self.app.search(q, k, page)}
            status = HTTPStatus.OK
        except SemzipError as exc:
            payload, status = {"error": str(exc)}, HTTPStatus.BAD_REQUEST
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not self.head_only:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the terminal shows the URL, not every request


def _int_arg(args: dict[str, list[str]], name: str, default: int) -> int:
    """The integer query argument `name`, or `default` when absent or not an integer."""
    try:
        return int(args.get(name, [str(default)])[0])
    except ValueError:
        return default


def _allowed_host(header: str, address: Any) -> bool:
    """True when a request's Host names the address served (any loopback name for a loopback server):
    a page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) sends its own name."""
    bound, port = str(address[0]), int(address[1])
    name, given_port = header.lower(), "80"
    if name.startswith("["):  # [v6] or [v6]:port
        name, _, rest = name[1:].partition("]")
        given_port = rest[1:] if rest.startswith(":") else given_port
    elif ":" in name:
        name, _, given_port = name.rpartition(":")
    loopback = {"127.0.0.1", "localhost", "::1"}
    return given_port == str(port) and (name == bound or (bound in loopback and name in loopback))
