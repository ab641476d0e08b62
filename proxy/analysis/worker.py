"""An analysis worker process: one JSON task per line in on stdin, one JSON line out.

Started by `proxy.analysis.pool`. Before the first task it caps its own address
space (RLIMIT_AS) and disables core dumps; before each task it allows itself
``--cpu`` more seconds of CPU (RLIMIT_CPU), so a parser stuck on hostile bytes is
killed by the kernel (SIGXCPU) and its task becomes an ``unanalysable`` report.

Task: ``{"kind": "file" | "url", "target": path or URL, "filename": ..., "sha256": ...}``,
with ``"outbound"`` (`proxy.core.origins.Outbound` as JSON: the origins a URL task may
reach, redirects included, with their credentials and TLS settings); without it, only
the target's origin. With ``"early": true``, a wheel with CUDA fat binaries is first
answered ``{"early": {...}, "fetched": ...}`` (`proxy.analysis.early.EarlyReport` as
JSON, and the bytes read so far), on a line of its own, before they are read.
Answer: ``{"report": {...}, "fetched": bytes read from the URL}`` (with ``"exit": true``
when the worker leaves after it),
or ``{"error": "...", "kind": "upstream" | "failed"}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any, cast

from proxy.analysis.early import EarlyReport
from proxy.analysis.remote import RemoteFile
from proxy.analysis.wheel import analyze_wheel
from proxy.core.origins import Outbound
from proxy.core.report import Report
from proxy.errors import UpstreamError


def run_task(task: dict[str, Any]) -> Report:
    filename, sha256 = str(task["filename"]), str(task["sha256"])
    if task["kind"] == "url":
        target = str(task["target"])
        policy = task.get("outbound")
        outbound = Outbound.from_json(policy) if policy else Outbound.only(target)
        with RemoteFile(target, outbound=outbound) as remote:
            early = _sender(lambda: remote.fetched) if task.get("early") else None
            try:
                report = analyze_wheel(
                    cast(IO[bytes], remote), filename, sha256, far=remote.ranged, early=early
                )
            finally:
                task["fetched"] = remote.fetched
            # Where every byte came (a server that ignores Range, or a small wheel read
            # whole), they are checked: other bytes (an error page answered 200, a range
            # answered from another file) would make a report stored for good under this
            # wheel's sha256, and a fitting wheel refused at once ever after.
            held = remote.held_sha256()
            if held is not None and held != sha256:
                raise UpstreamError(
                    target, f"its bytes have sha256 {held}, not {sha256} as its index says"
                )
            return report
    early = _sender(lambda: 0) if task.get("early") else None
    with open(str(task["target"]), "rb") as source:
        return analyze_wheel(source, filename, sha256, early=early)


def _sender(fetched: Callable[[], int]) -> Callable[[EarlyReport], None]:
    """Sends an early answer on a line of its own, ahead of the task's reply."""

    def send(found: EarlyReport) -> None:
        _write({"early": found.to_json(), "fetched": fetched()})

    return send


def _write(reply: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


Runner = Callable[[dict[str, Any]], Report]


def answer(task: dict[str, Any], run: Runner = run_task) -> dict[str, Any]:
    """The reply to one task; ``"exit": true`` when this process leaves after sending it."""
    try:
        report = run(task)
        return {"report": report.to_json(), "fetched": int(task.get("fetched", 0))}
    except MemoryError:
        reason = "analysis exceeded its memory limit"
        report = Report.unanalysable(str(task["filename"]), str(task["sha256"]), reason)
        return {"report": report.to_json(), "exit": True}  # the heap may be in a poor state
    except UpstreamError as exc:
        return {"error": exc.detail, "kind": "upstream"}
    except Exception as exc:  # a bug or an I/O error: not a fact about the wheel
        return {"error": f"{type(exc).__name__}: {exc}", "kind": "failed"}


def allow_cpu(seconds: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def main(argv: Sequence[str] | None = None, run: Runner = run_task) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy.analysis.worker")
    parser.add_argument("--memory", type=int, required=True, help="address space limit, bytes")
    parser.add_argument("--cpu", type=int, required=True, help="CPU seconds per task")
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (args.memory, args.memory))
    for line in sys.stdin.buffer:
        allow_cpu(args.cpu)
        reply = answer(json.loads(line), run)
        try:
            _write(reply)
        except BrokenPipeError:
            return 0  # the server went away (killed): nobody is left to answer
        if reply.get("exit"):
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
