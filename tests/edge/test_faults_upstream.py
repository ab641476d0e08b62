"""The fault matrix for pages, against a local upstream that misbehaves on command.

Rows of issue 10 covered here: 1 (500/503: retried, then stale or 502), 2 (hangs), 3 for
pages (a dripping body meets the total deadline), 16 (hostile request headers) and 17
(hostile upstream text). Each runs `hostfit serve` as a process and ends with the same
check: nothing corrupt cached, no temp file left, and no traceback in the log.
Already covered in tests/edge/test_serving.py: upstream 500 and 503 with a stale page or a
502 naming the upstream and its status (test_upstream_down_serves_last_good_page,
test_broken_upstream_page_is_502), and the per-read timeout
(test_upstream_timeout_is_504_naming_upstream).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from tests.edge.fault_checks import Faults, assert_clean, serve, state_keys
from tests.support.upstream import Upstream, UpstreamFile

JSON = {"Accept": JSON_V1}


class FlakyFront:
    """A TCP relay in front of an upstream that resets its next ``resets`` connections."""

    def __init__(self, target_port: int, resets: int = 0) -> None:
        self.target_port = target_port
        self.resets = resets
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            if self.resets > 0:
                self.resets -= 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # RST, not FIN
                continue
            target = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, target), (target, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.server.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def test_transient_statuses_are_retried_with_backoff(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path
) -> None:
    upstream, faults = faulty
    for name in ("flaky", "failing", "broken", "busy"):
        upstream.add(name, UpstreamFile(f"{name}-1.0.tar.gz", content=name.encode()))
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        faults.statuses["/simple/flaky/"] = [503, 502]
        started = time.monotonic()
        page = httpx.get(proxy.url + "simple/flaky/", headers=JSON, timeout=30)
        assert page.status_code == 200, page.text
        assert time.monotonic() - started < 3  # two jittered waits of at most 0.25 s and 0.5 s
        assert faults.count("/simple/flaky/") == 3

        faults.statuses["/simple/failing/"] = [504] * 10
        failing = httpx.get(proxy.url + "simple/failing/", timeout=30)
        assert failing.status_code == 502
        assert upstream.url in failing.text and "HTTP 504" in failing.text
        assert faults.count("/simple/failing/") == 3  # the attempts are bounded

        faults.statuses["/simple/broken/"] = [500]
        broken = httpx.get(proxy.url + "simple/broken/", timeout=30)
        assert broken.status_code == 502 and "HTTP 500" in broken.text
        assert faults.count("/simple/broken/") == 1  # a 500 is an answer, not a hiccup

        faults.statuses["/simple/busy/"] = [503] * 10
        faults.retry_after = "120"  # longer than any request should wait: no retry
        busy = httpx.get(proxy.url + "simple/busy/", timeout=30)
        assert busy.status_code == 502 and "HTTP 503" in busy.text
        assert faults.count("/simple/busy/") == 1
        assert not any(
            k.endswith((":failing", ":broken", ":busy")) for k in state_keys(cache, "page:")
        )

        # Metadata GETs go through the same transport.
        faults.retry_after = None
        upstream.add("demo-pkg", demo_wheel)
        faults.statuses[f"/files/{demo_wheel.name}.metadata"] = [503]
        metadata = httpx.get(proxy.url + f"files/demo-pkg/{demo_wheel.name}.metadata", timeout=30)
        assert metadata.status_code == 200 and b"Name: Demo_Pkg" in metadata.content
        assert faults.count(f"/files/{demo_wheel.name}.metadata") == 2
    assert_clean(proxy, cache)
    assert "retrying in" in proxy.output()


def test_resets_before_and_during_an_answer_are_retried(
    faulty: tuple[Upstream, Faults], tmp_path: Path
) -> None:
    upstream, faults = faulty
    upstream.url_style = "relative"
    upstream.add("demo", UpstreamFile("demo-1.0.tar.gz", content=b"demo"))
    port = int(upstream.origin.rsplit(":", 1)[1])
    front = FlakyFront(port)
    cache = tmp_path / "cache"
    try:
        with serve(f"http://127.0.0.1:{front.port}/simple/", cache) as proxy:
            front.resets = 2
            page = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
            assert page.status_code == 200, page.text
            assert front.resets == 0
            assert [f["filename"] for f in page.json()["files"]] == ["demo-1.0.tar.gz"]

            faults.cut["/simple/demo/"] = 1  # half the page, then the connection drops
            again = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
            assert again.status_code == 200, again.text
            assert again.json() == page.json()
            assert "warning" not in again.headers
            assert faults.cut["/simple/demo/"] == 0
    finally:
        front.close()
    assert_clean(proxy, cache)


def test_hanging_upstream_gives_stale_page_or_504_within_deadline(
    faulty: tuple[Upstream, Faults], tmp_path: Path
) -> None:
    upstream, _ = faulty
    upstream.basic_auth = ("reader", "Hidden-pa55")
    upstream.add("demo", UpstreamFile("demo-1.0.tar.gz", content=b"demo"))
    upstream.add("other", UpstreamFile("other-1.0.tar.gz", content=b"other"))
    cache = tmp_path / "cache"
    with serve(upstream.credentialed_url, cache, "--upstream-deadline", "1.5") as proxy:
        good = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
        assert good.status_code == 200
        upstream.hang = 8.0
        started = time.monotonic()
        stale = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
        assert time.monotonic() - started < 3
        assert stale.status_code == 200 and stale.json() == good.json()
        assert "Stale" in stale.headers["warning"] and "1.5s" in stale.headers["warning"]

        started = time.monotonic()
        missing = httpx.get(proxy.url + "simple/other/", timeout=30)
        assert time.monotonic() - started < 3
        assert missing.status_code == 504
        assert "timed out" in missing.text and "upstream_deadline" in missing.text
        assert f"127.0.0.1:{upstream.origin.rsplit(':', 1)[1]}/simple/" in missing.text
        for text in (missing.text, str(missing.headers), str(stale.headers)):
            assert "Hidden-pa55" not in text
        assert not any(k.endswith(":other") for k in state_keys(cache, "page:"))

        upstream.hang = 0.0
        fresh = httpx.get(proxy.url + "simple/other/", headers=JSON, timeout=30)
        assert fresh.status_code == 200 and "warning" not in fresh.headers
    assert_clean(proxy, cache)


def test_dripping_page_meets_the_total_deadline(
    faulty: tuple[Upstream, Faults], tmp_path: Path
) -> None:
    upstream, faults = faulty
    upstream.add("demo", UpstreamFile("demo-1.0.tar.gz", content=b"demo"))
    upstream.add("slow", UpstreamFile("slow-1.0.tar.gz", content=b"slow"))
    cache = tmp_path / "cache"
    with serve(upstream.url, cache, "--upstream-deadline", "2", timeout=30) as proxy:
        faults.drip["/simple/slow/"] = 0.2  # each byte well inside the read timeout
        started = time.monotonic()
        slow = httpx.get(proxy.url + "simple/slow/", timeout=30)
        elapsed = time.monotonic() - started
        assert slow.status_code == 504, slow.text
        assert 1.5 < elapsed < 4
        assert upstream.url in slow.text and "within 2s" in slow.text
        assert not any(k.endswith(":slow") for k in state_keys(cache, "page:"))

        good = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
        faults.drip["/simple/demo/"] = 0.2
        upstream.etags = False  # a full answer every time, so the drip is read
        stale = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
        assert stale.status_code == 200 and stale.json() == good.json()
        assert "within 2s" in stale.headers["warning"]

        del faults.drip["/simple/slow/"], faults.drip["/simple/demo/"]
        fresh = httpx.get(proxy.url + "simple/slow/", headers=JSON, timeout=30)
        assert fresh.status_code == 200
        assert [f["filename"] for f in fresh.json()["files"]] == ["slow-1.0.tar.gz"]
    assert_clean(proxy, cache)


def test_a_page_of_another_type_keeps_the_good_page_served(
    faulty: tuple[Upstream, Faults], tmp_path: Path
) -> None:
    """An image or a maintenance text answered 200 is no page of no files."""
    upstream, _ = faulty
    upstream.add("demo", UpstreamFile("demo-1.0.tar.gz", content=b"demo"))
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        good = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
        assert good.status_code == 200 and len(good.json()["files"]) == 1
        for media, body in [
            ("image/png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
            ("text/plain", b"Down for maintenance"),
            ("application/octet-stream", b"\x00\x01"),
        ]:
            upstream.answers["/simple/demo/"] = (media, body)
            stale = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
            assert stale.status_code == 200 and stale.json() == good.json()
            assert f"the page of demo came as {media}" in stale.headers["warning"]
        # Typed as bytes, but markup: a storage service that types nothing.
        html = b"<!DOCTYPE html><html><body><a href='/f/demo-2.0.tar.gz#sha256=" + b"a" * 64
        upstream.answers["/simple/demo/"] = (
            "application/octet-stream",
            html + b"'>demo-2.0.tar.gz</a>",
        )
        fresh = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
        assert [f["filename"] for f in fresh.json()["files"]] == ["demo-2.0.tar.gz"]
        assert "warning" not in fresh.headers
    assert_clean(proxy, cache)


def test_non_latin1_failure_text_keeps_the_stale_page_served(
    faulty: tuple[Upstream, Faults], tmp_path: Path
) -> None:
    upstream, faults = faulty
    faults.prefix = "/зеркало"
    upstream.url_style = "relative"
    upstream.add("demo", UpstreamFile("demo-1.0.tar.gz", content=b"demo"))
    cache = tmp_path / "cache"
    mirror = f"{upstream.origin}/зеркало/simple/"
    with serve(mirror, cache) as proxy:
        good = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
        assert good.status_code == 200, good.text
        upstream.down = True
        for _ in range(2):
            stale = httpx.get(proxy.url + "simple/demo/", headers=JSON, timeout=30)
            assert stale.status_code == 200, stale.text
            assert stale.json() == good.json()
            warning = stale.headers["warning"]
            assert warning.isascii() and "Stale" in warning and "HTTP 503" in warning
            assert "\\\\u0437" in warning  # the "з" of the URL, escaped
        missing = httpx.get(proxy.url + "simple/never-seen/", timeout=30)
        assert missing.status_code == 502 and "зеркало" in missing.text
    assert_clean(proxy, cache)


def hostile_files(wheel: Path) -> tuple[list[UpstreamFile], list[UpstreamFile]]:
    """(served, left off): files whose names or texts an upstream should never send."""
    served = [
        UpstreamFile.from_path(wheel),
        UpstreamFile('quote"><img src=x onerror=alert(1)>-1.0.tar.gz', content=b"q"),
        UpstreamFile("démo-ünï-1.0.tar.gz", content=b"u"),
        UpstreamFile(
            "yanked-1.0.tar.gz",
            content=b"y",
            extra={"yanked": '</a><script>alert("x")</script>\r\nX-Injected: 1 ж'},
        ),
    ]
    dropped = [
        UpstreamFile("evil/../../etc-1.0.tar.gz", content=b"e"),
        UpstreamFile("nul\x00-1.0.tar.gz", content=b"n"),
        UpstreamFile("crlf\r\nX-Injected: 1-1.0.tar.gz", content=b"c"),
        UpstreamFile("back\\slash-1.0.tar.gz", content=b"b"),
        UpstreamFile("..", content=b"d"),
        UpstreamFile("badhash-1.0.tar.gz", content=b"h", extra={"hashes": {"sha256": "zz"}}),
    ]
    return served, dropped


@pytest.mark.parametrize("formats", [{"json"}, {"html"}])
def test_hostile_upstream_text_is_dropped_or_escaped(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path, formats: set[str]
) -> None:
    upstream, faults = faulty
    upstream.formats = formats
    served, dropped = hostile_files(demo_wheel)
    for f in served + dropped:
        upstream.add("demo-pkg", f)
    # Validators that cannot be sent back as they came (not ASCII).
    faults.headers["/simple/demo-pkg/"] = [
        (b"etag", 'W/"été"'.encode()),
        (b"last-modified", b"\xff\xfe lundi"),
    ]
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        for _ in range(3):  # three fetches of one page revision
            page = httpx.get(proxy.url + "simple/demo-pkg/", headers=JSON, timeout=30)
            assert page.status_code == 200, page.text
            assert "x-injected" not in page.headers
        files = {f["filename"]: f for f in page.json()["files"]}
        assert set(files) == {f.filename for f in served}
        if formats == {"json"}:  # PEP 503 HTML carries the reason as an attribute, stripped
            assert files["yanked-1.0.tar.gz"]["yanked"] == served[3].extra["yanked"]

        html = httpx.get(proxy.url + "simple/demo-pkg/", headers={"Accept": "text/html"})
        assert html.status_code == 200
        for raw in ("<img", "<script", "</a><script"):
            assert raw not in html.text
        assert "&lt;img src=x onerror=alert(1)&gt;" in html.text
        assert "&lt;/a&gt;&lt;script&gt;" in html.text

        quoted = served[1]
        download = httpx.get(proxy.url + f"files/demo-pkg/{quote(quoted.filename)}", timeout=30)
        assert download.status_code == 200 and download.content == quoted.content
        gone = httpx.get(proxy.url + f"files/demo-pkg/{quote(dropped[3].filename)}", timeout=30)
        assert gone.status_code == 404

        for path in ("explain/demo-pkg/", "ui/project/demo-pkg/"):
            view = httpx.get(proxy.url + path, headers={"Accept": "text/html"}, timeout=60)
            assert view.status_code == 200, view.text
            assert "<img" not in view.text and "<script>alert" not in view.text
        log = proxy.output()
    left_off = [line for line in log.splitlines() if "left off the page" in line]
    assert len(left_off) == 1, log  # one line per page revision
    # The log is JSON lines when not on a terminal: read the message as it was written.
    message = json.loads(left_off[0])["message"] if left_off[0].startswith("{") else left_off[0]
    assert f"{len(dropped)} file(s)" in message
    assert "\r" not in message and "\\r\\n" in message
    assert_clean(proxy, cache)


def test_hostile_request_headers_never_cause_500(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path
) -> None:
    upstream, _ = faulty
    upstream.add("demo-pkg", demo_wheel)
    deep = "[" * 5000 + "]" * 5000
    many = ",".join(f"k{i}=v{i}" for i in range(10_000))
    cache = tmp_path / "cache"
    hostile: list[dict[bytes, bytes]] = [
        {b"User-Agent": b"pip/24.0 " + b"x" * 65536},
        {b"User-Agent": b"pip/24.0 " + json.dumps({"user_data": deep}).encode()},
        {b"User-Agent": b'pip/24.0 {"user_data": "' + b"\\" * 3000 + b'"}'},
        {b"User-Agent": b'pip/24.0 {"user_data": "python=\xff\xfe"}'},
        {b"X-Hostfit-Profile": b"python=3.\xff1,libc=glibc-\xc3\x28"},
        {b"X-Hostfit-Profile": many.encode()},
        {b"X-Hostfit-Profile": b"python=3.11," + b"=" * 20000},
    ]
    with serve(upstream.url, cache) as proxy:
        for headers in hostile:
            try:
                response = httpx.get(proxy.url + "simple/demo-pkg/", headers=headers, timeout=30)
            except httpx.RemoteProtocolError:
                continue  # the HTTP server refused a header too large: not a 500 either
            assert response.status_code < 500, (headers.keys(), response.text[:500])
        assert httpx.get(proxy.url + "healthz").status_code == 200
    assert_clean(proxy, cache)
