"""The browser's HTTP API, with the server in-process on a free port: pages, filters, image bytes,
thumbnails, the 404s and attempts to read files by path."""
import dataclasses
import http.client
import json
import re

import pytest

from detkit.browser import make_server, serve_in_thread

from browser_testdata import COLOURS, mean_colour


def request(server, path, method="GET", headers=None):
    """(status, headers, body) for a raw request path: http.client sends it as given, unnormalised."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def get_json(server, path, status=200):
    code, headers, body = request(server, path)
    assert code == status, body
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


def test_summary_and_page(toy_server):
    s = get_json(toy_server, "/api/summary")
    assert s["dataset"] == "browser_toy" and s["num_images"] == 5 and s["classes"] == ["cat", "dog", "bird"]
    code, headers, body = request(toy_server, "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/static/app.js"></script>' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for asset in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
        assert request(toy_server, asset)[0] == 200


def test_the_page_loads_nothing_from_the_internet(toy_server):
    for path in ("/", "/static/app.js", "/static/style.css", "/static/favicon.svg"):
        body = request(toy_server, path)[2].decode()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"'`)]*", body))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path, urls)  # the SVG namespace is a name, not a load


def test_paging_and_filters(toy_server):
    page = get_json(toy_server, "/api/images?page=2&per_page=2&score=0.25")
    assert [im["index"] for im in page["images"]] == [2, 3] and (page["total"], page["pages"]) == (5, 3)
    errors = get_json(toy_server, "/api/images?errors_only=1&sort=fp&score=0.25")
    assert [im["index"] for im in errors["images"]] == [0, 2, 1, 4]
    dogs = get_json(toy_server, "/api/images?classes=1&score=0.45")
    assert [im["index"] for im in dogs["images"]] == [0, 2, 3]
    first = dogs["images"][0]
    assert [(b["class"], b["score"], b["status"]) for b in first["pred"]] == [(1, 0.7, "tp")]
    assert [(b["class"], b["state"]) for b in first["gt"]] == [(1, "matched")]
    # no score given: the index's default threshold (0.25)
    assert get_json(toy_server, "/api/images")["images"][0]["counts"]["pred"] == 6


def test_one_image(toy_server):
    d = get_json(toy_server, "/api/images/0?score=0.75")
    assert d["counts"] == {"gt": 2, "pred": 2, "tp": 1, "fp": 1, "missed": 1}
    assert [(p["id"], p["category"], p["iou"]) for p in d["pred"]] == [(0, "", 1.0), (1, "dupe", 0.95)]
    assert d["file"] == "img0.png"  # the name only: the folder is never sent
    assert get_json(toy_server, "/api/images/0?classes=2&score=0.25")["pred"][0]["category"] == "cls"


@pytest.mark.parametrize("i", range(5))
def test_images_and_thumbnails_by_index(toy_server, i):
    code, headers, body = request(toy_server, f"/img/{i}")
    assert code == 200 and headers["Content-Type"] == "image/jpeg"
    size, colour = mean_colour(body)
    assert size == ((100, 80) if i == 0 else (64, 64))
    assert colour == pytest.approx(COLOURS[i], abs=4)
    code, headers, body = request(toy_server, f"/thumb/{i}")
    size, colour = mean_colour(body)
    assert code == 200 and size == ((32, 26) if i == 0 else (32, 32))  # longest side 32, aspect kept
    assert colour == pytest.approx(COLOURS[i], abs=4)


def test_thumbnails_are_cached(toy_server):
    cache = toy_server.thumbnails
    first = request(toy_server, "/thumb/3")[2]
    hits = cache.hits
    assert request(toy_server, "/thumb/3")[2] == first
    assert cache.hits == hits + 1


@pytest.mark.parametrize("path", ["/api/nothing", "/api/images/5", "/api/images/-1", "/api/images/x", "/api",
                                  "/api/images/", "/api/images/1/boxes", "/api/summary/1"])
def test_unknown_api_paths_and_indices_are_json_404(toy_server, path):
    doc = get_json(toy_server, path, status=404)
    assert doc["status"] == 404 and doc["error"]
    assert "Traceback" not in doc["error"]


@pytest.mark.parametrize("path", ["/img/5", "/thumb/5", "/img/999999999", "/thumb/1234567890123", "/img/",
                                  "/nothing", "/favicon.ico", "/static/other.js"])
def test_unknown_paths_and_indices_are_404(toy_server, path):
    code, headers, body = request(toy_server, path)
    assert code == 404 and headers["Content-Type"].startswith("text/plain") and b"Traceback" not in body


@pytest.mark.parametrize("template", [
    "/img/../../../../../../etc/passwd", "/thumb/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/img/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/img/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/__init__.py", "/api/images/0/../../../etc/passwd", "/api/images/%2e%2e",
    "/etc/passwd", "//etc/passwd", "/img//etc/passwd", "/img/0/../../{image}", "{image}", "/img/{image}",
    "/thumb/%2F{image}", "/img/1%00",
])
def test_files_cannot_be_reached_by_path(toy_server, toy_index, template):
    path = template.format(image=toy_index.file_names[0].lstrip("/"))
    code, _, body = request(toy_server, path)
    assert code == 404, path
    assert b"root:" not in body and b"PNG" not in body and b"JFIF" not in body


def test_bad_parameters_are_400_naming_them(toy_server):
    for query, name in (("score=2", "score"), ("sort=name", "sort"), ("classes=9", "classes"), ("page=x", "page")):
        doc = get_json(toy_server, f"/api/images?{query}", status=400)
        assert doc["error"].startswith(f"{name}=")
    assert get_json(toy_server, "/api/images/0?score=-1", status=400)["error"].startswith("score=")


def test_no_write_endpoints(toy_server):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        code, headers, body = request(toy_server, "/api/images", method)
        assert code == 405 and headers["Allow"] == "GET, HEAD" and json.loads(body)["status"] == 405


def test_head_sends_headers_only(toy_server):
    code, headers, body = request(toy_server, "/api/summary", "HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_an_unreadable_image_is_a_500_naming_it(toy_index, tmp_path):
    missing = str(tmp_path / "gone.png")
    broken = dataclasses.replace(toy_index, file_names=[missing] + toy_index.file_names[1:])
    server = make_server(broken, "127.0.0.1", 0)
    thread = serve_in_thread(server)
    try:
        for path in ("/img/0", "/thumb/0"):
            code, _, body = request(server, path)
            assert code == 500 and missing.encode() in body and b"Traceback" not in body
        assert request(server, "/img/1")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("host, status", [("evil.example:8000", 403), ("127.0.0.1.evil.example", 403), ("", 403),
                                          ("localhost:8000", 200), ("LOCALHOST", 200), ("[::1]:8000", 200)])
def test_a_loopback_server_answers_only_requests_addressed_to_it(toy_server, host, status):
    """DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1 must not read the dataset."""
    code, _, body = request(toy_server, "/api/summary", headers={"Host": host})
    assert code == status
    if status == 403:
        assert "is not this server's" in json.loads(body)["error"]
