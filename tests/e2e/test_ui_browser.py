"""The web interface in a real headless Chromium, against a running `hostfit serve`.

The project `frontier` has four versions tagged manylinux_2_17; 1.2 and 1.3 need GLIBC
2.34. For a glibc 2.17 host the newest versions are hidden and 1.1 is chosen. The
project `evil` carries markup in a yanked reason and in a file name: it must show as
text and never run.

Screenshots go to ``$HOSTFIT_TEST_ARTIFACTS`` (else the test's temporary directory).
With ``HOSTFIT_UI_DOCS=1`` the two README screenshots under docs/ are written again.
Chromium is required: scripts/test installs Debian's package, so a missing browser
fails these tests rather than skipping them.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.browser import Browser, Page, chromium_binary
from tests.support.proxy import ROOT, ProxyProcess
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.wheels import NEEDS_GLIBC_2_34, WheelSpec, build_wheel, extension_wheel

pytestmark = pytest.mark.e2e
TAG = "cp311-cp311-manylinux_2_17_x86_64"
OLD = "arch=x86_64,impl=cp,libc=glibc-2.17,python=3.11"
NEW = "arch=x86_64,impl=cp,libc=glibc-2.36,python=3.11"
UNFIT = ("1.2", "1.3")
YANKED = "<script>alert('yanked')</script>"
ODD_NAME = "evil-0.9\"><script>alert('name')<img src=x onerror=alert('img')>.tar.gz"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("HOSTFIT_TEST_ARTIFACTS")
    path = Path(configured) / "ui" if configured else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("ui-browser")
    with Upstream() as server:
        for version in ("1.0", "1.1", *UNFIT):
            extra = NEEDS_GLIBC_2_34 if version in UNFIT else ""
            wheel = extension_wheel(
                "frontier", version, work, value=version, tag=TAG, extra_c=extra
            )
            server.add("frontier", wheel)
        evil = build_wheel(WheelSpec("evil", "1.0", files={"evil/__init__.py": b""}), work)
        server.add("evil", evil, yanked=YANKED)
        server.add("evil", UpstreamFile(filename=ODD_NAME, content=b"not really an sdist"))
        yield server


@pytest.fixture(scope="module")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    cache = tmp_path_factory.mktemp("ui-proxy") / "cache"
    with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = chromium_binary()
    if binary is None:
        pytest.fail("no chromium: scripts/test installs Debian's chromium package")
    log = tmp_path_factory.mktemp("chromium") / "chromium.log"
    with Browser(binary, log) as started:
        yield started


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with browser.new_page() as tab:
        tab.viewport(1100, 850)
        yield tab
        assert tab.dialogs() == []  # no page ever ran a script


def settle(proxy: ProxyProcess, project: str, profile: str) -> None:
    """As an installer would: ask for the page with the profile, then wait for analysis."""
    assert httpx.get(proxy.url + f"p/{profile}/simple/{project}/", timeout=60).status_code == 200
    deadline = time.monotonic() + 60
    while True:
        data = httpx.get(
            proxy.url + f"explain/{project}/",
            params={"profile": profile, "format": "json"},
            timeout=60,
        ).json()
        if data["frontier"]["settled"]:
            return
        assert time.monotonic() < deadline, data["frontier"]
        time.sleep(0.1)


def texts(page: Page, selector: str) -> list[str]:
    """Text of every match, folded (closed ``<details>``) or not, whitespace collapsed."""
    found = page.evaluate(
        f"JSON.stringify([...document.querySelectorAll({json.dumps(selector)})]"
        ".map(e => e.textContent.replace(/\\s+/g, ' ').trim()))"
    )
    return list(json.loads(found))


def attribute(page: Page, selector: str, name: str) -> str | None:
    value = page.evaluate(
        f"document.querySelector({json.dumps(selector)})?.getAttribute({json.dumps(name)})"
    )
    return None if value is None else str(value)


def docs_screenshot(page: Page, name: str) -> None:
    """The README's pictures, written again when asked to: 960 pixels wide, small files."""
    if os.environ.get("HOSTFIT_UI_DOCS") == "1":
        page.viewport(960, 720)
        page.screenshot(ROOT / "docs" / f"ui-{name}.png", full_page=True, height=1100)
        page.viewport(1100, 850)


