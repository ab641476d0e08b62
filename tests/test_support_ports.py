"""The test harness's ports: claimed per process, outside the range the kernel hands out
for bind(0) and outgoing connections, never handed to two processes at once."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from tests.support.proxy import ROOT

# Draws 50 ports, prints them, and holds them until told to end (its stdin closes).
DRAW = (
    "import sys; from tests.support.proxy import free_port;"
    " print(*(free_port() for _ in range(50)), flush=True); sys.stdin.read()"
)


def test_processes_alive_together_are_never_handed_the_same_port() -> None:
    environments = [
        {**os.environ, "PYTEST_XDIST_WORKER": "gw0"},
        {**os.environ, "PYTEST_XDIST_WORKER": "gw0"},  # the same worker id: no matter
        {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"},  # the bench
    ]
    with contextlib.ExitStack() as alive:
        drawers = [
            alive.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", DRAW],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            for env in environments
        ]
        drawn = []
        for drawer in drawers:  # each holds its ports until the stack closes its stdin
            assert drawer.stdout is not None
            drawn.append([int(port) for port in drawer.stdout.readline().split()])
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    every = [port for ports in drawn for port in ports]
    assert [len(ports) for ports in drawn] == [50, 50, 50]
    assert len(set(every)) == len(every)  # none handed out twice, here or elsewhere
    assert all(1024 <= port < low for port in every), every
