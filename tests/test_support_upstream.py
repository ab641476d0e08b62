from __future__ import annotations

import hashlib
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import httpx
import pytest

from tests.support.upstream import (
    CHUNK,
    HTML_V1_TYPE,
    IN_MEMORY_LIMIT,
    JSON_TYPE,
    Unsatisfiable,
    Upstream,
    UpstreamFile,
    parse_range,
)
from tests.support.wheels import WheelSpec, build_wheel

JSON_ACCEPT = {"Accept": JSON_TYPE}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.anchors: list[dict[str, str | None]] = []
        self.texts: list[str] = []
        self._in_a = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta":
            self.meta[found["name"] or ""] = found["content"] or ""
        elif tag == "a":
            self.anchors.append(found)
            self._in_a = True

    def handle_endtag(self, tag: str) -> None:
        self._in_a = self._in_a and tag != "a"

    def handle_data(self, data: str) -> None:
        if self._in_a:
            self.texts.append(data)


def parse_html(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    spec = WheelSpec("Demo_Pkg", "1.0", requires_python=">=3.8")
    return build_wheel(spec, tmp_path)


@pytest.fixture
def populated(upstream: Upstream, wheel: Path) -> Upstream:
    upstream.add("Demo_Pkg", wheel, yanked="broken <build>", x_unknown={"a": 1})
    upstream.add(
        "demo-pkg",
        UpstreamFile("demo_pkg-0.9.tar.gz", b"sdist bytes " * 1000),
        provenance="https://example.invalid/prov",
    )
    return upstream


def test_json_page_lists_files_with_every_key(
    populated: Upstream, client: httpx.Client, wheel: Path
) -> None:
    page_url = populated.url + "demo-pkg/"
    r = client.get(page_url, headers=JSON_ACCEPT)
    assert r.status_code == 200
    assert r.headers["content-type"] == JSON_TYPE
    assert r.headers["vary"] == "Accept"
    page = r.json()
    assert page["meta"] == {"api-version": "1.1"}
    assert page["name"] == "demo-pkg"
    assert page["versions"] == ["0.9", "1.0"]
    whl, sdist = page["files"]
    assert whl["filename"] == wheel.name
    assert whl["requires-python"] == ">=3.8"
    assert whl["yanked"] == "broken <build>"
    assert whl["x-unknown"] == {"a": 1}
    assert whl["size"] == wheel.stat().st_size
    assert whl["upload-time"].endswith("Z")
    assert sdist["provenance"] == "https://example.invalid/prov"
    assert "core-metadata" not in sdist
    # One absolute and one relative URL: both must resolve to the file bytes.
    assert urlsplit(whl["url"]).scheme == "http"
    assert urlsplit(sdist["url"]).scheme == ""
    for entry in page["files"]:
        body = client.get(urljoin(page_url, entry["url"])).content
        assert hashlib.sha256(body).hexdigest() == entry["hashes"]["sha256"]
        assert len(body) == entry["size"]


def test_core_metadata_is_the_wheels_metadata(
    populated: Upstream, client: httpx.Client, wheel: Path
) -> None:
    page_url = populated.url + "demo-pkg/"
    whl = client.get(page_url, headers=JSON_ACCEPT).json()["files"][0]
    with zipfile.ZipFile(wheel) as zf:
        expected = zf.read("demo_pkg-1.0.dist-info/METADATA")
    served = client.get(urljoin(page_url, whl["url"]) + ".metadata")
    assert served.status_code == 200
    assert served.content == expected
    digest = hashlib.sha256(expected).hexdigest()
    assert whl["core-metadata"] == {"sha256": digest}
    assert whl["dist-info-metadata"] == {"sha256": digest}


def test_html_page_carries_hashes_and_data_attributes(
    populated: Upstream, client: httpx.Client, wheel: Path
) -> None:
    page_url = populated.url + "demo-pkg/"
    r = client.get(page_url, headers={"Accept": "text/html"})
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert 'data-requires-python="&gt;=3.8"' in r.text
    page = parse_html(r.text)
    assert page.meta["pypi:repository-version"] == "1.1"
    assert page.texts == [wheel.name, "demo_pkg-0.9.tar.gz"]
    whl, sdist = page.anchors
    assert whl["data-requires-python"] == ">=3.8"
    assert whl["data-yanked"] == "broken <build>"
    assert whl["data-core-metadata"] == whl["data-dist-info-metadata"]
    meta_digest = hashlib.sha256(populated.files("demo-pkg")[0].metadata or b"").hexdigest()
    assert whl["data-core-metadata"] == f"sha256={meta_digest}"
    assert sdist["data-provenance"] == "https://example.invalid/prov"
    assert "data-yanked" not in sdist and "data-core-metadata" not in sdist
    for anchor in page.anchors:
        url, _, fragment = (anchor["href"] or "").partition("#")
        body = client.get(urljoin(page_url, url)).content
        assert fragment == f"sha256={hashlib.sha256(body).hexdigest()}"


def test_yanked_true_renders_empty_attribute(upstream: Upstream, client: httpx.Client) -> None:
    upstream.add("p", UpstreamFile("p-1.0.tar.gz", b"x"), yanked=True)
    page = parse_html(client.get(upstream.url + "p/").text)
    assert page.anchors[0]["data-yanked"] == ""
    assert client.get(upstream.url + "p/", headers=JSON_ACCEPT).json()["files"][0]["yanked"]


def test_root_page_in_both_formats(populated: Upstream, client: httpx.Client) -> None:
    populated.add_project("Other.Project")
    as_json = client.get(populated.url, headers=JSON_ACCEPT).json()
    assert as_json["meta"]["api-version"] == "1.1"
    assert as_json["projects"] == [{"name": "Demo_Pkg"}, {"name": "Other.Project"}]
    page = parse_html(client.get(populated.url).text)
    assert [a["href"] for a in page.anchors] == ["demo-pkg/", "other-project/"]
    assert client.get(populated.url + "other-project/", headers=JSON_ACCEPT).json()["files"] == []


@pytest.mark.parametrize(
    ("accept", "query", "expected"),
    [
        (JSON_TYPE, "", JSON_TYPE),
        ("application/vnd.pypi.simple.latest+json", "", JSON_TYPE),
        (f"{JSON_TYPE}, text/html;q=0.1", "", JSON_TYPE),
        ("text/html", "", "text/html; charset=utf-8"),
        ("*/*", "", "text/html; charset=utf-8"),
        (HTML_V1_TYPE, "", HTML_V1_TYPE),
        ("text/html", f"?format={quote(JSON_TYPE)}", JSON_TYPE),
        ("text/html", f"?format={JSON_TYPE}", JSON_TYPE),
    ],
)
def test_negotiation(
    populated: Upstream, client: httpx.Client, accept: str, query: str, expected: str
) -> None:
    r = client.get(populated.url + "demo-pkg/" + query, headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"] == expected


def test_single_format_servers_ignore_accept(populated: Upstream, client: httpx.Client) -> None:
    populated.formats = {"html"}
    r = client.get(populated.url + "demo-pkg/", headers=JSON_ACCEPT)
    assert r.headers["content-type"].startswith("text/html")
    assert parse_html(r.text).anchors
    populated.formats = {"json"}
    r = client.get(populated.url + "demo-pkg/", headers={"Accept": "text/html"})
    assert r.headers["content-type"] == JSON_TYPE


def test_unknown_project_is_404_and_names_redirect(
    populated: Upstream, client: httpx.Client
) -> None:
    assert client.get(populated.url + "nope/").status_code == 404
    for raw in ("Demo_Pkg/", "DEMO.pkg/", "demo-pkg"):
        r = client.get(populated.url + raw + "?x=1")
        assert r.status_code == 301
        assert r.headers["location"] == populated.url + "demo-pkg/?x=1"
    followed = client.get(populated.url + "Demo_Pkg/", follow_redirects=True)
    assert followed.status_code == 200


def test_etag_revalidation(populated: Upstream, client: httpx.Client, tmp_path: Path) -> None:
    page_url = populated.url + "demo-pkg/"
    first = client.get(page_url, headers=JSON_ACCEPT)
    etag = first.headers["etag"]
    again = client.get(page_url, headers={**JSON_ACCEPT, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    # The HTML rendering is a different representation, so the JSON tag must not match it.
    assert client.get(page_url, headers={"If-None-Match": etag}).status_code == 200
    populated.add("demo-pkg", build_wheel(WheelSpec("demo-pkg", "2.0"), tmp_path))
    changed = client.get(page_url, headers={**JSON_ACCEPT, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["versions"] == ["0.9", "1.0", "2.0"]


def test_last_modified_revalidation(populated: Upstream, client: httpx.Client) -> None:
    page_url = populated.url + "demo-pkg/"
    first = client.get(page_url)
    modified = first.headers["last-modified"]
    assert client.get(page_url, headers={"If-Modified-Since": modified}).status_code == 304
    populated.add("demo-pkg", UpstreamFile("demo_pkg-3.0.tar.gz", b"new"))
    changed = client.get(page_url, headers={"If-Modified-Since": modified})
    assert changed.status_code == 200
    later = parsedate_to_datetime(changed.headers["last-modified"])
    assert later > parsedate_to_datetime(modified)


def test_etags_off_means_no_conditional_answers(populated: Upstream, client: httpx.Client) -> None:
    page_url = populated.url + "demo-pkg/"
    etag = client.get(page_url).headers["etag"]
    populated.etags = False
    r = client.get(page_url, headers={"If-None-Match": etag})
    assert r.status_code == 200
    assert "etag" not in r.headers and "last-modified" not in r.headers


def test_range_requests(upstream: Upstream, client: httpx.Client) -> None:
    content = bytes(range(256)) * 1000
    upstream.add("r", UpstreamFile("r-1.0.tar.gz", content))
    url = upstream.file_url("r-1.0.tar.gz")
    full = client.get(url)
    assert full.headers["accept-ranges"] == "bytes"
    assert full.content == content
    cases = {
        "bytes=10-19": (10, 20),
        "bytes=255990-": (255990, 256000),
        "bytes=-22": (256000 - 22, 256000),
        "bytes=255995-999999": (255995, 256000),
    }
    for header, (start, end) in cases.items():
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == content[start:end]
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/256000"
        assert int(r.headers["content-length"]) == end - start
    unsatisfiable = client.get(url, headers={"Range": "bytes=256000-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */256000"
    assert client.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 200
    upstream.ranges = False
    ignored = client.get(url, headers={"Range": "bytes=10-19"})
    assert ignored.status_code == 200
    assert ignored.content == content
    assert "accept-ranges" not in ignored.headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 1)),
        ("bytes=5-", (5, 100)),
        ("bytes=-200", (0, 100)),
        ("bytes=9-3", None),
        ("items=0-3", None),
        ("bytes=a-b", None),
        ("bytes=-", None),
        ("bytes=100-", "416"),
        ("bytes=-0", "416"),
    ],
)
def test_parse_range(header: str, expected: tuple[int, int] | str | None) -> None:
    if expected == "416":
        with pytest.raises(Unsatisfiable):
            parse_range(header, 100)
    else:
        assert parse_range(header, 100) == expected


def test_head_gives_size_without_body(upstream: Upstream, client: httpx.Client) -> None:
    upstream.add("h", UpstreamFile("h-1.0.tar.gz", b"z" * 5000))
    r = client.head(upstream.file_url("h-1.0.tar.gz"))
    assert r.status_code == 200
    assert r.headers["content-length"] == "5000"
    assert r.content == b""


def test_truncated_body_is_detected(upstream: Upstream, client: httpx.Client) -> None:
    content = b"t" * (3 * CHUNK + 17)
    upstream.add("t", UpstreamFile("t-1.0.tar.gz", content))
    upstream.truncate.add("t-1.0.tar.gz")
    url = upstream.file_url("t-1.0.tar.gz")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url)
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", url) as r:
        assert r.headers["content-length"] == str(len(content))
        for chunk in r.iter_bytes():
            received += chunk
    assert len(received) == len(content) // 2
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url, headers={"Range": "bytes=100-"})
    # The server survives a dropped connection.
    upstream.truncate.clear()
    assert client.get(url).content == content


def test_corrupt_file_does_not_match_advertised_hash(
    upstream: Upstream, client: httpx.Client
) -> None:
    content = b"c" * 200_000
    upstream.add("c", UpstreamFile("c-1.0.tar.gz", content))
    upstream.corrupt.add("c-1.0.tar.gz")
    entry = client.get(upstream.url + "c/", headers=JSON_ACCEPT).json()["files"][0]
    assert entry["hashes"]["sha256"] == hashlib.sha256(content).hexdigest()
    body = client.get(upstream.file_url("c-1.0.tar.gz")).content
    assert len(body) == len(content) == entry["size"]
    assert hashlib.sha256(body).hexdigest() != entry["hashes"]["sha256"]
    assert sum(a != b for a, b in zip(body, content, strict=True)) == 1


def test_metadata_and_hash_knobs(populated: Upstream, client: httpx.Client, wheel: Path) -> None:
    page_url = populated.url + "demo-pkg/"
    populated.hash_names = ("sha256", "md5", "blake2b_256")
    whl = client.get(page_url, headers=JSON_ACCEPT).json()["files"][0]
    data = wheel.read_bytes()
    assert whl["hashes"] == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "blake2b_256": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }
    populated.hash_names = ()
    whl = client.get(page_url, headers=JSON_ACCEPT).json()["files"][0]
    assert whl["hashes"] == {}
    assert whl["core-metadata"] is True
    anchor = parse_html(client.get(page_url).text).anchors[0]
    assert "#" not in (anchor["href"] or "")
    assert anchor["data-core-metadata"] == "true"
    populated.serve_metadata = False
    whl = client.get(page_url, headers=JSON_ACCEPT).json()["files"][0]
    assert "core-metadata" not in whl and "dist-info-metadata" not in whl
    assert client.get(populated.file_url(wheel.name) + ".metadata").status_code == 404


def test_project_meta_in_both_formats(populated: Upstream, client: httpx.Client) -> None:
    populated.project_meta["demo-pkg"] = {
        "project-status": {"status": "quarantined", "reason": "malware"},
        "tracks": ["https://example.invalid/simple/demo-pkg/"],
    }
    page = client.get(populated.url + "demo-pkg/", headers=JSON_ACCEPT).json()
    assert page["project-status"] == {"status": "quarantined", "reason": "malware"}
    meta = parse_html(client.get(populated.url + "demo-pkg/").text).meta
    assert meta["pypi:project-status"] == "quarantined"
    assert meta["pypi:project-status-reason"] == "malware"
    assert meta["pypi:tracks"] == "https://example.invalid/simple/demo-pkg/"


def test_down_hang_and_forced_errors(populated: Upstream, client: httpx.Client) -> None:
    populated.down = True
    assert client.get(populated.url + "demo-pkg/").status_code == 503
    assert client.get(populated.file_url("demo_pkg-0.9.tar.gz")).status_code == 503
    assert [r.status for r in populated.requests[-2:]] == [503, 503]
    populated.down = False
    populated.errors["/simple/demo-pkg/"] = 500
    assert client.get(populated.url + "demo-pkg/").status_code == 500
    populated.errors.clear()
    populated.hang = 1.0
    with pytest.raises(httpx.ReadTimeout):
        client.get(populated.url + "demo-pkg/", timeout=0.2)
    populated.hang = 0.0
    assert client.get(populated.url + "demo-pkg/").status_code == 200


def test_request_recording_and_counting(populated: Upstream, client: httpx.Client) -> None:
    populated.reset_requests()
    for _ in range(3):
        client.get(populated.url + "demo-pkg/", headers={"X-Probe": "yes"})
    client.get(populated.url + "missing/")
    client.get(populated.file_url("demo_pkg-0.9.tar.gz"), headers={"Range": "bytes=0-3"})
    assert populated.count("GET", "/demo-pkg/") == 3
    assert populated.count("get", "/demo-pkg/") == 3
    assert populated.count("HEAD", "/demo-pkg/") == 0
    assert populated.count("GET", ".tar.gz") == 1
    first, *_, missing, ranged = populated.requests
    assert first.headers["x-probe"] == "yes"
    assert first.status == 200 and missing.status == 404 and ranged.status == 206
    assert ranged.headers["range"] == "bytes=0-3"
    assert ranged.path == "/files/demo_pkg-0.9.tar.gz"


def test_streaming_sends_chunks_before_the_end(upstream: Upstream, client: httpx.Client) -> None:
    upstream.add("s", UpstreamFile("s-1.0.tar.gz", b"s" * (6 * CHUNK)))
    upstream.slow_files["s-1.0.tar.gz"] = 0.15
    started = time.monotonic()
    arrivals: list[float] = []
    with client.stream("GET", upstream.file_url("s-1.0.tar.gz")) as r:
        for _ in r.iter_raw():
            arrivals.append(time.monotonic() - started)
    total = arrivals[-1]
    assert total >= 0.8
    assert arrivals[0] < total / 2


def test_concurrent_slow_downloads_overlap(upstream: Upstream) -> None:
    upstream.add("s", UpstreamFile("s-1.0.tar.gz", b"s" * (4 * CHUNK)))
    upstream.slow_files["s-1.0.tar.gz"] = 0.25
    url = upstream.file_url("s-1.0.tar.gz")
    sizes: list[int] = []

    def fetch() -> None:
        with httpx.Client(timeout=10) as c:
            sizes.append(len(c.get(url).content))

    started = time.monotonic()
    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == [4 * CHUNK] * 4
    # One download takes at least 1 s; four one after the other would take 4 s.
    assert 1.0 <= time.monotonic() - started < 3.0


def test_large_file_streams_from_disk(
    upstream: Upstream, client: httpx.Client, tmp_path: Path
) -> None:
    big = tmp_path / "big_pkg-1.0.tar.gz"
    size = IN_MEMORY_LIMIT + 3 * CHUNK + 5
    with big.open("wb") as fh:
        fh.truncate(size)  # sparse: costs no disk
        fh.seek(size - 4)
        fh.write(b"TAIL")
    item = upstream.add("big-pkg", big)
    assert item.path == big and item.content == b""
    entry = client.get(upstream.url + "big-pkg/", headers=JSON_ACCEPT).json()["files"][0]
    assert entry["size"] == size
    tail = client.get(upstream.file_url(big.name), headers={"Range": "bytes=-4"})
    assert tail.content == b"TAIL"
    digest = hashlib.sha256()
    with client.stream("GET", upstream.file_url(big.name)) as r:
        for chunk in r.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == entry["hashes"]["sha256"]


def test_stop_frees_the_port() -> None:
    up = Upstream()
    up.start()
    port = urlsplit(up.url).port
    assert port is not None
    assert httpx.get(up.url).status_code == 200
    up.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    with pytest.raises(RuntimeError):
        _ = up.url


def test_basic_auth_and_redirects(upstream: Upstream, client: httpx.Client, wheel: Path) -> None:
    upstream.add("demo-pkg", wheel)
    upstream.basic_auth = ("reader", "p@ss word")
    denied = client.get(upstream.url + "demo-pkg/")
    assert denied.status_code == 401 and "Basic" in denied.headers["www-authenticate"]
    assert client.get(upstream.credentialed_url + "demo-pkg/").status_code == 200
    assert client.get(upstream.url + "demo-pkg/", auth=("reader", "p@ss word")).status_code == 200
    upstream.basic_auth = None
    upstream.redirects["/files/old.whl"] = upstream.file_url(wheel.name)
    moved = client.get(upstream.origin + "/files/old.whl")
    assert moved.status_code == 302 and moved.headers["location"] == upstream.file_url(wheel.name)
    assert [r.status for r in upstream.requests] == [401, 200, 200, 302]
