"""Reports by sha256: read from the state store, or computed once and stored forever.

A wheel's bytes never change, so neither does its report; it is computed at most
once per analyzer version. Concurrent requests for the same sha256 share one
computation in this process (single flight), and the processes and replicas sharing a
store take the lease ``report-lock:<sha256>`` (`proxy.edge.stores.leases`, the same
primitive the downloads use) so that only one of them runs the analysis while the others
wait for its result.

The holder renews its lease while the analysis runs, and only it can renew or release it
(Redis checks the holder's token in one script; on one host the kernel holds the lock).
A holder that dies (kill -9, a lost machine) loses its lease: at once on one host, and
through Redis within the lease's TTL, or at once when its token names a process of this
machine that has ended (a restart); a waiter then takes over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from proxy.analysis.pool import Early
from proxy.core.lru import LRU
from proxy.core.models import is_sha256
from proxy.core.report import ANALYZER_VERSION, Report, well_typed
from proxy.edge.flight import Flights
from proxy.edge.stores import keys
from proxy.edge.stores.leases import Lease, Leases
from proxy.edge.stores.state import StateStore

log = logging.getLogger("hostfit.reports")


class Analyzer(Protocol):
    async def analyze_file(
        self, path: str | os.PathLike[str], filename: str, sha256: str
    ) -> Report: ...

    async def analyze_url(
        self, url: str, filename: str, sha256: str, *, early: Early | None = None
    ) -> Report: ...


DECODED_BYTES = 64 * 1024 * 1024
# What a report decoded holds per byte of its JSON, about: the stored bytes kept to
# compare, and the objects (a torch report of 800 ELF files: 489 KB, 1.7 MB decoded).
DECODED_WEIGHT = 5


class Decoded:
    """Stored reports as decoded, by sha256: a page's decisions read every candidate's
    report each time, and checking a big one's every field costs milliseconds. An entry
    serves only the bytes it was decoded from (a report made again replaces them)."""

    def __init__(self, budget: int = DECODED_BYTES) -> None:
        self._entries: LRU[str, tuple[bytes, Report | None]] = LRU(
            budget, weigh=lambda entry: DECODED_WEIGHT * len(entry[0])
        )

    def decode(self, sha256: str, value: bytes) -> Report | None:
        found = self._entries.get(sha256)
        if found is not None and found[0] == value:
            return found[1]
        report = decode(value)
        if report is not None and report.sha256 != sha256:
            # Another wheel's report, under this key (a damaged or tampered store): it
            # says nothing of this wheel, which is analysed again.
            log.warning("report stored under %s is of %s; ignored", sha256, report.sha256)
            report = None
        self._entries.put(sha256, (value, report))
        return report


def encode(report: Report) -> bytes:
    return json.dumps(report.to_json(), separators=(",", ":"), sort_keys=True).encode()


def decode(value: bytes) -> Report | None:
    """The stored report, or None when it is unreadable or from an older analyzer: the
    wheel is analysed again (version 8 reads what version 7 skipped, which its report
    does not record, so no report is brought up to date from its own facts)."""
    try:
        data = json.loads(value)
        # A record without its analyzer's version is none of ours: the default would
        # take it for this version's, and an empty one for a wheel that needs nothing.
        if not isinstance(data, dict) or data.get("analyzer_version").__class__ is not int:
            return None
        report = Report.from_json(data)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    if not well_typed(report):
        return None
    return report if report.analyzer_version >= ANALYZER_VERSION else None


class ReportService:
    def __init__(
        self,
        store: StateStore,
        analyzer: Analyzer,
        leases: Leases,
        *,
        poll_interval: float = 0.5,
        decoded: Decoded | None = None,
    ) -> None:
        """``decoded``: shared by the services of one process (the walks' and the gate's)."""
        self.store = store
        self.analyzer = analyzer
        self.leases = leases
        self.poll_interval = poll_interval
        self.computed = 0  # analyses this process ran
        self._inflight: Flights[str, Report] = Flights()
        self._decoded = decoded if decoded is not None else Decoded()

    async def cached(self, sha256: str) -> Report | None:
        value = await self.store.get(keys.report(_checked(sha256)))
        return self._decoded.decode(sha256, value) if value is not None else None

    async def forget(self, sha256: str) -> bool:
        """Delete the stored report; whether there was one."""
        key = keys.report(_checked(sha256))
        had = await self.store.get(key) is not None
        await self.store.delete(key)
        return had

    async def cached_many(self, sha256s: Sequence[str]) -> dict[str, Report]:
        wanted = [keys.report(_checked(s)) for s in sha256s]
        values = await self.store.get_many(wanted) if wanted else []
        found = {}
        for sha256, value in zip(sha256s, values, strict=True):
            report = self._decoded.decode(sha256, value) if value is not None else None
            if report is not None:
                found[sha256] = report
        return found

    async def for_file(self, path: str | os.PathLike[str], filename: str, sha256: str) -> Report:
        return await self._get(sha256, lambda: self._from_file(path, filename, sha256))

    async def verified(self, path: str | os.PathLike[str], filename: str, sha256: str) -> Report:
        """The report made from the cached file, whose sha256 was checked, in place of one
        made by URL: nothing ties the bytes a URL answered (ranges, or a whole body never
        hashed) to the sha256 the report is kept under, and reports are shared by it."""
        report = await self.cached(sha256)
        if report is not None and _checked_bytes(report):
            return report
        made = await self._inflight.run(
            f"{sha256} file",
            lambda: self._compute(
                sha256, lambda: self._from_file(path, filename, sha256), enough=_checked_bytes
            ),
        )
        if report is not None and not report.same_facts(made):
            log.warning(
                "%s: the report made by URL differed from the checked bytes'; replaced", filename
            )
        return made

    async def _from_file(self, path: str | os.PathLike[str], filename: str, sha256: str) -> Report:
        report = await self.analyzer.analyze_file(path, filename, sha256)
        return replace(report, made_from="file")

    async def for_url(
        self, url: str, filename: str, sha256: str, *, early: Early | None = None
    ) -> Report:
        """``early`` is told the report less its GPU code first, when this call runs the
        analysis and the wheel has CUDA fat binaries (`proxy.analysis.early`); not when
        the report is stored already, or made by another caller or replica."""

        async def by_url() -> Report:
            report = await self.analyzer.analyze_url(url, filename, sha256, early=early)
            return replace(report, made_from="url")

        return await self._get(sha256, by_url)

    async def close(self) -> None:
        """Stops the analyses still running: cancelling their callers (the scheduler's
        tasks) leaves them going, and past the store's close they would fail with nobody
        to hear it."""
        await self._inflight.close()

    async def _get(self, sha256: str, compute: Callable[[], Awaitable[Report]]) -> Report:
        report = await self.cached(sha256)
        if report is not None:
            return report
        return await self._inflight.run(sha256, lambda: self._compute(sha256, compute))

    async def _compute(
        self,
        sha256: str,
        compute: Callable[[], Awaitable[Report]],
        enough: Callable[[Report], bool] = lambda report: True,
    ) -> Report:
        """Under the analysis lease, so that replicas and processes make it once; a stored
        report that is ``enough`` is not made again."""
        name = keys.report_lock(sha256)
        while (lease := await self._lease(name)) is None:
            report = await self._wait_for_holder(sha256, name, enough)
            if report is not None:
                return report
        renewing = asyncio.ensure_future(self._renew(lease))
        try:
            report = await self.cached(sha256)  # finished elsewhere just before the lease
            if report is None or not enough(report):
                self.computed += 1
                made_at = datetime.now(UTC).isoformat(timespec="seconds")
                report = replace(await compute(), made_at=made_at)
                # One made from the checked file meanwhile (`verified`, which a lease held
                # elsewhere may not have excluded) is never replaced by one made by URL.
                stored = await self.cached(sha256)
                if stored is not None and _checked_bytes(stored):
                    return stored
                try:
                    await self.store.set(keys.report(sha256), encode(report))
                except Exception as exc:
                    # The report stands; only keeping it failed (the embedded store's
                    # disk full or read-only; Redis's own failures are misses already).
                    log.warning("report of %s not stored: %s", sha256, exc)
            return report
        finally:
            renewing.cancel()
            await lease.release()

    async def _lease(self, name: str) -> Lease | None:
        """The lease, None when another holds it. Where this host cannot take one (a lock
        directory that refuses flock or writes), the analysis runs without: other
        processes may run it too, which costs time, never a wrong report."""
        try:
            return await self.leases.acquire(name, b"")
        except OSError as exc:
            log.warning("%s: no lease (%s); analysing without one", name, exc)
            return _UNLEASED

    async def _renew(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.leases.renew_every)
            if not await lease.publish(b""):
                return  # lost (expired and taken over): the other holder's work now

    async def _wait_for_holder(
        self, sha256: str, name: str, enough: Callable[[Report], bool]
    ) -> Report | None:
        """Its report once stored (and ``enough``); None when the lease is free again
        without one (the holder failed or died, or made one that is not enough:
        `Leases.holder` says so at once for a process gone here)."""
        while True:
            await asyncio.sleep(self.poll_interval)
            report = await self.cached(sha256)
            if report is not None and enough(report):
                return report
            if await self.leases.holder(name) is None:
                report = await self.cached(sha256)
                return report if report is not None and enough(report) else None


class _Unleased:
    """The lease of an analysis that could not take one: nothing to renew or release."""

    async def publish(self, value: bytes) -> bool:
        return True

    async def release(self) -> None:
        return None


_UNLEASED = _Unleased()


def _checked_bytes(report: Report) -> bool:
    """Made from the cached file, whose sha256 was checked (not from bytes read by URL)."""
    return report.made_from == "file"


def _checked(sha256: str) -> str:
    if not is_sha256(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256
