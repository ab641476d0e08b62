"""Only configured origins are contacted: an upstream page cannot make hostfit fetch
from another host or port, a link-local or metadata address, or follow a redirect there."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

MakeProxy = Callable[..., ProxyThread]
METADATA_URL = "http://169.254.169.254/latest/x-1.2-py3-none-any.whl"


@pytest.fixture
def elsewhere() -> Iterator[Upstream]:
    """Another server on another port: it must never see a request."""
    with Upstream() as server:
        yield server


def wheels(directory: Path) -> dict[str, Path]:
    built = {}
    for version in ("1.0", "1.1", "1.2", "1.3", "1.4"):
        spec = WheelSpec("x", version, files={"x/__init__.py": f"V = {version!r}\n".encode()})
        built[version] = build_wheel(spec, directory)
    return built


@pytest.fixture
def hostile(upstream: Upstream, elsewhere: Upstream, wheel_dir: Path) -> dict[str, Path]:
    """x 1.0 is plain; 1.1 is linked on the other server; 1.2 on the metadata address;
    1.3 redirects to the other server; 1.4 is on the other server without a hash."""
    built = wheels(wheel_dir)
    upstream.add("x", built["1.0"])
    for version in ("1.1", "1.3", "1.4"):
        elsewhere.add("x", built[version])
    upstream.add("x", built["1.1"], url=elsewhere.file_url(built["1.1"].name))
    upstream.add("x", built["1.2"], url=METADATA_URL)
    upstream.add("x", built["1.3"])
    upstream.redirects[f"/files/{built['1.3'].name}"] = elsewhere.file_url(built["1.3"].name)
    upstream.add("x", built["1.4"], url=elsewhere.file_url(built["1.4"].name), hashes={})
    return built


def listed(proxy: ProxyThread, path: str) -> set[str]:
    response = httpx.get(proxy.url + path, headers={"Accept": JSON_V1})
    assert response.status_code == 200, response.text
    return {f["filename"] for f in response.json()["files"]}


def test_links_elsewhere_leave_the_page_and_nothing_is_fetched_there(
    upstream: Upstream,
    elsewhere: Upstream,
    hostile: dict[str, Path],
    make_proxy: MakeProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "hostfit.origins")
    proxy = make_proxy(upstream)
    kept = {hostile["1.0"].name, hostile["1.3"].name}
    for path in ("simple/x/", "universal/simple/x/", "p/python=3.11/simple/x/", "simple/x/"):
        assert listed(proxy, path) == kept
    html = httpx.get(proxy.url + "simple/x/", headers={"Accept": "text/html"}).text
    assert "169.254" not in html and str(elsewhere.origin) not in html
    # One log line for the page revision, naming each refused origin.
    lines = [r.getMessage() for r in caplog.records if "left off the page" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"refused {elsewhere.origin}" in lines[0]
    assert "refused http://169.254.169.254: a link-local" in lines[0]

    for version in ("1.1", "1.2", "1.4"):
        name = hostile[version].name
        assert httpx.get(proxy.url + f"files/x/{name}").status_code == 404
        assert httpx.get(proxy.url + f"files/x/{name}.metadata").status_code == 404
    # The redirect elsewhere is refused at the hop, with a 502 naming the origin.
    redirected = httpx.get(proxy.url + f"files/x/{hostile['1.3'].name}")
    assert redirected.status_code == 502
    assert f"refused {elsewhere.origin}: not an upstream or allowed file origin" in redirected.text
    plain = httpx.get(proxy.url + f"files/x/{hostile['1.0'].name}")
    assert plain.status_code == 200 and plain.content == hostile["1.0"].read_bytes()
    assert elsewhere.requests == []


def test_explain_names_what_was_left_off_and_why(
    upstream: Upstream, elsewhere: Upstream, hostile: dict[str, Path], make_proxy: MakeProxy
) -> None:
    proxy = make_proxy(upstream)
    data = httpx.get(
        proxy.url + "explain/x/", params={"profile": "python=3.11", "format": "json"}
    ).json()
    verdicts = {f["filename"]: f for f in data["files"]}
    assert set(verdicts) == {p.name for p in hostile.values()}
    for version, origin in (("1.1", elsewhere.origin), ("1.2", "http://169.254.169.254")):
        entry = verdicts[hostile[version].name]
        assert entry["status"] == "hidden"
        (reason,) = entry["reasons"]
        assert reason["kind"] == "origin" and f"refused {origin}" in reason["message"]
    assert verdicts[hostile["1.0"].name]["status"] == "kept"
    assert elsewhere.requests == []


def test_file_origin_allows_another_origin(
    upstream: Upstream, elsewhere: Upstream, hostile: dict[str, Path], make_proxy: MakeProxy
) -> None:
    proxy = make_proxy(upstream, file_origins=(elsewhere.origin,))
    expected = {hostile[v].name for v in ("1.0", "1.1", "1.3", "1.4")}  # not the metadata one
    assert listed(proxy, "simple/x/") == expected
    for version in ("1.1", "1.3", "1.4"):
        response = httpx.get(proxy.url + f"files/x/{hostile[version].name}")
        assert response.status_code == 200, response.text
        assert response.content == hostile[version].read_bytes()
    assert elsewhere.count("GET", hostile["1.1"].name) == 1
    assert httpx.get(proxy.url + f"files/x/{hostile['1.2'].name}").status_code == 404


def test_a_page_redirected_elsewhere_is_not_followed(
    upstream: Upstream, elsewhere: Upstream, demo_wheel: Path, make_proxy: MakeProxy
) -> None:
    elsewhere.add("demo-pkg", demo_wheel)
    upstream.redirects["/simple/demo-pkg/"] = elsewhere.url + "demo-pkg/"
    proxy = make_proxy(upstream)
    response = httpx.get(proxy.url + "simple/demo-pkg/")
    assert response.status_code == 502
    assert f"refused {elsewhere.origin}" in response.text
    assert elsewhere.requests == []