def test_landing_page(proxy: ProxyProcess, page: Page, artifacts: Path) -> None:
    settle(proxy, "frontier", OLD)
    page.goto(proxy.url)
    assert texts(page, "h1") == ["hostfit"]
    headings = texts(page, "h2")
    for expected in ("Check a host", "Point pip and uv here", "Fleet: recent traffic"):
        assert expected in headings
    snippets = "\n".join(texts(page, "pre"))
    assert f"pip install --index-url {proxy.url}simple/ PROJECT" in snippets
    assert f"index-url = {proxy.url}simple/" in snippets  # pip.conf
    assert f'url = "{proxy.url}simple/"' in snippets  # uv.toml
    assert f"hostfit probe --index-url {proxy.url}" in snippets
    # The fleet summary names the host class that asked, and what it was hidden.
    fleet = page.text("section[aria-labelledby=fleet]")
    assert OLD in fleet and "glibc" in fleet and "frontier" in fleet
    # Every input has a label; the form is a plain GET.
    assert page.count("input:not([type=hidden])") == page.count("label[for]") == 2
    assert attribute(page, "form", "method") == "get"
    assert page.count("script") == 0
    page.screenshot(artifacts / "landing.png", full_page=True)
    docs_screenshot(page, "landing")
    page.viewport(390, 844, mobile=True)
    page.color_scheme("dark")
    page.goto(proxy.url)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "no sideways scrolling on a phone"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 23, 26)", "dark mode follows prefers-color-scheme"
    page.screenshot(artifacts / "landing-phone-dark.png")


def test_entering_a_profile_in_the_form(proxy: ProxyProcess, page: Page, artifacts: Path) -> None:
    """From the keyboard, as a person does it: type the project and profile, press Enter."""
    settle(proxy, "frontier", OLD)
    settle(proxy, "frontier", NEW)
    page.goto(proxy.url)
    page.focus("#project")
    page.type("Frontier")
    page.press("Tab")
    assert page.evaluate("document.activeElement.id") == "profile"
    page.type("python=3.11.4, impl=cp, arch=x86_64, libc=glibc-2.17")
    page.submit_by_keyboard()
    assert page.url == proxy.url + (
        "ui/project/frontier/?profile=arch%3Dx86_64%2Cimpl%3Dcp%2Clibc%3Dglibc-2.17%2Cpython%3D3.11"
    )
    assert texts(page, "h1") == ["frontier"]
    assert attribute(page, "#profile", "value") == OLD
    assert "Version 1.1" in page.text("section.answer")
    # Edit the profile in place: a newer glibc gets the newest version.
    page.evaluate("document.querySelector('#profile').select()")
    page.type(NEW)
    page.submit_by_keyboard()
    assert "profile=arch%3Dx86_64%2Cimpl%3Dcp%2Clibc%3Dglibc-2.36" in page.url
    assert "Version 1.3" in page.text("section.answer")
    page.screenshot(artifacts / "project-edited.png")


