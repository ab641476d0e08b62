"""The guarantee, end to end: a host never receives a wheel that will not load there.

The project `frontier` has ten versions, all tagged manylinux_2_17: the six newest
(1.4 to 1.9) need GLIBC 2.34, the four oldest fit. A cold `hostfit serve` with
default settings, real pip (profile through PIP_USER_AGENT_USER_DATA) and real uv
(profile in the /p/ URL). Whatever the first request gets, it is never an unfit
wheel; once analysis settles, the old host installs 1.3 and the new host 1.9.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import (
    clean_env,
    new_venv,
    pip_install,
    run,
    uv_install,
)
from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream
from tests.support.wheels import NEEDS_GLIBC_2_34, extension_wheel

pytestmark = pytest.mark.e2e
TAG = "cp311-cp311-manylinux_2_17_x86_64"
ON_THIS_HOST = "python=3.11,impl=cp,arch=x86_64"
OLD = f"{ON_THIS_HOST},libc=glibc-2.17"
NEW = f"{ON_THIS_HOST},libc=glibc-2.36"
UNFIT = [f"1.{n}" for n in range(4, 10)]
FIT = [f"1.{n}" for n in range(4)]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("guarantee")
    with Upstream() as server:
        for version in FIT + UNFIT:
            extra = NEEDS_GLIBC_2_34 if version in UNFIT else ""
            wheel = extension_wheel(
                "frontier", version, work, value=version, tag=TAG, extra_c=extra
            )
            server.add("frontier", wheel)
        # deep: only 1.0 is unfit, far below the frontier (1.6 offered, 1.3-1.5 kept).
        for n in range(7):
            extra = NEEDS_GLIBC_2_34 if n == 0 else ""
            version = f"1.{n}"
            wheel = extension_wheel("deep", version, work, value=version, tag=TAG, extra_c=extra)
            server.add("deep", wheel)
        for version in ("0.1", "0.2"):
            wheel = extension_wheel(
                "allbad", version, work, value=version, tag=TAG, extra_c=NEEDS_GLIBC_2_34
            )
            server.add("allbad", wheel)
        yield server


@pytest.fixture
def proxy(upstream: Upstream, tmp_path: Path) -> Iterator[ProxyProcess]:
    """A cold proxy, default settings."""
    with ProxyProcess("--upstream", upstream.url, cache_dir=tmp_path / "cache") as server:
        yield server


def install(
    tool: str, proxy: ProxyProcess, home: Path, profile: str, *reqs: str
) -> tuple[Path, str, int]:
    home.mkdir(parents=True, exist_ok=True)
    python = new_venv(home / "venv")
    env = clean_env(home)
    if tool == "pip":
        env["PIP_USER_AGENT_USER_DATA"] = profile
        result = pip_install(python, proxy.url + "simple/", *reqs, env=env)
    else:
        result = uv_install(python, proxy.url + f"p/{profile}/simple/", *reqs, env=env)
    return python, result.stdout + result.stderr, result.returncode


def installed(python: Path, module: str = "frontier") -> str | None:
    code = f"import {module}; print({module}.answer())"
    done = run([str(python), "-c", code], env={})
    return done.stdout.strip() if done.returncode == 0 else None


def settle(proxy: ProxyProcess, project: str, profile: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while True:
        data: dict[str, object] = httpx.get(
            proxy.url + f"explain/{project}/", params={"profile": profile, "format": "json"}
        ).json()
        frontier = data["frontier"]
        assert isinstance(frontier, dict)
        if frontier["settled"]:
            return data
        assert time.monotonic() < deadline, f"never settled: {frontier}"
        time.sleep(0.3)


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_old_host_never_gets_an_unfit_version(
    proxy: ProxyProcess, tmp_path: Path, tool: str
) -> None:
    # The very first request, on a cold proxy: a fitting version or a refusal, never 1.4+.
    python, output, code = install(tool, proxy, tmp_path / "first", OLD, "frontier")
    got = installed(python)
    assert got not in UNFIT, output
    if code != 0:
        assert got is None
        assert "needs 2.34" in proxy.output() or "needs 2.34" in output, output
    # Once settled: the newest fitting version, and it imports.
    data = settle(proxy, "frontier", OLD)
    assert data["pip_would_install"] == {
        "filename": f"frontier-1.3-{TAG}.whl",
        "verified": True,
    }
    python, output, code = install(tool, proxy, tmp_path / "settled", OLD, "frontier")
    assert code == 0, output
    assert installed(python) == "1.3"
    # Pinned to an unfit version: the page no longer lists it.
    python, output, code = install(tool, proxy, tmp_path / "pinned", OLD, "frontier==1.9")
    assert code != 0 and installed(python) is None, output


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_pinned_old_unfit_version_is_refused_at_download(
    proxy: ProxyProcess, tmp_path: Path, tool: str
) -> None:
    """Below the frontier nothing is analysed: the page lists deep 1.0 by its tags, and
    the download gate refuses it, naming the wheel, the need and the host fact."""
    settle(proxy, "deep", OLD)
    explained = httpx.get(
        proxy.url + "explain/deep/", params={"profile": OLD, "format": "json"}
    ).json()
    status = {f["filename"]: f["status"] for f in explained["files"]}
    assert status[f"deep-1.0-{TAG}.whl"] == "not verified yet"
    assert status[f"deep-1.6-{TAG}.whl"] == "kept"
    line = f"deep-1.0 (deep-1.0-{TAG}.whl): glibc: needs 2.34, host has 2.17"
    # First try: no report, not cached; the transfer is cut short before its last chunk.
    python, output, code = install(tool, proxy, tmp_path / "first", OLD, "deep==1.0")
    assert code != 0 and installed(python, "deep") is None, output
    assert f"cut short: {line}" in proxy.output()
    # The download fed analysis: the page now hides it, and the file is refused whole.
    python, output, code = install(tool, proxy, tmp_path / "again", OLD, "deep==1.0")
    assert code != 0 and installed(python, "deep") is None, output
    assert "1.0" not in output.split("from versions:")[-1].split(")")[0] if tool == "pip" else True
    response = httpx.get(proxy.url + f"p/{OLD}/files/deep/deep-1.0-{TAG}.whl")
    assert response.status_code == 403
    assert line in response.headers["x-hostfit-refused"]
    assert f"refused {line}" in proxy.output()
    # A host that fits gets it.
    python, output, code = install(tool, proxy, tmp_path / "fits", NEW, "deep==1.0")
    assert code == 0, output
    assert installed(python, "deep") == "1.0"


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_new_host_gets_the_newest_version(proxy: ProxyProcess, tmp_path: Path, tool: str) -> None:
    python, output, code = install(tool, proxy, tmp_path, NEW, "frontier")
    assert code == 0, output
    assert installed(python) == "1.9"


def test_pinned_unfit_version_is_refused_on_a_cold_proxy(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    """No report yet, not cached: the bytes stream, the last chunk waits for the report."""
    url = proxy.url + f"p/{OLD}/files/frontier/frontier-1.8-{TAG}.whl"
    with pytest.raises(httpx.HTTPError):
        response = httpx.get(url, timeout=60)
        response.raise_for_status()
    # Now the report exists: a clean refusal, before any byte.
    response = httpx.get(url, timeout=60)
    assert response.status_code == 403
    message = f"frontier-1.8 (frontier-1.8-{TAG}.whl): glibc: needs 2.34, host has 2.17"
    assert message in response.text
    assert message in response.headers["x-hostfit-refused"]
    # The universal view is not gated, and neither is a client that tells nothing.
    universal = httpx.get(proxy.url + f"universal/files/frontier/frontier-1.8-{TAG}.whl")
    assert universal.status_code == 200
    assert len(universal.content) == upstream.files("frontier")[0].size or universal.content


def test_every_version_unfit_offers_nothing(proxy: ProxyProcess, tmp_path: Path) -> None:
    settle(proxy, "allbad", OLD)
    page = httpx.get(
        proxy.url + f"p/{OLD}/simple/allbad/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    ).json()
    assert page["files"] == []
    _, output, code = install("pip", proxy, tmp_path, OLD, "allbad")
    assert code != 0
    assert "No matching distribution" in output, output
