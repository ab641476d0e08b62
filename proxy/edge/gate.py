"""The download gate: a host whose profile is known never receives a whole wheel file
that its report says will not load there, nor one without a report.

Pages are decided ahead of time and may be provisional; the gate is the last step and
holds whatever the page said. For a wheel requested by a known host:

- with a report: a misfit is refused at once (403), before any byte leaves; a fit
  reported from bytes read by URL (which nothing ties to the sha256 the report is kept
  under) is judged again from the checked file, as one without a report is;
- without one, in the file cache: the report is made from the cached file (for a
  rewritten wheel, from its original, by URL when that is not cached), waited for up
  to `GATE_WAIT` seconds before any byte leaves;
- without one after that: the bytes stream while the report is made;
- without one, not cached: the bytes stream as they are cached, and the report is made
  from the whole cached file once it is in (a byte range likewise).

Either way the last 64 KiB wait for the report (`proxy.edge.responses.Withheld`), one
of them sent every 2 s meanwhile so that the installer's read does not time out. A
misfit's transfer is cut short, so the installer fails, and the log line says why; the
next request for it gets the 403.

What would not load is `proxy.core.decide`'s reasons of loading, a pinned build's
included: among the GPU rules, a wheel built with a newer minor of the driver's CUDA
major (``+cu128`` on a 12.4 driver) is refused when the host's GPUs would run it only
through its PTX, which that driver cannot JIT-compile, and let through when its SASS
runs on a host GPU (minor version compatibility). Which build a page offers is the
chooser's preference (`proxy.core.families`), not the gate's.

A variant wheel (PEP 825) is judged by its label's properties too, from its own
variant.json, as its page drops it: an ``x86_64 :: level :: v3`` build on a v2 CPU, a
CUDA build for GPUs the host does not have; a rewritten best variant by its original's.

A refusal names the wheel, the need and the host fact, in the body, the
``X-Hostfit-Refused`` header and the log. The universal view and clients that tell
nothing have no host to judge for and are not gated. An analysis that could not run
is not a report: the gate answers 503 and the installer may retry.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

from proxy.core.decide import Reason
from proxy.core.models import File, Page
from proxy.core.report import Report
from proxy.core.variant_fit import unfit_reason
from proxy.core.variants import Properties, variant_label
from proxy.core.versions import file_version
from proxy.edge.index import Context
from proxy.edge.layers.host_filter import HostFilter
from proxy.edge.scheduler import AnalysisScheduler
from proxy.edge.stores.blobs import BlobStore
from proxy.errors import HostfitError

log = logging.getLogger("hostfit.gate")

REFUSED_HEADER = "X-Hostfit-Refused"
# How long a request for a cached wheel without a report waits for one before its bytes
# start (after that it is judged while they go, its end held back): most wheels are
# analysed well within it, and a misfit then gets the 403 that names its need rather
# than a transfer cut short.
GATE_WAIT = 2.0


class Refused(HostfitError):
    status_code = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AnalysisUnavailable(HostfitError):
    status_code = 503
    retry_after = 10


class Unverifiable(HostfitError):
    """A wheel the gate has no way to judge here (a setting stands in the way)."""

    status_code = 503


@dataclass(frozen=True, slots=True)
class DownloadGate:
    filter: HostFilter
    scheduler: AnalysisScheduler
    refused: Callable[[str, Context], None] | None = None  # told of every refusal
    # Told each refusal's reason kinds, for /metrics; "unanalysed": held back until analysed.
    counted: Callable[[str], None] | None = None
    # A variant wheel's properties (`proxy.edge.variants.VariantService.properties`).
    variant_properties: Callable[[File], Awaitable[Properties | None]] | None = None

    @staticmethod
    def applies(file: File, ctx: Context) -> bool:
        return file.is_wheel and ctx.view == "filtered" and bool(ctx.profile)

    async def known(self, subject: File) -> Report | None:
        return (await self.scheduler.known([subject])).get(subject.sha256 or "")

    async def report(self, subject: File) -> Report:
        """Made now if need be; from the cached file when it is there, in place of one
        made by URL (`AnalysisScheduler.verified`)."""
        return await self.scheduler.verified(subject)

    async def report_within(self, subject: File, seconds: float) -> Report | None:
        """`report`, if it is made within ``seconds``; else None, and it goes on being
        made (a later `report` joins it)."""
        try:
            return await asyncio.wait_for(self.report(subject), seconds)
        except TimeoutError:
            return None

    async def judged(self, served: File, subject: File) -> File:
        """The wheel whose checked bytes are analysed for ``subject``: itself, or for a
        rewritten wheel whose original is no longer cached (or was damaged there, and is
        removed by the check), the rewritten blob that is served (the same binaries)."""
        if served is subject or await self.scheduler.blobs.check(subject.sha256 or ""):
            return subject
        return served

    async def before_bytes(
        self, page: Page, served: File, subject: File, judged: File, ctx: Context
    ) -> bool:
        """Whether the wheel is judged before any byte leaves (raising `Refused`,
        `AnalysisUnavailable` or `Unverifiable`, or returning True when it may go); False
        when it is judged while its bytes go (`admit_streamed`)."""
        await self._variant_fits(page, served, subject, ctx)
        report = await self.known(subject)
        if report is not None and self.scheduler.kept_by_upstream(report):
            # The walk's analysis by URL could not run for its upstream (failing, or
            # answering other bytes than the wheel's): no report. Judged from the bytes
            # this download checks, as a wheel without one. One that could not run here
            # (the analysis pool) is still held back with a 503 at once.
            report = None
        if report is None:
            # A project fact may say it already (a CUDA build on a host without a
            # driver): refused now, not cut short after its last byte but 64 KiB.
            reasons = self.filter.refusal(page, subject, None, ctx)
            if reasons:
                self._refuse(page, served, reasons, ctx)
        if report is not None and report.made_from == "file":
            self.enforce(page, served, subject, report, ctx)
            return True
        if report is not None:
            # Made by URL: a misfit is refused at once; a fit is judged again from the
            # bytes this download checks, as a wheel without a report is.
            self.enforce(page, served, subject, report, ctx)
        blobs = self.scheduler.blobs
        # Hashed first by a process that did not write it: one damaged on disk is removed
        # here, and downloaded again below.
        if not await blobs.check(judged.sha256 or ""):
            self._cacheable(judged, blobs)
            return False
        # Made from the cached file: most are made within the wait, and a misfit then
        # gets the 403 that names its need.
        report = await self.report_within(judged, GATE_WAIT)
        if report is None:
            return False
        self.enforce(page, served, subject, report, ctx, judged)
        return True

    @staticmethod
    def _cacheable(file: File, blobs: BlobStore) -> None:
        """Raises `Unverifiable` for a wheel the file cache will not take: judged from its
        checked bytes in the cache, it could not be judged at all (and would be cut short
        at its end on every try)."""
        if file.size is not None and not blobs.takes(file.size):
            raise Unverifiable(
                f"{file.filename}: {file.size} bytes, more than the file cache's budget"
                f" (--cache-max-size, {blobs.max_size} bytes): its bytes cannot be checked before"
                " they leave; raise the budget to serve it to hosts that tell their profile"
            )

    def enforce(
        self,
        page: Page,
        served: File,
        subject: File,
        report: Report,
        ctx: Context,
        judged: File | None = None,
    ) -> None:
        """Raises `Refused` or `AnalysisUnavailable`; returns when the wheel may go.

        ``subject`` is the wheel whose binaries ``served`` carries: itself, or the
        original of a rewritten wheel. ``judged``: the wheel ``report`` was made of, when
        not ``subject`` (a rewritten wheel's own blob).
        """
        if not self.scheduler.ran(report):
            log.warning("held back %s: %s", served.filename, report.reason)
            if self.counted is not None:
                self.counted("unanalysed")
            unavailable = AnalysisUnavailable(
                f"{served.filename}: not served to this host until it is analysed "
                f"({report.reason}); retry shortly"
            )
            # When the analysis is tried again: later after failures in a row.
            left = self.scheduler.retry_at((judged or subject).sha256 or "") - time.monotonic()
            unavailable.retry_after = max(AnalysisUnavailable.retry_after, math.ceil(left))
            raise unavailable
        reasons = self.filter.refusal(page, subject, report, ctx)
        if reasons:
            self._refuse(page, served, reasons, ctx)

    async def _variant_fits(self, page: Page, served: File, subject: File, ctx: Context) -> None:
        """Raises `Refused` for a variant wheel whose label cannot work on this host."""
        label = variant_label(subject.filename)
        if label is None or self.variant_properties is None:
            return
        properties = await self.variant_properties(subject)
        reason = None if properties is None else unfit_reason(label, properties, ctx.profile)
        if reason is not None:
            self._refuse(page, served, (reason,), ctx)

    def _refuse(
        self, page: Page, served: File, reasons: tuple[Reason, ...], ctx: Context
    ) -> NoReturn:
        message = refusal_message(page, served, reasons, ctx)
        log.warning("refused %s", message)
        counted = self.counted
        if counted is not None:
            for kind in sorted({r.kind for r in reasons}):
                counted(kind)
        if self.refused is not None:
            self.refused(page.name, ctx)
        raise Refused(message)

    async def admit_streamed(
        self, page: Page, served: File, subject: File, ctx: Context, judged: File
    ) -> str | None:
        """For a file streaming through: the reason to cut it short, or None. ``judged``:
        the wheel whose report stands for ``subject``'s (itself, or the rewritten blob
        that carries its binaries)."""
        try:
            self.enforce(page, served, subject, await self.report(judged), ctx, judged)
        except HostfitError as exc:
            return str(exc)
        return None


def refusal_message(page: Page, file: File, reasons: tuple[Reason, ...], ctx: Context) -> str:
    """One line: ``frontier-1.9 (<file>): glibc: needs 2.34, host has 2.17 [host: ...]``."""
    version = file_version(file.filename)
    needs = "; ".join(r.message for r in reasons)
    sources = ctx.profile.sources()
    host = ", ".join(f"{k}={v} from {sources[k]}" for k, v in ctx.profile.values().items())
    text = f"{page.name}-{version} ({file.filename}): {needs} [host: {host}]"
    # One header line whatever upstream put in a filename.
    return text.replace("\r", " ").replace("\n", " ")
