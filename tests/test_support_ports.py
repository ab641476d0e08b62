"""The test harness's ports: each test process draws from its own block, outside the
range the kernel hands out for bind(0) and outgoing connections."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.proxy import ROOT

DRAW = "from tests.support.proxy import free_port; print(*(free_port() for _ in range(50)))"


def ports_of(worker: str | None) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    if worker is not None:
        env["PYTEST_XDIST_WORKER"] = worker
    out = subprocess.run(
        [sys.executable, "-c", DRAW], cwd=ROOT, env=env, capture_output=True, check=True
    )
    return [int(p) for p in out.stdout.split()]


def test_each_test_process_draws_ports_no_other_process_is_handed() -> None:
    drawn = {worker: ports_of(worker) for worker in ("gw0", "gw1", None)}
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for worker, ports in drawn.items():
        assert len(set(ports)) == len(ports), worker  # none handed out twice
        assert all(1024 <= p < low for p in ports), (worker, ports)
    assert not set(drawn["gw0"]) & set(drawn["gw1"])
    assert not (set(drawn["gw0"]) | set(drawn["gw1"])) & set(drawn[None])
