"""The one place wheels are queued for analysis, shared by the host filter, the
download gate and the rewrites.

- Reports come from the store when they exist (`ReportService`, keyed by sha256,
  computed once for every host and replica).
- A wheel already in the file cache is analysed from disk; otherwise the pool reads
  only the zip directory and the members it needs from upstream, with ranges.
- One analysis per wheel at a time in this process (`proxy.edge.flight`), and at most
  ``concurrency`` at once, so a deep frontier walk cannot monopolise the pool.
- A download waiting at the gate does not queue behind walks: `report` runs on the
  ``urgent`` service (its own worker process) unless the wheel is already being
  analysed. An installer holding a connection open must not wait for a walk through
  gigabyte wheels.
- Listeners hear of every finished analysis, so pages decided without it are decided
  again.
- A walk's analysis by URL asks for the early answer too (`proxy.analysis.early`: the
  report less its GPU code, before the CUDA fat binaries that are most of such a wheel
  are read). It is kept in memory until the report comes, and early listeners hear of
  it: enough to hide a wheel that will not load, never to vouch for one. The gate's
  analyses do not ask: a download waits for the report either way.
- A report that could not be stored (the analysis did not run) is remembered for a
  while, so it settles decisions instead of being retried on every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from proxy.analysis.early import EarlyReport
from proxy.analysis.pool import Early
from proxy.core.lru import LRU
from proxy.core.models import File
from proxy.core.report import Report
from proxy.edge.files import FileService, PeerFailed
from proxy.edge.flight import Flights
from proxy.edge.reports import ReportService
from proxy.edge.stores.blobs import BlobStore, OpenBlob
from proxy.errors import IntegrityError, UpstreamError

log = logging.getLogger("hostfit.reports")

RECENT_SECONDS = 600.0
# An analysis that could not run is tried again after this long (the gate's Retry-After),
# twice as long after each failure in a row, up to RETRY_MAX_SECONDS: a wheel that sets
# off the OOM killer, or an upstream that keeps failing, is not hammered every 10 s.
RETRY_SECONDS = 10.0
RETRY_MAX_SECONDS = 600.0
DID_NOT_RUN = "analysis did not run"
RECENT_KEPT = 10_000
# Early answers of analyses still running: at most the walks' analyses in flight, but
# one that is cancelled or fails without a report must not stay forever.
EARLY_KEPT = 1_000

Listener = Callable[[File, Report], None]
EarlyListener = Callable[[File, EarlyReport], None]


class AnalysisScheduler:
    def __init__(
        self,
        service: ReportService,
        blobs: BlobStore,
        *,
        concurrency: int = 4,
        urgent: ReportService | None = None,
        observe: Callable[[str, float], None] | None = None,
        files: FileService | None = None,
        fetch_max: int = 0,
    ) -> None:
        """``observe``: told each analysis's outcome and seconds (for /metrics).
        ``files``: where a walk downloads a wheel of a listed size up to ``fetch_max``
        bytes whole, into the cache, to analyse it from there instead of by URL."""
        self.files = files
        self.fetch_max = fetch_max
        self.service = service
        self.urgent = urgent or service
        self.blobs = blobs
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: Flights[str, Report] = Flights()  # queued or running
        self._running: set[str] = set()
        self._urgent: Flights[str, Report] = Flights()  # for the gate
        self._verifying: Flights[str, Report] = Flights()  # from the checked file, for the gate
        self._from_file: set[str] = set()  # analyses running on a cached file
        self._unchecked: LRU[str, bool] = LRU(RECENT_KEPT)  # whose check could not run
        self._recent: LRU[str, tuple[Report, float]] = LRU(RECENT_KEPT)
        self._failures: LRU[str, int] = LRU(RECENT_KEPT)  # analyses in a row that did not run
        self._listeners: list[Listener] = []
        self._early: LRU[str, EarlyReport] = LRU(EARLY_KEPT)
        self._early_listeners: list[EarlyListener] = []
        self._observe = observe
        self.on_load: list[Callable[[int, int], None]] = []  # told (queued, running) on change

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def listen_early(self, listener: EarlyListener) -> None:
        """Told each early answer of a walk's analysis, before its report."""
        self._early_listeners.append(listener)

    def early(self, files: Sequence[File]) -> Mapping[str, EarlyReport]:
        """Early answers of analyses still running, by sha256: for hiding only."""
        found = {}
        for f in files:
            answer = self._early.peek(f.sha256) if f.sha256 else None
            if answer is not None:
                found[f.sha256 or ""] = answer
        return found

    @property
    def queued(self) -> int:
        """Analyses waiting for a slot (the gate's never wait), for /metrics."""
        return len(self._inflight) - len(self._running)

    @property
    def running(self) -> int:
        return len(self._running) + len(self._urgent)

    def _tell_load(self) -> None:
        for tell in self.on_load:
            tell(self.queued, self.running)

    def retry_at(self, sha256: str) -> float:
        """When a stand-in for an analysis that did not run stops being the answer
        (monotonic seconds), so that the wheel is tried again; 0 without one."""
        entry = self._recent.peek(sha256)
        return entry[1] if entry is not None and not self.ran(entry[0]) else 0.0

    async def known(self, files: Sequence[File]) -> Mapping[str, Report]:
        """Reports already made, by sha256: stored, or just made and not storable."""
        wanted = [f.sha256 for f in files if f.sha256]
        found = dict(await self.service.cached_many(wanted)) if wanted else {}
        now = time.monotonic()
        for sha256 in wanted:
            entry = self._recent.peek(sha256)
            if sha256 not in found and entry is not None and entry[1] > now:
                found[sha256] = entry[0]
        return found

    def submit(self, file: File) -> asyncio.Future[Report]:
        """Start (or join) the analysis of one wheel; it runs whoever waits for it."""
        if file.sha256 is None:
            raise ValueError(f"{file.filename}: no sha256 to key its report by")
        return self._start(self._inflight, file, lambda: self._run(file))

    async def report(self, file: File) -> Report:
        """The wheel's report, made now if need be (from the cached file when there is one)."""
        found = await self.known([file])
        if file.sha256 in found:
            return found[file.sha256 or ""]
        sha256 = file.sha256 or ""
        # Join an analysis that is running; one still queued behind walks is overtaken
        # (the store's lock makes sure the wheel is analysed once either way).
        task = self._inflight.running(sha256) if sha256 in self._running else None
        if task is None:
            task = self._start(self._urgent, file, lambda: self._run_urgent(file))
        # Shielded: the client that gave up must not cancel what others wait for.
        return await asyncio.shield(task)

    async def verified(self, file: File) -> Report:
        """For the gate: the report made from the cached file (whose sha256 was checked),
        made now where the one kept was made by URL; a stand-in (not a report) when the
        file is not in the cache."""
        sha256 = file.sha256 or ""
        found = (await self.known([file])).get(sha256)
        if found is not None and found.made_from == "file":
            return found
        if not self.blobs.has(sha256):
            # Streamed past a cache that could not take it (a full disk): no bytes to
            # analyse, and a report by URL is not theirs. Not a report: tried again.
            why = "its bytes did not reach the file cache, where they are checked"
            return Report.unanalysable(file.filename, sha256, f"{DID_NOT_RUN}: {why}")
        recent = self._recent.peek(sha256)
        if (
            sha256 in self._unchecked  # this very analysis could not run a moment ago
            and recent is not None
            and not self.ran(recent[0])
            and recent[1] > time.monotonic()
        ):
            return recent[0]  # tried again after the back-off
        walking = self._inflight.running(sha256) if sha256 in self._from_file else None
        if walking is not None:  # a walk analysing the cached file: the same report
            report = await asyncio.shield(walking)
            if report.made_from == "file":
                return report
        task = self._start(self._verifying, file, lambda: self._analyse_verified(file))
        return await asyncio.shield(task)

    async def _analyse_verified(self, file: File) -> Report:
        assert file.sha256 is not None
        if not await self.blobs.check(file.sha256):
            # Gone, or not its bytes (and removed): the next download brings them.
            why = "its bytes are not in the file cache (or were damaged there)"
            return Report.unanalysable(file.filename, file.sha256, f"{DID_NOT_RUN}: {why}")
        try:
            path = self.blobs.path(file.sha256)
            report = await self.urgent.verified(path, file.filename, file.sha256)
        except Exception as exc:
            log.warning("analysis of %s did not run: %s", file.filename, exc)
            self._unchecked.put(file.sha256, True)
            return Report.unanalysable(file.filename, file.sha256, f"{DID_NOT_RUN}: {exc}")
        self._unchecked.pop(file.sha256)
        return report

    def _start(
        self,
        flights: Flights[str, Report],
        file: File,
        work: Callable[[], Coroutine[Any, Any, Report]],
    ) -> asyncio.Task[Report]:
        sha256 = file.sha256 or ""
        task = flights.running(sha256)
        if task is None:
            if flights is self._inflight:
                log.info("analysis of %s queued", file.filename)
            task = flights.start(sha256, work)
            self._tell_load()
            # After the flight's own callback: listeners see the wheel no longer analysing.
            task.add_done_callback(lambda done: self._finished(file, done))
        return task

    async def _run(self, file: File) -> Report:
        async with self._slots:
            self._running.add(file.sha256 or "")
            self._tell_load()
            try:
                return await self._analyse(
                    self.service, file, lambda answer: self._told_early(file, answer), whole=True
                )
            finally:
                self._running.discard(file.sha256 or "")  # told by _finished, a turn on

    async def _run_urgent(self, file: File) -> Report:
        return await self._analyse(self.urgent, file)

    async def _analyse(
        self, service: ReportService, file: File, early: Early | None = None, whole: bool = False
    ) -> Report:
        start = time.monotonic()
        report = await self._report(service, file, early, whole)
        if self._observe is not None:
            outcome = report.status if self.ran(report) else "did_not_run"
            self._observe(outcome, time.monotonic() - start)
        return report

    async def _report(
        self, service: ReportService, file: File, early: Early | None, whole: bool
    ) -> Report:
        """From the cached file where it is there, or (``whole``) where it is small enough
        to bring whole: one request instead of hundreds of ranges (a 35 MB scipy wheel is
        540 of them, 16 s against a second), and the install that follows is a cache hit;
        else by URL."""
        assert file.sha256 is not None
        try:
            fetched = await self._fetched(file) if whole else None
            try:
                path = await self._cached(file.sha256) if fetched is None else fetched.path
                if path is not None:
                    self._from_file.add(file.sha256)
                    try:
                        return await service.for_file(path, file.filename, file.sha256)
                    finally:
                        self._from_file.discard(file.sha256)
            finally:
                if fetched is not None:
                    fetched.close()  # kept open (pinned in the cache) while analysed
            return await service.for_url(file.url, file.filename, file.sha256, early=early)
        except Exception as exc:
            # Not stored: a failure to run the analysis says nothing about the wheel.
            log.warning("analysis of %s did not run: %s", file.filename, exc)
            reason = f"{DID_NOT_RUN}: {exc}"
            return Report.unanalysable(file.filename, file.sha256, reason)

    async def _cached(self, sha256: str) -> Path | None:
        return self.blobs.path(sha256) if await self.blobs.check(sha256) else None

    async def _fetched(self, file: File) -> OpenBlob | None:
        """The file brought whole into the cache, where its listed size is within
        ``fetch_max`` and the cache's budget, and the upstream's agrees; None where not
        (read by URL instead)."""
        size = file.size
        if self.files is None or size is None or not 0 < size <= self.fetch_max:
            return None
        if not self.blobs.takes(size):
            return None  # it would stream past the cache, and be read by URL after
        try:
            return await self.files.fetch_within(file, self.fetch_max)
        except (IntegrityError, PeerFailed) as exc:
            # Bytes not the ones the page promised: the upstream's failure, as the same
            # bytes read by URL are, so a client's download may still bring good ones.
            raise UpstreamError(file.url, str(exc)) from None

    def _told_early(self, file: File, answer: EarlyReport) -> None:
        sha256 = file.sha256 or ""
        if sha256 not in self._inflight:
            return  # finished (or given up) meanwhile: its report, if any, says more
        self._early.put(sha256, answer)
        for listener in self._early_listeners:
            listener(file, answer)

    def _finished(self, file: File, task: asyncio.Task[Report]) -> None:
        sha256 = file.sha256 or ""
        self._early.pop(sha256)
        self._tell_load()  # the flight's own callback, before this one, let it go
        if task.cancelled() or task.exception() is not None:
            return
        report = task.result()
        if self.ran(report):
            self._failures.pop(sha256)
            kept = RECENT_SECONDS
        else:
            failures = (self._failures.get(sha256) or 0) + 1
            self._failures.put(sha256, failures)
            kept = min(RETRY_SECONDS * 2 ** min(failures - 1, 16), RETRY_MAX_SECONDS)
        self._recent.put(sha256, (report, time.monotonic() + kept))
        for listener in self._listeners:
            listener(file, report)

    async def forget(self, sha256: str) -> bool:
        """Drop a wheel's report (admin): it is analysed anew when next needed.
        Whether one was stored."""
        self._recent.pop(sha256)
        return await self.service.forget(sha256)

    @staticmethod
    def ran(report: Report) -> bool:
        """False for the stand-in report of an analysis that could not run."""
        stand_in = (report.reason or "").startswith(DID_NOT_RUN)
        return not (report.status == "unanalysable" and stand_in)

    @staticmethod
    def kept_by_upstream(report: Report) -> bool:
        """True for the stand-in of a walk's analysis its upstream kept from running
        (`_report`: an `UpstreamError`, whose text begins "upstream "): the wheel's bytes
        may still come whole, and be checked, by a download."""
        return (
            not AnalysisScheduler.ran(report)
            and report.made_from is None
            and (report.reason or "").startswith(f"{DID_NOT_RUN}: upstream ")
        )

    async def close(self) -> None:
        await self._inflight.close()
        await self._urgent.close()
        await self.service.close()
        if self.urgent is not self.service:
            await self.urgent.close()
