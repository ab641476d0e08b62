"""Reports by sha256: read from the state store, or computed once and stored forever.

A wheel's bytes never change, so neither does its report; it is computed at most
once per analyzer version. Concurrent requests for the same sha256 share one
computation in this process (single flight), and replicas sharing a store take a
``report-lock:<sha256>`` (set-if-absent with a TTL) so that only one of them runs
the analysis while the others wait for its result.

The lock is a lease: it holds an owner token and a short TTL, renewed while the
analysis runs. An owner that dies (kill -9, a lost machine) stops renewing, and its
lease runs out within ``lock_ttl`` seconds; a waiter then takes over, at once when the
token names a process of this machine that no longer exists (a restart). An owner
only deletes a lock that still holds its own token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from proxy.analysis.pool import Early
from proxy.core.report import ANALYZER_VERSION, Report
from proxy.edge.flight import Flights
from proxy.edge.stores import keys, leases
from proxy.edge.stores.state import StateStore

log = logging.getLogger("hostfit.reports")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Analyzer(Protocol):
    async def analyze_file(
        self, path: str | os.PathLike[str], filename: str, sha256: str
    ) -> Report: ...

    async def analyze_url(
        self, url: str, filename: str, sha256: str, *, early: Early | None = None
    ) -> Report: ...


def encode(report: Report) -> bytes:
    return json.dumps(report.to_json(), separators=(",", ":"), sort_keys=True).encode()


def decode(value: bytes) -> Report | None:
    """The stored report, or None when it is unreadable or from an older analyzer."""
    try:
        report = Report.from_json(json.loads(value))
    except (ValueError, TypeError, AttributeError):
        return None
    return report if report.analyzer_version >= ANALYZER_VERSION else None


class ReportService:
    def __init__(
        self,
        store: StateStore,
        analyzer: Analyzer,
        *,
        lock_ttl: float = 30.0,
        poll_interval: float = 0.5,
    ) -> None:
        self.store = store
        self.analyzer = analyzer
        self.lock_ttl = lock_ttl
        self.poll_interval = poll_interval
        self.computed = 0  # analyses this process ran
        self._inflight: Flights[str, Report] = Flights()

    async def cached(self, sha256: str) -> Report | None:
        value = await self.store.get(keys.report(_checked(sha256)))
        return decode(value) if value is not None else None

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
            report = decode(value) if value is not None else None
            if report is not None:
                found[sha256] = report
        return found

    async def for_file(self, path: str | os.PathLike[str], filename: str, sha256: str) -> Report:
        return await self._get(sha256, lambda: self.analyzer.analyze_file(path, filename, sha256))

    async def for_url(
        self, url: str, filename: str, sha256: str, *, early: Early | None = None
    ) -> Report:
        """``early`` is told the report less its GPU code first, when this call runs the
        analysis and the wheel has CUDA fat binaries (`proxy.analysis.early`); not when
        the report is stored already, or made by another caller or replica."""
        return await self._get(
            sha256, lambda: self.analyzer.analyze_url(url, filename, sha256, early=early)
        )

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

    async def _compute(self, sha256: str, compute: Callable[[], Awaitable[Report]]) -> Report:
        lock = keys.report_lock(sha256)
        token = leases.token()
        while not await self.store.add(lock, token, ttl=self.lock_ttl):
            report = await self._wait_for_other_replica(sha256, lock)
            if report is not None:
                return report
        renewing = asyncio.ensure_future(self._renew(lock, token))
        try:
            report = await self.cached(sha256)  # finished elsewhere just before the lock
            if report is None:
                self.computed += 1
                made_at = datetime.now(UTC).isoformat(timespec="seconds")
                report = replace(await compute(), made_at=made_at)
                await self.store.set(keys.report(sha256), encode(report))
            return report
        finally:
            renewing.cancel()
            if await self.store.get(lock) == token:
                await self.store.delete(lock)

    async def _renew(self, lock: str, token: bytes) -> None:
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            if await self.store.get(lock) != token:
                return  # lost (expired and taken over): the other owner's now
            await self.store.set(lock, token, ttl=self.lock_ttl)

    async def _wait_for_other_replica(self, sha256: str, lock: str) -> Report | None:
        """Its report once stored; None if it gave up (the lock is gone) without one."""
        while True:
            await asyncio.sleep(self.poll_interval)
            report = await self.cached(sha256)
            owner = await self.store.get(lock)
            if report is not None or owner is None:
                return report
            if leases.ended_here(owner):
                log.info("taking over the analysis of %s from a process gone", sha256)
                if await self.store.get(lock) == owner:
                    await self.store.delete(lock)
                return None


def _checked(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256
