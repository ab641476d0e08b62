"""Admin: off without a token, refused with a wrong one; purge, drop a report, reload
rules, over HTTP and with `hostfit admin`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from proxy.core.negotiate import JSON_V1
from tests.fixtures.elf.recipes import build_objects, build_wheels
from tests.support.proxy import ROOT, ProxyThread
from tests.support.upstream import Upstream

MakeProxy = Callable[..., ProxyThread]
TOKEN = "admin-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_off_without_a_token(upstream: Upstream, make_proxy: MakeProxy) -> None:
    proxy = make_proxy(upstream)
    response = httpx.post(proxy.url + "admin/rules/reload", headers=AUTH)
    assert response.status_code == 404
    assert "no admin token is configured" in response.text


def test_a_wrong_token_is_refused(upstream: Upstream, make_proxy: MakeProxy) -> None:
    proxy = make_proxy(upstream, admin_token=TOKEN)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        response = httpx.post(proxy.url + "admin/rules/reload", headers=headers)
        assert response.status_code == 401, headers
        assert TOKEN not in response.text


def test_purge_refetches_the_page(
    upstream: Upstream, make_proxy: MakeProxy, demo_wheel: Path
) -> None:
    upstream.add("demo-pkg", demo_wheel)
    proxy = make_proxy(upstream, admin_token=TOKEN)
    page = proxy.url + "simple/demo-pkg/"
    assert httpx.get(page, headers={"Accept": JSON_V1}).status_code == 200
    assert httpx.get(page, headers={"Accept": JSON_V1}).status_code == 200
    assert upstream.count("GET", "/simple/demo-pkg/") == 1  # cached
    response = httpx.post(proxy.url + "admin/projects/Demo_Pkg/purge", headers=AUTH)
    assert response.status_code == 200 and response.json()["purged"] == "demo-pkg"
    assert httpx.get(page, headers={"Accept": JSON_V1}).status_code == 200
    assert upstream.count("GET", "/simple/demo-pkg/") == 2


def test_drop_report_and_reload_rules_from_the_command_line(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    wheel = build_wheels(build_objects(tmp_path / "objects"), tmp_path / "wheels")["glibc"].path
    upstream.add("fx-glibc", wheel)
    rules = tmp_path / "rules.toml"
    rules.write_text("")
    proxy = make_proxy(upstream, admin_token=TOKEN, rules=rules)
    sha256 = upstream.files("fx-glibc")[0].sha256
    host = "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.20"
    deadline = time.monotonic() + 60
    while httpx.get(proxy.url + f"ui/wheel/{sha256}/").status_code != 200:
        httpx.get(proxy.url + f"p/{host}/simple/fx-glibc/")
        assert time.monotonic() < deadline, "never analysed"
        time.sleep(0.2)

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOSTFIT_ADMIN_TOKEN": TOKEN}
        command = [sys.executable, "-m", "proxy", "admin", "--url", proxy.url, *args]
        return subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False
        )

    dropped = admin("drop-report", sha256)
    assert dropped.returncode == 0, dropped.stdout
    assert '"was_stored":true' in dropped.stdout.replace(" ", "")
    assert httpx.get(proxy.url + f"ui/wheel/{sha256}/").status_code == 404
    assert admin("reload-rules").returncode == 0
    rules.write_text("[[deny]]\nproject = ")  # broken: refused, the old rules stay
    refused = admin("reload-rules")
    assert refused.returncode == 1 and "not reloaded" in refused.stdout
    assert admin("purge", "fx-glibc").returncode == 0
    # An address that does not answer: said on stderr, with no secret of the URL in it.
    unreachable = subprocess.run(
        [sys.executable, "-m", "proxy", "admin", "--url", "http://u:hunter2@127.0.0.1:9/?key=k3y",
         "--token", TOKEN, "reload-rules"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert unreachable.returncode == 1 and "127.0.0.1:9" in unreachable.stderr
    assert "hunter2" not in unreachable.stderr and "k3y" not in unreachable.stderr
