"""The web interface over HTTP, against a real local upstream: routes, redirects, errors,
what the fleet summary and the wheel view learn from traffic, secrets, and speed.

The browser tests (tests/e2e/test_ui_browser.py) look at the same pages in Chromium.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from proxy.edge.config import Settings
from proxy.edge.ui import redact_url, upstream_infos
from proxy.ui.landing import UpstreamInfo
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.wheels import NEEDS_GLIBC_2_34, extension_wheel
from tests.ui.test_render import assert_inert

TAG = "cp311-cp311-manylinux_2_17_x86_64"
OLD = "arch=x86_64,impl=cp,libc=glibc-2.17,python=3.11"
NEW = "arch=x86_64,impl=cp,libc=glibc-2.36,python=3.11"
VERSIONS = ("1.0", "1.1", "1.2", "1.3")
UNFIT = ("1.2", "1.3")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("ui-wheels")
    with Upstream() as server:
        for version in VERSIONS:
            extra = NEEDS_GLIBC_2_34 if version in UNFIT else ""
            wheel = extension_wheel(
                "frontier", version, work, value=version, tag=TAG, extra_c=extra
            )
            server.add("frontier", wheel)
        yield server


@pytest.fixture(scope="module")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyThread]:
    settings = Settings(upstreams=(upstream.url,), cache_dir=tmp_path_factory.mktemp("ui-cache"))
    with ProxyThread(settings) as server:
        yield server


def settle(proxy: ProxyThread, project: str, profile: str) -> dict[str, object]:
    """As an installer would: ask for the page with the profile, then wait for analysis."""
    page = httpx.get(proxy.url + f"p/{profile}/simple/{project}/", timeout=60)
    assert page.status_code == 200
    deadline = time.monotonic() + 60
    while True:
        data: dict[str, object] = httpx.get(
            proxy.url + f"explain/{project}/",
            params={"profile": profile, "format": "json"},
            timeout=60,
        ).json()
        frontier = data["frontier"]
        assert isinstance(frontier, dict)
        if frontier["settled"]:
            return data
        assert time.monotonic() < deadline, frontier
        time.sleep(0.1)


def test_landing_page(proxy: ProxyThread, upstream: Upstream) -> None:
    response = httpx.get(proxy.url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    text = assert_inert(response.text).joined
    assert f"pip install --index-url {proxy.url}simple/ PROJECT" in text
    assert f"index-url = {proxy.url}simple/" in text
    assert f'url = "{proxy.url}simple/"' in text
    assert f"hostfit probe --index-url {proxy.url}" in text
    assert upstream.url in text
    assert httpx.head(proxy.url).status_code == 200


def test_landing_page_with_a_profile_gives_its_urls(proxy: ProxyThread) -> None:
    response = httpx.get(proxy.url, params={"profile": "python=3.11.4,libc=glibc-2.28"})
    text = assert_inert(response.text).joined
    assert f"pip install --index-url {proxy.url}p/libc=glibc-2.28,python=3.11/simple/" in text
    bad = httpx.get(proxy.url, params={"profile": "libc=<b>"})
    assert bad.status_code == 400
    assert "bad host profile: libc='<b>'" in assert_inert(bad.text).joined


def test_the_landing_form_leads_to_the_project_view(proxy: ProxyThread) -> None:
    response = httpx.get(proxy.url + "ui/project/", params={"project": "Frontier", "profile": OLD})
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/ui/project/frontier/?profile=arch%3Dx86_64%2Cimpl%3Dcp%2Clibc%3Dglibc-2.17%2Cpython%3D3.11"
    )
    assert httpx.get(proxy.url + "ui/project/").headers["location"] == "/"
    bad = httpx.get(proxy.url + "ui/project/", params={"project": "not a name!"})
    assert bad.status_code == 404
    assert "invalid project name" in assert_inert(bad.text).joined


def test_project_view_newest_hidden_older_chosen(proxy: ProxyThread) -> None:
    data = settle(proxy, "frontier", OLD)
    response = httpx.get(proxy.url + "ui/project/frontier/", params={"profile": OLD})
    assert response.status_code == 200
    text = assert_inert(response.text).joined
    assert data["pip_would_install"] == {"filename": f"frontier-1.1-{TAG}.whl", "verified": True}
    assert f"Version 1.1: frontier-1.1-{TAG}.whl \u2714 verified" in text
    assert text.count("glibc: needs 2.34, host has 2.17") == 2
    left_out = httpx.get(
        proxy.url + "ui/project/frontier/", params={"profile": OLD, "hidden": "hide"}
    )
    assert "glibc: needs 2.34" not in left_out.text
    assert f"frontier-1.0-{TAG}.whl" in left_out.text


def test_project_view_redirects_and_errors(proxy: ProxyThread) -> None:
    moved = httpx.get(proxy.url + "ui/project/Frontier/?profile=python%3D3.11")
    assert moved.status_code == 301
    assert moved.headers["location"] == "/ui/project/frontier/?profile=python%3D3.11"
    slashless = httpx.get(proxy.url + "ui/project/frontier", follow_redirects=True)
    assert slashless.status_code == 200 and slashless.url.path == "/ui/project/frontier/"
    missing = httpx.get(proxy.url + "ui/project/no-such-project/", params={"profile": OLD})
    assert missing.status_code == 404
    assert "hostfit: error" in missing.text
    bad = httpx.get(proxy.url + "ui/project/frontier/", params={"profile": "cuda=twelve"})
    assert bad.status_code == 400
    assert "bad host profile: cuda='twelve'" in assert_inert(bad.text).joined
    assert 'value="cuda=twelve"' in bad.text  # kept, to be corrected in place


def test_without_a_profile_nothing_is_known(proxy: ProxyThread) -> None:
    response = httpx.get(proxy.url + "ui/project/frontier/")
    text = assert_inert(response.text).joined
    assert "Nothing is known about this host" in text
    assert "4 files in 4 versions" in text


def test_a_configured_default_profile_counts(upstream: Upstream, make_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy = make_proxy(upstream, default_profile=OLD)
    response = httpx.get(proxy.url + "ui/project/frontier/")
    text = assert_inert(response.text).joined
    assert "Nothing is known" not in text
    assert "from default" in text


def test_fleet_and_wheel_view_learn_from_traffic(proxy: ProxyThread, upstream: Upstream) -> None:
    settle(proxy, "frontier", OLD)
    settle(proxy, "frontier", NEW)
    text = assert_inert(httpx.get(proxy.url).text).joined
    assert OLD in text and NEW in text
    assert "glibc" in text
    unfit = next(f for f in upstream.files("frontier") if f.filename.startswith("frontier-1.3"))
    wheel = httpx.get(proxy.url + f"ui/wheel/{unfit.sha256}/")
    assert wheel.status_code == 200
    parsed = assert_inert(wheel.text)
    assert "GLIBC_2.34" in parsed.joined and "2.34" in parsed.joined
    refused = [
        a["href"]
        for a in parsed.named("a")
        if (a["href"] or "").startswith("/ui/project/frontier/?")
    ]
    assert refused == [
        "/ui/project/frontier/?profile=arch%3Dx86_64%2Cimpl%3Dcp%2Clibc%3Dglibc-2.17%2Cpython%3D3.11"
    ]
    by_name = httpx.get(proxy.url + f"ui/project/frontier/{unfit.filename}")
    assert by_name.status_code == 303
    assert by_name.headers["location"] == f"/ui/wheel/{unfit.sha256}/"


def test_wheel_view_without_a_report(proxy: ProxyThread) -> None:
    missing = httpx.get(proxy.url + f"ui/wheel/{'0' * 64}/")
    assert missing.status_code == 404
    assert "No report is stored" in missing.text
    assert httpx.get(proxy.url + "ui/wheel/<script>/").status_code == 404
    assert httpx.get(proxy.url + "ui/project/frontier/nope.whl").status_code == 404


def test_upstream_credentials_never_shown(upstream: Upstream, make_proxy) -> None:  # type: ignore[no-untyped-def]
    secret_url = upstream.url.replace("http://", "http://alice:s3cret@") + "?token=t0ken"
    proxy = make_proxy(secret_url)
    text = httpx.get(proxy.url).text
    assert "s3cret" not in text and "t0ken" not in text and "alice" not in text
    assert redact_url("https://u:p@index.test:8443/simple/?key=v") == (
        "https://***@index.test:8443/simple/?***"
    )
    assert redact_url("https://index.test/simple/") == "https://index.test/simple/"


def test_routed_upstreams_are_listed_with_their_projects() -> None:
    @dataclass
    class Routed:
        url: str
        projects: tuple[str, ...]
        family: str | None

    listed = upstream_infos(
        (
            "https://a:b@index.test/simple/",
            Routed("https://gpu.test/cu128/", ("torch*",), "pytorch"),
        )
    )
    assert listed == (
        UpstreamInfo("https://***@index.test/simple/"),
        UpstreamInfo("https://gpu.test/cu128/", ("torch*",), "pytorch"),
    )


def test_a_large_project_view_is_fast(  # type: ignore[no-untyped-def]
    make_proxy,
    tmp_path: Path,
) -> None:
    """4,400 files, the Linux wheels for this host sharing one real wheel's bytes (one report):
    once decided, the project view comes back well under a second."""
    real = extension_wheel("big", "1.0", tmp_path, tag=TAG).read_bytes()
    platforms = [TAG, "cp311-cp311-win_amd64", "cp311-cp311-macosx_11_0_arm64",
                 "cp310-cp310-manylinux_2_17_x86_64", "cp312-cp312-manylinux_2_17_aarch64",
                 "cp39-cp39-win32", "cp312-cp312-macosx_10_9_x86_64",
                 "cp311-cp311-musllinux_1_1_x86_64", "cp313-cp313-manylinux_2_28_x86_64",
                 "pp310-pypy310_pp73-manylinux_2_17_x86_64", "cp313-cp313t-win_amd64"]  # fmt: skip
    with Upstream() as server:
        for major in range(1, 5):
            for minor in range(100):
                for tag in platforms:
                    content = real if tag == TAG else b"not a wheel"
                    filename = f"big-{major}.{minor}-{tag}.whl"
                    server.add("big", UpstreamFile(filename=filename, content=content))
        proxy = make_proxy(server)
        settle(proxy, "big", OLD)
        address = proxy.url + "ui/project/big/"
        assert httpx.get(address, params={"profile": OLD}, timeout=60).status_code == 200
        timings = []
        for _ in range(3):  # the best of three: other work on a shared machine is noise
            start = time.perf_counter()
            response = httpx.get(address, params={"profile": OLD}, timeout=60)
            timings.append(time.perf_counter() - start)
    assert response.status_code == 200
    assert response.text.count("<tr") == 4400 + 400
    assert min(timings) < 1.0, timings
