"""Real installers accept the test upstream as an index, so it is a faithful stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.upstream import JSON_TYPE, Upstream
from tests.support.wheels import WheelSpec, build_wheel, extension_wheel, interpreter_tag

UV = Path(sys.executable).with_name("uv")
WHEEL_2 = f"ext_demo-2.0-{interpreter_tag()}.whl"
Install = Callable[[Upstream, Path, str], subprocess.CompletedProcess[str]]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    with Upstream() as up:
        up.add("Ext-Demo", extension_wheel("Ext-Demo", "1.0", tmp_path, value="from-1.0"))
        up.add("Ext-Demo", extension_wheel("Ext-Demo", "2.0", tmp_path, value="from-2.0"))
        up.add("ext-demo", build_wheel(WheelSpec("ext-demo", "3.0"), tmp_path), yanked="bad")
        yield up


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
    }


def pip_install(up: Upstream, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--index-url",
        up.url,
        "--target",
        str(target),
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, env=_env(target.parent), check=False
    )


def uv_install(up: Upstream, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(UV),
        "pip",
        "install",
        "--python",
        sys.executable,
        "--index-url",
        up.url,
        "--target",
        str(target),
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, env=_env(target.parent), check=False
    )


def answer(target: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import ext_demo; print(ext_demo.answer())"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=target.parent,
    )
    return out.stdout.strip()


@pytest.mark.parametrize("install", [pip_install, uv_install], ids=["pip", "uv"])
@pytest.mark.parametrize("formats", [{"json", "html"}, {"html"}], ids=["json", "html-only"])
def test_installer_picks_newest_unyanked_and_verifies(
    upstream: Upstream, tmp_path: Path, install: Install, formats: set[str]
) -> None:
    upstream.formats = formats
    target = tmp_path / "target"
    done = install(upstream, target, "ext-demo")
    assert done.returncode == 0, done.stderr
    assert answer(target) == "from-2.0"
    assert upstream.count("GET", "/simple/ext-demo/") >= 1
    assert upstream.count("GET", WHEEL_2) == 1
    page_requests = [r for r in upstream.requests if r.path == "/simple/ext-demo/"]
    assert any(JSON_TYPE in r.headers.get("accept", "") for r in page_requests)


@pytest.mark.parametrize("install", [pip_install, uv_install], ids=["pip", "uv"])
def test_installer_rejects_corrupt_file(
    upstream: Upstream, tmp_path: Path, install: Install
) -> None:
    upstream.corrupt.add(WHEEL_2)
    target = tmp_path / "target"
    done = install(upstream, target, "ext-demo")
    assert done.returncode != 0
    # pip checks the page hash; uv's streaming unzip already trips over the flipped byte.
    expected = "hash" if install is pip_install else "failed to download"
    assert expected in (done.stdout + done.stderr).lower()
    assert not (target / "ext_demo-2.0.dist-info").exists()
