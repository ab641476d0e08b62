"""Reports in the serving path: a wheel whose binaries need more than its tag says is
hidden from hosts that cannot load it: on the first request within the analysis
budget, later when the budget is spent, and never as a provisional page in strict mode."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from packaging.utils import parse_wheel_filename

import proxy.edge.scheduler
from proxy.core.negotiate import JSON_V1
from tests.fixtures.elf.recipes import build_objects, build_wheels
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream

MakeProxy = Callable[..., ProxyThread]
HOST = "python=3.11,impl=cp,arch=x86_64"


@pytest.fixture(scope="module")
def overclaiming(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tagged manylinux_2_17, but its extension needs GLIBC_2.25."""
    objects = build_objects(tmp_path_factory.mktemp("objects"))
    return build_wheels(objects, tmp_path_factory.mktemp("wheels"))["glibc"].path


def files(proxy: ProxyThread, path: str) -> tuple[set[str], httpx.Response]:
    response = httpx.get(proxy.url + path, headers={"Accept": JSON_V1})
    assert response.status_code == 200, response.text
    return {f["filename"] for f in response.json()["files"]}, response


def project_of(wheel: Path) -> str:
    return str(parse_wheel_filename(wheel.name)[0])


def test_strict_waits_for_the_report(
    upstream: Upstream, make_proxy: MakeProxy, overclaiming: Path
) -> None:
    project = project_of(overclaiming)
    upstream.add(project, overclaiming)
    # A budget the first analysis (a worker process started) meets on a loaded machine.
    proxy = make_proxy(
        upstream,
        analysis="strict",
        analysis_workers=1,
        analysis_budget=30.0,
        analysis_download_max=0,  # read by URL, as a wheel over the limit is
    )
    old, response = files(proxy, f"p/{HOST},libc=glibc-2.20/simple/{project}/")
    assert old == set()
    assert "max-age=60" in response.headers["cache-control"]
    assert files(proxy, f"p/{HOST},libc=glibc-2.28/simple/{project}/")[0] == {overclaiming.name}
    data = httpx.get(
        proxy.url + f"explain/{project}/",
        params={"profile": f"{HOST},libc=glibc-2.20", "format": "json"},
    ).json()
    (entry,) = data["files"]
    assert entry["report"] == "ok"
    assert entry["reasons"] == [{"kind": "glibc", "message": "glibc: needs 2.25, host has 2.20"}]
    # Only the zip directory and the ELF member were read, not the whole file.
    assert upstream.count("GET", overclaiming.name) >= 1
    assert all(r.headers.get("range") for r in upstream.requests if r.path.endswith(".whl"))


def test_a_walk_analyses_a_wheel_within_the_limit_from_one_whole_download(
    upstream: Upstream, make_proxy: MakeProxy, overclaiming: Path
) -> None:
    """One request instead of a range per member read, into the file cache: the report is
    the checked file's, and the install that follows is served from the cache."""
    project = project_of(overclaiming)
    upstream.add(project, overclaiming)
    proxy = make_proxy(upstream, analysis="strict", analysis_workers=1, analysis_budget=30.0)
    assert files(proxy, f"p/{HOST},libc=glibc-2.20/simple/{project}/")[0] == set()
    wheel_requests = [r for r in upstream.requests if r.path.endswith(".whl")]
    assert [(r.method, r.headers.get("range")) for r in wheel_requests] == [("GET", None)]
    (report,) = [made for made, _ in proxy.services.filter.scheduler._recent.values()]
    assert report.made_from == "file"  # the checked file's, which the gate takes as it is
    data = httpx.get(
        proxy.url + f"explain/{project}/",
        params={"profile": f"{HOST},libc=glibc-2.20", "format": "json"},
    ).json()
    assert data["files"][0]["reasons"] == [
        {"kind": "glibc", "message": "glibc: needs 2.25, host has 2.20"}
    ]
    # A host it fits installs it from the cache: no second upstream request.
    url = proxy.url + f"p/{HOST},libc=glibc-2.28/files/{project}/{overclaiming.name}"
    got = httpx.get(url, timeout=60)
    assert got.status_code == 200 and got.content == overclaiming.read_bytes()
    assert upstream.count("GET", overclaiming.name) == 1
    # Over the limit (or with no listed size), it is read by URL: ranges only.
    small = make_proxy(upstream, analysis="strict", analysis_budget=30.0, analysis_download_max=1)
    upstream.reset_requests()
    assert files(small, f"p/{HOST},libc=glibc-2.20/simple/{project}/")[0] == set()
    wheel_requests = [r for r in upstream.requests if r.path.endswith(".whl")]
    assert wheel_requests and all(r.headers.get("range") for r in wheel_requests)


