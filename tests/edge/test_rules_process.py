"""Rules with `hostfit serve` as users run it: refusing bad rules, SIGHUP reloads under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from proxy.core.negotiate import JSON_V1
from tests.support.proxy import ROOT, ProxyProcess
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel


def test_the_server_refuses_to_start_with_bad_rules(upstream: Upstream, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "policy.toml").write_text("[quarantine]\nmin_age = 'a week'\n")
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--upstream", upstream.url,
         "--rules", str(rules), "--port", "0", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"hostfit: {rules / 'policy.toml'}: quarantine.min_age: invalid duration 'a week' "
        "(a number and s, m, h, d or w, e.g. '7d')"
    )


def swap_unseen(path: Path, text: str) -> None:
    """Change a file so that only a SIGHUP can notice: same size, same modification time."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_sighup_reloads_without_dropping_a_request(
    upstream: Upstream, wheel_dir: Path, tmp_path: Path
) -> None:
    for version in ("1.0", "2.0"):
        upstream.add("loadpkg", build_wheel(WheelSpec("loadpkg", version), wheel_dir))
    rules = tmp_path / "rules"
    rules.mkdir()
    policy = rules / "policy.toml"
    policy.write_text("[[pin]]\nproject = 'loadpkg'\nversion = '==1.0'\n")
    proxy = ProxyProcess(
        "--upstream", upstream.url, "--rules", str(rules), cache_dir=tmp_path / "cache"
    )
    answers: list[tuple[int, frozenset[str]]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.get(
                        proxy.url + "simple/loadpkg/", headers={"Accept": JSON_V1}
                    )
                    names = frozenset(f["filename"] for f in response.json()["files"])
                    answers.append((response.status_code, names))
                except BaseException as exc:
                    failures.append(exc)
                    return

    v1 = {"loadpkg-1.0-py3-none-any.whl"}
    v2 = {"loadpkg-2.0-py3-none-any.whl"}
    with proxy:
        assert proxy.process is not None
        loop = threading.Thread(target=client_loop)
        loop.start()
        try:
            wait_until(lambda: len(answers) > 20)
            swap_unseen(policy, "[[pin]]\nproject = 'loadpkg'\nversion = '==2.0'\n")
            proxy.process.send_signal(signal.SIGHUP)
            wait_until(lambda: answers[-1][1] == v2)
            # A bad reload keeps the rules in force, and says why.
            swap_unseen(policy, "[[pin]]\nproject = 'loadpkg'\nversion = '>>2.0'\n")
            count = len(answers)
            proxy.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "previous rules stay in force" in proxy.output())
            wait_until(lambda: len(answers) > count + 20)
        finally:
            stop.set()
            loop.join(30)
        assert proxy.process.poll() is None, "the server died"
        output = proxy.output()
    assert not failures, failures
    assert {status for status, _ in answers} == {200}
    seen = [names for _, names in answers]
    assert seen[0] == v1 and seen[-1] == v2
    # Each answer is whole: the old rules or the new, never a mixture.
    assert set(seen) == {frozenset(v1), frozenset(v2)}
    first_new = seen.index(frozenset(v2))
    assert all(names == v2 for names in seen[first_new:])
    assert f"{policy}: pin[0].version: invalid specifier '>>2.0'" in output


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)
