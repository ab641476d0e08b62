"""The real analysis worker, except for tasks whose filename asks it to misbehave."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from proxy.analysis.worker import main, run_task
from proxy.core.report import Report


def run(task: dict[str, Any]) -> Report:
    name = task["filename"]
    if name == "spin.whl":
        while True:
            pass
    if name == "hog.whl":
        hoard = [bytearray(64 * 1024 * 1024) for _ in range(1024)]  # 64 GiB
        raise AssertionError(f"allocated {len(hoard)} blocks despite RLIMIT_AS")
    if name == "segv.whl":
        os.kill(os.getpid(), signal.SIGSEGV)
    if name == "sleep.whl":
        time.sleep(600)
    if name == "exit.whl":
        os._exit(1)  # as a worker that could not start: no reply, a plain exit status
    if name.startswith("nap-"):
        time.sleep(1)
    return run_task(task)


if __name__ == "__main__":
    sys.exit(main(run=run))
