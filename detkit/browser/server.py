"""The results browser's HTTP server (standard library): the page, a read-only JSON API and image bytes.

Routes (GET and HEAD only; nothing writes):

- ``/``: the page; ``/static/app.js`` and ``/static/style.css``: its script and style.
- ``/api/summary``: the dataset and AP summary.
- ``/api/images?page=&per_page=&classes=&score=&errors_only=&sort=``: one page of images with their counts.
- ``/api/images/<index>?score=&classes=``: one image's boxes and their matching.
- ``/img/<index>``: the image as JPEG; ``/thumb/<index>``: its thumbnail (made on demand, cached).

Images are named by their index in the dataset only, never by a path, so a request cannot reach
any other file. On a loopback address, a request addressed to another host name (DNS rebinding)
is a 403. An unknown path or index is a 404 (a JSON error under ``/api``); a bad query
parameter a 400 naming it; an unexpected failure a 500 with a one-line message (the traceback
goes to the log, never to the client).
"""
import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from detkit.data import BadImageError

from .images import ThumbnailCache, encode_image
from .index import BrowserIndex
from .queries import QueryError, image_detail, list_images, parse_classes, parse_image_query, parse_score, summary

__all__ = ["BrowserServer", "make_server", "serve_in_thread"]

logger = logging.getLogger(__name__)

_ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
           "/index.html": ("index.html", "text/html; charset=utf-8"),
           "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/static/style.css": ("style.css", "text/css; charset=utf-8"),
           "/static/favicon.svg": ("favicon.svg", "image/svg+xml")}
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_INDEX_ROUTE = re.compile(r"^/(img|thumb|api/images)/([0-9]{1,9})$")
# The page may load only its own files and images: nothing from the internet.
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff",
                     "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; "
                                                "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
                     "Referrer-Policy": "no-referrer"}


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def _load_assets() -> Dict[str, Tuple[bytes, str]]:
    folder = resources.files(__package__) / "static"
    return {route: ((folder / name).read_bytes(), ctype) for route, (name, ctype) in _ASSETS.items()}


class BrowserServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` serving one ``BrowserIndex``.

    Args:
        address: (host, port); port 0 picks a free one (see ``server_address``).
        index: what to serve.
        thumb_size: longest side of thumbnails, px.
        thumb_cache_bytes: memory budget of the thumbnail cache.
    """

    daemon_threads = True
    # Never wait for request threads on close: a keep-alive connection idles in its handler until
    # the browser drops it, and Ctrl-C must stop the server at once.
    block_on_close = False

    def __init__(self, address: Tuple[str, int], index: BrowserIndex, thumb_size: int = 256,
                 thumb_cache_bytes: int = 64 << 20):
        self.index = index
        self.assets = _load_assets()
        self.thumb_size = thumb_size
        self.thumbnails = ThumbnailCache(self._make_thumbnail, thumb_cache_bytes)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    def _make_thumbnail(self, i: int) -> bytes:
        return encode_image(self.index.file_names[i], self.index.image_ids[i], self.thumb_size, quality=80)


class _Handler(BaseHTTPRequestHandler):
    server: BrowserServer
    server_version = "detkit-browser"
    protocol_version = "HTTP/1.1"  # keep-alive: the page fetches dozens of thumbnails
    disable_nagle_algorithm = True  # headers and body leave at once (else a delayed ACK costs ~40 ms a response)

    def do_GET(self):
        self._respond(head=False)

    def do_HEAD(self):
        self._respond(head=True)

    def _refuse(self):
        self.close_connection = True  # the request's body is left unread: it must not pass for the next request
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, *_json_error(HTTPStatus.METHOD_NOT_ALLOWED,
                                                               "the browser is read-only: use GET"),
                   head=False, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        logger.debug("%s %s", self.address_string(), format % args)

    def _respond(self, head: bool) -> None:
        path = urlsplit(self.path).path
        is_api = path == "/api" or path.startswith("/api/")
        try:
            self._check_host()
            body, ctype, cache = self._route(path, parse_qs(urlsplit(self.path).query, keep_blank_values=True))
            self._send(HTTPStatus.OK, body, ctype, head, {"Cache-Control": cache})
        except _HttpError as e:
            self._error(e.status, str(e), is_api, head)
        except BadImageError as e:
            logger.warning("Could not serve %s: %s", path, e)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(e), is_api, head)
        except Exception as e:  # a bug must not show a traceback to the client; the log has it
            logger.exception("Error serving %s", self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(e).__name__}); see the server log",
                        is_api, head)

    def _check_host(self) -> None:
        """On a loopback address, answer only requests addressed to it: a web page whose name was made to
        point at 127.0.0.1 (DNS rebinding) sends its own name in ``Host`` and is refused."""
        if self.server.server_address[0] not in _LOOPBACK:
            return
        host = (self.headers.get("Host") or "").strip().lower()
        name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0] if ":" in host else host
        if name not in _LOOPBACK:
            raise _HttpError(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this server's: open it as "
                                                   f"{self.server.url}")

    def _route(self, path: str, params) -> Tuple[bytes, str, str]:
        server, index = self.server, self.server.index
        if path in server.assets:
            body, ctype = server.assets[path]
            return body, ctype, "no-cache"
        try:
            if path == "/api/summary":
                return _json(summary(index))
            if path == "/api/images":
                return _json(list_images(index, parse_image_query(params, index)))
            match = _INDEX_ROUTE.match(path)
            if match is None:
                what = "API path" if path.startswith("/api") else "path"
                raise _HttpError(HTTPStatus.NOT_FOUND, f"unknown {what} {path!r}")
            kind, i = match.group(1), int(match.group(2))
            if i >= index.num_images:
                raise _HttpError(HTTPStatus.NOT_FOUND, f"no image {i}: the dataset has {index.num_images} "
                                                       f"(indices 0..{index.num_images - 1})")
            if kind == "api/images":
                classes = parse_classes(_last(params, "classes"), len(index.class_names))
                return _json(image_detail(index, i, parse_score(params, index.default_score), classes))
            if kind == "thumb":
                return server.thumbnails.get(i)[0], "image/jpeg", "max-age=3600"
            return encode_image(index.file_names[i], index.image_ids[i]), "image/jpeg", "max-age=3600"
        except QueryError as e:
            raise _HttpError(HTTPStatus.BAD_REQUEST, str(e)) from None

    def _error(self, status: HTTPStatus, message: str, is_api: bool, head: bool) -> None:
        if is_api:
            self._send(status, *_json_error(status, message), head)
        else:
            self._send(status, f"{status.value} {status.phrase}: {message}\n".encode(), "text/plain; charset=utf-8",
                       head)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, head: bool,
              extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**_SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _last(params, key: str) -> Optional[str]:
    values = params.get(key)
    return values[-1] if values else None


def _json(doc) -> Tuple[bytes, str, str]:
    return json.dumps(doc, separators=(",", ":")).encode(), "application/json", "no-store"


def _json_error(status: HTTPStatus, message: str) -> Tuple[bytes, str]:
    return json.dumps({"error": message, "status": status.value}).encode(), "application/json"


def make_server(index: BrowserIndex, host: str = "127.0.0.1", port: int = 0, thumb_size: int = 256) -> BrowserServer:
    """A server bound to ``host:port`` (0: a free port), not yet serving; call ``serve_forever()``."""
    return BrowserServer((host, port), index, thumb_size)


def serve_in_thread(server: BrowserServer) -> threading.Thread:
    """Serve in a daemon thread (tests, notebooks); stop with ``server.shutdown(); server.server_close()``."""
    thread = threading.Thread(target=server.serve_forever, name="detkit-browser", daemon=True)
    thread.start()
    return thread