@pytest.mark.parametrize("case", ["size-lies", "over-the-cache-budget"])
def test_a_wheel_that_would_not_fit_the_limits_is_read_by_url(
    upstream: Upstream, make_proxy: MakeProxy, overclaiming: Path, case: str
) -> None:
    """Listed smaller than it is (the upstream's Content-Length is believed over the page),
    or larger than the cache takes (it would stream past it, then be read again)."""
    project = project_of(overclaiming)
    size = overclaiming.stat().st_size
    if case == "size-lies":
        upstream.add(project, overclaiming, size=100)
        settings: dict[str, object] = {"analysis_download_max": size // 2}
    else:
        upstream.add(project, overclaiming)
        settings = {"cache_max_size": size // 2}
    proxy = make_proxy(upstream, analysis="strict", analysis_budget=30.0, **settings)
    assert files(proxy, f"p/{HOST},libc=glibc-2.20/simple/{project}/")[0] == set()
    wheel_requests = [r for r in upstream.requests if r.path.endswith(".whl")]
    ranged = [r for r in wheel_requests if r.headers.get("range")]
    assert ranged, wheel_requests  # read by URL
    if case == "over-the-cache-budget":
        assert ranged == wheel_requests  # not downloaded whole first


def test_wrong_bytes_downloaded_whole_are_the_upstreams_failure(
    upstream: Upstream, make_proxy: MakeProxy, overclaiming: Path
) -> None:
    """As the same bytes read by URL are: a client's download may still bring good ones,
    where a failure of the analysis itself would hold back every host."""
    project = project_of(overclaiming)
    upstream.add(project, overclaiming)
    upstream.corrupt.add(overclaiming.name)
    proxy = make_proxy(upstream, analysis_budget=30.0)
    files(proxy, f"p/{HOST},libc=glibc-2.20/simple/{project}/")
    scheduler = proxy.services.filter.scheduler
    (stand_in,) = [report for report, _ in scheduler._recent.values()]
    assert stand_in.status == "unanalysable" and "sha256" in (stand_in.reason or "")
    assert scheduler.kept_by_upstream(stand_in), stand_in.reason


def test_optimistic_decides_now_and_corrects_soon(
    upstream: Upstream, make_proxy: MakeProxy, overclaiming: Path
) -> None:
    project = project_of(overclaiming)
    upstream.add(project, overclaiming)
    proxy = make_proxy(upstream, analysis_workers=1, analysis_budget=0.0)
    path = f"p/{HOST},libc=glibc-2.20/simple/{project}/"
    first, response = files(proxy, path)
    assert first == {overclaiming.name}  # by tags, before the report is in
    assert "max-age=5" in response.headers["cache-control"]
    deadline = time.monotonic() + 60
    while files(proxy, path)[0]:
        assert time.monotonic() < deadline, "the report never arrived"
        time.sleep(0.2)
    final, response = files(proxy, path)
    assert final == set() and "max-age=60" in response.headers["cache-control"]


def test_first_request_is_decided_within_the_budget(
    upstream: Upstream, make_proxy: MakeProxy, overclaiming: Path
) -> None:
    project = project_of(overclaiming)
    upstream.add(project, overclaiming)
    proxy = make_proxy(upstream, analysis_workers=1, analysis_budget=30.0)
    first, response = files(proxy, f"p/{HOST},libc=glibc-2.20/simple/{project}/")
    assert first == set()
    assert "max-age=60" in response.headers["cache-control"]


def test_strict_answers_503_until_settled(
    upstream: Upstream, make_proxy: MakeProxy, overclaiming: Path
) -> None:
    project = project_of(overclaiming)
    upstream.add(project, overclaiming)
    proxy = make_proxy(upstream, analysis="strict", analysis_workers=1, analysis_budget=0.0)
    path = f"p/{HOST},libc=glibc-2.20/simple/{project}/"
    response = httpx.get(proxy.url + path, headers={"Accept": JSON_V1})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "still being analysed for this host" in response.text
    deadline = time.monotonic() + 60
    while response.status_code == 503:
        assert time.monotonic() < deadline, "never settled"
        time.sleep(0.2)
        response = httpx.get(proxy.url + path, headers={"Accept": JSON_V1})
    assert response.json()["files"] == []


def test_an_analysis_that_did_not_run_settles_nothing_and_is_tried_again(
    upstream: Upstream, make_proxy: MakeProxy, overclaiming: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream fails the wheel's reads: its analysis does not run, which vouches for
    nothing. Strict keeps answering 503 (never a settled page listing the unverified
    wheel), and once the upstream is back the walk tries again and hides it."""
    monkeypatch.setattr(proxy.edge.scheduler, "RETRY_SECONDS", 0.5)
    project = project_of(overclaiming)
    upstream.add(project, overclaiming)
    upstream.errors[f"/files/{overclaiming.name}"] = 500
    proxy_ = make_proxy(upstream, analysis="strict", analysis_workers=1, analysis_budget=2.0)
    path = f"p/{HOST},libc=glibc-2.20/simple/{project}/"
    for _ in range(3):
        response = httpx.get(proxy_.url + path, headers={"Accept": JSON_V1})
        assert response.status_code == 503, response.text
        time.sleep(0.6)  # past the stand-in: each request tries again, and fails again
    assert upstream.count("GET", overclaiming.name) >= 2
    upstream.errors.clear()
    deadline = time.monotonic() + 60
    while response.status_code == 503:
        assert time.monotonic() < deadline, "never settled"
        time.sleep(0.2)
        response = httpx.get(proxy_.url + path, headers={"Accept": JSON_V1})
    assert response.json()["files"] == []  # its extension needs GLIBC 2.25