def test_project_view_newest_hidden_older_chosen(
    proxy: ProxyProcess, page: Page, artifacts: Path
) -> None:
    settle(proxy, "frontier", OLD)
    page.goto(proxy.url + f"ui/project/frontier/?profile={OLD}")
    answer = page.text("section.answer")
    assert f"Version 1.1: frontier-1.1-{TAG}.whl" in answer
    assert "\u2714 verified" in answer
    # Newest first; the version a plain install takes is marked and open.
    summaries = texts(page, "details[id^=v-] > summary")
    assert [s.split()[0] for s in summaries] == ["1.3", "1.2", "1.1", "1.0"]
    assert "a plain install takes this" in summaries[2]
    assert page.evaluate("document.getElementById('v-1.1').open") is True
    # Statuses are words with a glyph, not colours alone.
    assert texts(page, "tbody td:nth-child(2)") == [
        "\u2718 hidden",
        "\u2718 hidden",
        "\u2714 kept",
        "\u2714 kept",
    ]
    reasons = texts(page, "#v-1\\.3 tbody td:nth-child(3)")
    assert reasons == ["glibc: needs 2.34, host has 2.17"]
    # The same as JSON, one link away, agreeing with the page.
    href = attribute(page, "section.answer a[href^='/explain/']", "href")
    assert href is not None and "format=json" in href
    data = httpx.get(proxy.url + href.lstrip("/")).json()
    assert data["pip_would_install"] == {"filename": f"frontier-1.1-{TAG}.whl", "verified": True}
    page.screenshot(artifacts / "project.png", full_page=True)
    docs_screenshot(page, "project")
    # Leave the hidden files out: keyboard onto the radio, then the button.
    page.focus("#hidden-hide")
    page.press("Space")
    page.focus("form button")
    page.submit_by_keyboard()
    assert "hidden=hide" in page.url
    assert "\u2718 hidden" not in texts(page, "tbody td:nth-child(2)")
    assert len(texts(page, "tbody tr")) == 2
    page.viewport(390, 844, mobile=True)
    page.color_scheme("dark")
    page.goto(proxy.url + f"ui/project/frontier/?profile={OLD}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(artifacts / "project-phone-dark.png")


def test_wheel_view(proxy: ProxyProcess, upstream: Upstream, page: Page, artifacts: Path) -> None:
    settle(proxy, "frontier", OLD)
    page.goto(proxy.url + f"ui/project/frontier/?profile={OLD}")
    link = attribute(page, "#v-1\\.3 tbody a[href^='/ui/wheel/']", "href")
    unfit = next(f for f in upstream.files("frontier") if f.filename.startswith("frontier-1.3"))
    assert link == f"/ui/wheel/{unfit.sha256}/"
    page.goto(proxy.url + link.lstrip("/"))
    assert texts(page, "h1") == [unfit.filename]
    body = page.text()
    assert "GLIBC_2.34" in body
    assert "manylinux_2_34_x86_64" in body  # the tag its binaries allow
    assert "yes: the wheel's own platform tag promises more" in body
    members = page.text("section[aria-labelledby=elf]")
    assert "frontier.cpython-311-x86_64-linux-gnu.so" in members and "libc.so.6" in members
    assert re.search(r"made\s*\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", body), body  # when
    # The host class refused this wheel, one link away.
    refused = attribute(page, "section[aria-labelledby=hosts] li a", "href")
    assert refused == (
        "/ui/project/frontier/?profile=arch%3Dx86_64%2Cimpl%3Dcp%2Clibc%3Dglibc-2.17%2Cpython%3D3.11"
    )
    page.screenshot(artifacts / "wheel.png", full_page=True)


def test_upstream_markup_shows_as_text_and_never_runs(
    proxy: ProxyProcess, page: Page, artifacts: Path
) -> None:
    settle(proxy, "evil", OLD)
    page.goto(proxy.url + f"ui/project/evil/?profile={OLD}")
    body = page.text()
    assert f"yanked: {YANKED}" in body
    assert ODD_NAME in body
    assert page.count("script") == 0
    assert page.count("img") == 0
    assert page.evaluate("[...document.querySelectorAll('*')].some(e => e.onerror)") is False
    page.screenshot(artifacts / "markup.png", full_page=True)
    # The landing page lists the project among recent traffic without running anything.
    page.goto(proxy.url)
    assert page.count("script") == 0
    # page's teardown asserts that no dialog (alert) ever opened.
