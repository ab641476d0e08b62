"""Analysis off the request path, in worker processes that isolate the parser.

Each worker (`proxy.analysis.worker`) caps its own memory and CPU time; the pool
adds a wall-clock limit per task. A worker that crashes, is killed by a limit or
overruns its time is replaced, and its task becomes an ``unanalysable`` report
naming the cause; the tasks of other workers are not disturbed.

Failures that say nothing about the wheel (the upstream is unreachable, a bug)
raise instead, so that no permanent report is made of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import proxy
from proxy.analysis.bounds import GiB, MiB
from proxy.analysis.early import EarlyReport
from proxy.core.origins import Outbound
from proxy.core.report import Report
from proxy.errors import HostfitError, UpstreamError

MAX_REPLY = 256 * MiB
WORKER_MODULE = "proxy.analysis.worker"
# Workers import hostfit from where this process did, installed or not.
PACKAGE_ROOT = str(Path(proxy.__file__).resolve().parent.parent)


class AnalysisFailed(HostfitError):
    """The analysis could not run; nothing was learned about the wheel."""

    status_code = 503


@dataclass(frozen=True, slots=True)
class PoolLimits:
    workers: int = 2
    memory: int = 2 * GiB  # address space of one worker
    cpu_seconds: int = 300  # per task
    timeout: float = 900.0  # wall clock per task, network included
    tasks_per_worker: int = 500  # then the worker is replaced, returning its memory
    worker_module: str = WORKER_MODULE


Early = Callable[[EarlyReport], None]


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.tasks = 0

    @classmethod
    async def start(cls, limits: PoolLimits) -> _Worker:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT + (os.pathsep + path if path else "")}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            limits.worker_module,
            "--memory",
            str(limits.memory),
            "--cpu",
            str(limits.cpu_seconds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=MAX_REPLY,
        )
        return cls(process)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def request(self, task: dict[str, Any], early: Early | None) -> dict[str, Any] | None:
        """The worker's reply, or None when it died before giving one; ``early`` is told
        the early answers that come before it."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        self.tasks += 1
        try:
            stdin.write(json.dumps(task).encode() + b"\n")
            await stdin.drain()
            while True:
                line = await stdout.readline()
                if not line.endswith(b"\n"):
                    return None
                reply: dict[str, Any] = json.loads(line)
                if "early" not in reply:
                    return reply
                if early is not None:
                    early(EarlyReport.from_json(reply["early"]))
        except (BrokenPipeError, ConnectionResetError):
            return None

    async def exit_status(self) -> int:
        return await self.process.wait()

    async def stop(self) -> None:
        if self.alive and self.process.stdin is not None:
            self.process.stdin.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
        await self.kill()

    async def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()


class AnalysisPool:
    def __init__(self, limits: PoolLimits | None = None, outbound: Outbound | None = None) -> None:
        """``outbound``: where analyses by URL may go (each worker checks every request);
        without it, each only to its own URL's origin."""
        self.limits = limits or PoolLimits()
        self._outbound = outbound.to_json() if outbound is not None else None
        self.replaced = 0  # workers lost to crashes, limits and timeouts
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots = asyncio.Semaphore(self.limits.workers)
        self.fetched = 0  # bytes analyses by URL read from upstreams, over the pool's life
        self.on_fetched: list[Callable[[int], None]] = []  # told each analysis's bytes
        self._closed = False

    async def __aenter__(self) -> AnalysisPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def analyze_file(
        self, path: str | os.PathLike[str], filename: str, sha256: str
    ) -> Report:
        return await self._analyze("file", os.fspath(path), filename, sha256)

    async def analyze_url(
        self, url: str, filename: str, sha256: str, *, early: Early | None = None
    ) -> Report:
        """``early`` is told the report less its GPU code before the wheel's CUDA fat
        binaries are read, if it has any (`proxy.analysis.early`): for hiding a wheel
        that will not load on a host while the rest is read, never for vouching for one."""
        return await self._analyze("url", url, filename, sha256, early)

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in (*self._idle, *self._busy) if w.alive]

    async def close(self) -> None:
        self._closed = True
        workers, self._idle = [*self._idle, *self._busy], []
        await asyncio.gather(*(w.stop() for w in workers))

    async def _analyze(
        self, kind: str, target: str, filename: str, sha256: str, early: Early | None = None
    ) -> Report:
        if self._closed:
            raise AnalysisFailed("the analysis pool is closed")
        task: dict[str, Any] = {
            "kind": kind,
            "target": target,
            "filename": filename,
            "sha256": sha256,
        }
        if early is not None:
            task["early"] = True
        if kind == "url" and self._outbound is not None:
            task["outbound"] = self._outbound
        async with self._slots:
            worker = await self._take()
            self._busy.add(worker)
            reusable = False
            try:
                try:
                    reply = await asyncio.wait_for(worker.request(task, early), self.limits.timeout)
                except TimeoutError:
                    await self._lose(worker)
                    # Wall-clock time says as much about the machine's load and the
                    # upstream as about the wheel (the CPU limit is the bytes' own
                    # measure): not a fact to store forever.
                    reason = f"analysis took longer than {self.limits.timeout:g} seconds"
                    raise AnalysisFailed(f"{filename}: {reason}") from None
                if reply is None:
                    status = await worker.exit_status()
                    await self._lose(worker)
                    if status >= 0 or status in _FROM_OUTSIDE:
                        raise AnalysisFailed(f"{filename}: {_death(status)}")
                    return Report.unanalysable(filename, sha256, _death(status))
                reusable = not reply.get("exit") and worker.tasks < self.limits.tasks_per_worker
                fetched = reply.get("fetched")
                if isinstance(fetched, int) and fetched:
                    self.fetched += fetched
                    for tell in self.on_fetched:
                        tell(fetched)
                return _result(reply, target)
            finally:
                self._busy.discard(worker)
                if reusable and worker.alive and not self._closed:
                    self._idle.append(worker)
                else:
                    await worker.kill()  # also when cancelled mid-task: its reply would be stale

    async def _take(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
            await worker.kill()
        return await _Worker.start(self.limits)

    async def _lose(self, worker: _Worker) -> None:
        self.replaced += 1
        await worker.kill()


def _result(reply: dict[str, Any], target: str) -> Report:
    if "report" in reply:
        return Report.from_json(reply["report"])
    if reply.get("kind") == "upstream":
        raise UpstreamError(target, str(reply.get("error")))
    raise AnalysisFailed(f"analysis of {target} failed: {reply.get('error')}")


# Deaths that say nothing about the wheel: the kernel's OOM killer or an operator
# (SIGKILL; the worker's own memory cap is a MemoryError it answers), a service stopping
# (SIGTERM, SIGINT, SIGHUP); and an exit without a reply (status 0 or more: a worker that
# could not start, under a hard limit below its own or with its module missing, answers
# every task so). Their wheels are analysed again, not reported unanalysable for ever;
# SIGXCPU (the worker's CPU cap) and crashes are the bytes' doing.
_FROM_OUTSIDE = frozenset(
    -s for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
)


def _death(status: int) -> str:
    if status == -signal.SIGXCPU:
        return "analysis exceeded its CPU time limit"
    if status == -signal.SIGKILL:
        return "the analysis worker was killed (memory or an operator)"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"the analysis worker crashed ({name})"
    return f"the analysis worker exited with status {status}"
