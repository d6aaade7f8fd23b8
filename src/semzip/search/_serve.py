"""`semzip serve`: a one-page local search UI over archives (stdlib http.server, no external assets).

GET /?q=QUERY renders the hits server-side (works without JavaScript); GET /api/search?q=QUERY
answers JSON; GET /image?id=ID sends the original image when `images` is given, ID is an item of the
collection, and it names an image file inside the folder. A query is `like:ID` (an item's own vector)
or text (needs semzip.embed).

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
from ._engine import Collection, SearchResult
from ._text import embed_queries, load_text_model, query_model

_MAX_K = 200
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
.score {{ color: #555; font-variant-numeric: tabular-nums; }} #error {{ color: #b00; }}
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
                 text: dict[str, Any] | None = None) -> None:
        """`text`: how text queries are embedded: `model` (None = the archive's), `weights`, `device`."""
        self.collection = collection
        self.text = {"model": None, "weights": None, "device": "cpu"} | (text or {})
        self.images = images.resolve() if images is not None else None
        self.k = k
        self._lock = threading.Lock()  # one search at a time bounds memory
        self._ids = frozenset(i for a in collection.archives for i in a.ids)
        self._text_model: Any = None  # loaded on the first text query, then kept

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

    def search(self, q: str, k: int) -> SearchResult:
        vector = self.query_vector(q)
        with self._lock:
            return self.collection.search(vector, k)

    def image_path(self, item_id: str) -> Path | None:
        """The original image of an item of the collection when `images` holds it (never a file that
        is not an item's; see `semzip.decode.item_image`)."""
        from ..decode._images import item_image

        return item_image(self.images, item_id) if item_id in self._ids else None

    def page(self, q: str, k: int) -> tuple[HTTPStatus, str]:
        about = (f"{self.collection.items} items in {len(self.collection.archives)} archive(s), "
                 f"model {html.escape(self.collection.model)}. Query with <code>like:ID</code> or text.")
        status, body = HTTPStatus.OK, ""
        if q:
            try:
                result = self.search(q, k)
            except SemzipError as exc:
                status, body = HTTPStatus.BAD_REQUEST, f'<p id="error">{html.escape(str(exc))}</p>'
            else:
                items = []
                for item_id, score in zip(result.ids[0], result.scores[0]):
                    img = (f'<img src="/image?id={quote(item_id)}" alt="{html.escape(item_id)}">'
                           if self.image_path(item_id) else "")
                    items.append(f'<li class="hit" data-id="{html.escape(item_id)}">{img}'
                                 f'<span class="id">{html.escape(item_id)}</span> '
                                 f'<span class="score">{score:.4f}</span></li>')
                body = f'<ol id="hits">{"".join(items)}</ol>'
        return status, _PAGE.format(about=about, q=html.escape(q), k=k, max_k=_MAX_K, body=body)


def make_server(app: SearchApp, host: str = "127.0.0.1", port: int = 0,
                idle_timeout: float = _IDLE_TIMEOUT_S) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0 = a free one; see `server.server_address`); call serve_forever.
    Connections idle for `idle_timeout` seconds are closed."""

    class Handler(BaseHTTPRequestHandler):
        timeout = idle_timeout
        head_only = False

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            try:
                if not _allowed_host(self.headers.get("Host", ""), server.server_address):
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
            q = args.get("q", [""])[0]
            try:
                k = min(max(int(args.get("k", [app.k])[0]), 1), _MAX_K)
            except ValueError:
                k = app.k
            if url.path == "/":
                status, page = app.page(q, k)
                self._send(status, page.encode(), "text/html; charset=utf-8")
            elif url.path == "/api/search":
                self._api(q, k)
            elif url.path == "/image":
                path = app.image_path(args.get("id", [""])[0])
                if path is None:
                    self._send(HTTPStatus.NOT_FOUND, b"no such image", "text/plain")
                else:
                    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    self._send(HTTPStatus.OK, path.read_bytes(), kind if kind.startswith("image/") else
                               "application/octet-stream")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def _api(self, q: str, k: int) -> None:
            try:
                result = app.search(q, k)
            except SemzipError as exc:
                payload: Any = {"error": str(exc)}
                status = HTTPStatus.BAD_REQUEST
            else:
                payload, status = result.to_json([q])[0], HTTPStatus.OK
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

    server = ThreadingHTTPServer((host, port), Handler)
    return server


def _allowed_host(header: str, address: tuple) -> bool:
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
