"""Secrets never leave: credentials in the upstream URL and the Redis URL appear in no
log line, response body or header, metric, explanation or state-store key or value,
while hostfit uses them for every request it sends."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from packaging.utils import parse_wheel_filename

from proxy.core.negotiate import JSON_V1
from tests.fixtures.elf.recipes import build_objects, build_wheels
from tests.support.proxy import ROOT, ProxyProcess
from tests.support.redis_server import RedisServer
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

USER = "hostfit-reader"
SECRET = "Zq7-s3cret-Pa55"
HOST = "python=3.11,impl=cp,arch=x86_64"


def forbidden(*secrets: str) -> list[str]:
    """Each secret, and the forms it travels in (Basic auth, percent-encoded)."""
    found = list(secrets)
    found += [base64.b64encode(f"{USER}:{s}".encode()).decode() for s in secrets]
    return found


def assert_clean(text: str, what: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"{what} carries a secret: {text[:2000]}"


@pytest.fixture(scope="module")
def platform_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tagged manylinux_2_17, but its extension needs GLIBC_2.25: analysed by URL."""
    objects = build_objects(tmp_path_factory.mktemp("objects"))
    return build_wheels(objects, tmp_path_factory.mktemp("wheels"))["glibc"].path


def test_upstream_credentials_are_used_and_never_shown(
    upstream: Upstream, demo_wheel: Path, platform_wheel: Path, wheel_dir: Path, tmp_path: Path
) -> None:
    secrets = forbidden(SECRET)
    upstream.basic_auth = (USER, SECRET)
    upstream.serve_metadata = False  # metadata is read from the wheel by range requests
    upstream.add("demo-pkg", demo_wheel)
    unhashed = build_wheel(WheelSpec("unhashed", "1.0", files={"u/__init__.py": b""}), wheel_dir)
    upstream.add("unhashed", unhashed, hashes={})  # hashed by hostfit on first sight
    project = str(parse_wheel_filename(platform_wheel.name)[0])
    upstream.add(project, platform_wheel)
    upstream.add_project("broken")
    upstream.errors["/simple/broken/"] = 500
    cache = tmp_path / "cache"
    seen: list[tuple[str, str]] = []

    def get(proxy: ProxyProcess, path: str, **kwargs: object) -> httpx.Response:
        response = httpx.get(proxy.url + path, timeout=60, **kwargs)  # type: ignore[arg-type]
        seen.append((path, f"{response.status_code} {response.headers}\n{response.text}"))
        return response

    args = ("--upstream", upstream.credentialed_url, "--page-ttl", "0", "--analysis", "strict")
    with ProxyProcess(*args, "--analysis-budget", "60", cache_dir=cache) as proxy:
        page = get(proxy, "simple/demo-pkg/", headers={"Accept": JSON_V1})
        assert page.status_code == 200
        assert get(proxy, "simple/demo-pkg/").status_code == 200  # HTML
        metadata = get(proxy, f"files/demo-pkg/{demo_wheel.name}.metadata")
        assert metadata.status_code == 200 and b"Name: Demo_Pkg" in metadata.content
        download = get(proxy, f"files/demo-pkg/{demo_wheel.name}")
        assert download.content == demo_wheel.read_bytes()
        assert get(proxy, "simple/unhashed/", headers={"Accept": JSON_V1}).json()["files"]
        # Analysis by URL in a worker, with the credentials: the wheel is hidden for glibc 2.20.
        filtered = get(
            proxy, f"p/{HOST},libc=glibc-2.20/simple/{project}/", headers={"Accept": JSON_V1}
        )
        assert filtered.status_code == 200 and filtered.json()["files"] == []
        explained = get(
            proxy,
            f"explain/{project}/",
            params={"profile": f"{HOST},libc=glibc-2.20", "format": "json"},
        )
        assert explained.json()["files"][0]["report"] == "ok"
        get(proxy, f"explain/{project}/", params={"profile": f"{HOST},libc=glibc-2.20"})
        broken = get(proxy, "simple/broken/")
        assert broken.status_code == 502 and upstream.origin in broken.text
        upstream.down = True
        stale = get(proxy, "simple/demo-pkg/", headers={"Accept": JSON_V1})
        assert stale.status_code == 200 and "Stale" in stale.headers["warning"]
        assert upstream.origin in stale.headers["warning"]
        upstream.down = False
        get(proxy, "metrics")
        get(proxy, "readyz")
    command = [sys.executable, "-m", "proxy", "explain", project]
    command += ["--profile", f"{HOST},libc=glibc-2.20", "--upstream", upstream.credentialed_url]
    explain_cli = subprocess.run(
        [*command, "--cache-dir", str(cache)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert explain_cli.returncode == 0, explain_cli.stdout + explain_cli.stderr
    assert "glibc: needs 2.25" in explain_cli.stdout

    # Every request hostfit sent carried the credentials (none was refused) ...
    assert upstream.requests and all(r.status != 401 for r in upstream.requests)
    assert any(r.headers.get("range") for r in upstream.requests)  # by URL, with ranges
    # ... and they are nowhere else.
    for path, response in seen:
        assert_clean(response, path, secrets)
    assert_clean(explain_cli.stdout + explain_cli.stderr, "hostfit explain", secrets)
    log = proxy.output()
    assert f"upstreams: http://{USER}:***@127.0.0.1" in log
    assert_clean(log, "the log", secrets)
    with sqlite3.connect(cache / "state" / "state.sqlite3") as db:
        rows = db.execute("SELECT key, value FROM kv").fetchall()
    assert any(key.startswith("page:") for key, _ in rows)
    assert any(key.startswith("urlsha:") for key, _ in rows)
    for key, value in rows:
        assert_clean(f"{key} {bytes(value).decode(errors='replace')}", f"state {key}", secrets)


def test_redis_password_is_never_shown(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path
) -> None:
    secrets = forbidden(SECRET)
    upstream.add("demo-pkg", demo_wheel)
    upstream.add_project("other")
    with RedisServer(tmp_path / "redis", password=SECRET) as redis:
        args = ("--upstream", upstream.url, "--redis", redis.url)
        with ProxyProcess(*args, cache_dir=tmp_path / "cache") as proxy:
            assert httpx.get(proxy.url + "simple/demo-pkg/").status_code == 200
            redis.stop()
            unready = httpx.get(proxy.url + "readyz")
            assert unready.status_code == 503
            assert_clean(unready.text, "readyz", secrets)
            other = httpx.get(proxy.url + "simple/other/")  # not in memory: Redis is asked
            assert other.status_code == 200
    log = proxy.output()
    assert "state: redis://:***@127.0.0.1" in log
    assert "serving without shared state" in log
    assert_clean(log, "the log", secrets)
