"""The host filter: each host is served only the files that will install and load there.

For a filtered view, every file gets a verdict from `proxy.core.decide` (tags, then
the wheel's report), page-level choices are applied (`proxy.core.select`), and the
hidden files are dropped. Decisions are cached per (page revision, host profile,
reports known), so a cached page costs a dictionary lookup; filtered pages that keep
the same files share one revision, and with it one rendering.

Reports are demand-driven: only Linux platform wheels that pass the host's tag check
are analysed, newest versions first, a few versions per request. With the
`optimistic` policy (the default) a page is decided at once with the reports at hand
and marked provisional, so it is cached only briefly, while the rest are analysed in
the background; with `strict` the request waits for them up to a time budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal, Protocol

from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename

from proxy.core.decide import Verdict, decide
from proxy.core.models import File, Page, ProjectList
from proxy.core.report import Report
from proxy.core.rules import EMPTY, Rules
from proxy.core.select import select
from proxy.core.tags import client_tags
from proxy.core.versions import newest_versions
from proxy.edge.index import Context, Index
from proxy.edge.policy_index import PolicyIndex

log = logging.getLogger("hostfit.filter")

Policy = Literal["optimistic", "strict"]
ANALYSED_VERSIONS = 3
DECISIONS_KEPT = 2048
RECENT_SECONDS = 600.0
RECENT_KEPT = 10_000


class ReportSource(Protocol):
    async def known(self, files: Sequence[File]) -> Mapping[str, Report]:
        """Reports already computed, by wheel sha256."""
        ...

    def submit(self, file: File) -> asyncio.Future[Report]:
        """Start (or join) the analysis of one wheel."""
        ...


class NoReports:
    """Tags only: for tests and for deployments that turn analysis off."""

    async def known(self, files: Sequence[File]) -> Mapping[str, Report]:
        return {}

    def submit(self, file: File) -> asyncio.Future[Report]:
        raise RuntimeError("analysis is disabled")


@dataclass(frozen=True, slots=True)
class Decided:
    page: Page  # the filtered page
    page_all: Page  # the page before filtering
    verdicts: Mapping[str, Verdict]  # every file of page_all, by filename
    reports: Mapping[str, Report]


def analysable(file: File) -> bool:
    """Linux platform wheels: the only files with ELF binaries worth reading."""
    if not file.is_wheel or file.sha256 is None:
        return False
    try:
        tags = parse_wheel_filename(file.filename)[3]
    except InvalidWheelFilename:
        return False
    return any("linux" in tag.platform for tag in tags)


class HostFilter:
    def __init__(
        self,
        inner: Index,
        reports: ReportSource,
        *,
        policy: Policy = "optimistic",
        budget: float = 20.0,
        hide_sdists_without_wheels: bool = True,
        rules: Callable[[], Rules] = lambda: EMPTY,
    ) -> None:
        self.inner = inner
        self.rules = rules  # for project facts; read on every decision, so reloads apply
        self.reports = reports
        self.policy = policy
        self.budget = budget
        self.hide_sdists = hide_sdists_without_wheels
        self._decided: OrderedDict[tuple[str, ...], Decided] = OrderedDict()
        self._generation: dict[str, int] = defaultdict(int)
        self._inflight: dict[str, asyncio.Future[Report]] = {}
        self._recent: OrderedDict[str, tuple[Report, float]] = OrderedDict()

    async def projects(self) -> ProjectList:
        return await self.inner.projects()

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        page = await self.inner.page(name, ctx)
        if ctx.view == "universal" or not ctx.profile:
            return page
        return (await self.decided(page, ctx)).page

    async def explain(self, name: NormalizedName, ctx: Context) -> Decided:
        """Every file of the project with its verdict for this host, and the reports used.

        Files the operator's policies took off the page come back with their rule reasons.
        """
        decided = await self.decided(await self.inner.page(name, ctx), ctx)
        if not isinstance(self.inner, PolicyIndex):
            return decided
        policies = self.inner.hidden_from(decided.page_all)
        if policies is None or not policies.hidden:
            return decided
        verdicts = {name: Verdict(reasons) for name, reasons in policies.hidden.items()}
        verdicts.update(decided.verdicts)
        return replace(decided, page_all=policies.before, verdicts=verdicts)

    async def decided(self, page: Page, ctx: Context) -> Decided:
        # The generation moves whenever a report of this project arrives, so a
        # provisional decision is reused until there is something new to decide with.
        rules = self.rules()  # one snapshot per decision, even across a reload
        key = (page.name, page.upstream, page.revision, ctx.profile.to_string(),
               str(self._generation[page.name]), rules.digest)  # fmt: skip
        cached = self._decided.get(key)
        if cached is not None:
            self._decided.move_to_end(key)
            return cached
        decided = await self._decide(page, ctx, rules)
        self._decided[key] = decided
        while len(self._decided) > DECISIONS_KEPT:
            self._decided.popitem(last=False)
        return decided

    async def _decide(self, page: Page, ctx: Context, rules: Rules) -> Decided:
        profile = ctx.profile
        tags = client_tags(profile)
        facts = rules.facts_for(page.name)
        candidates = [f for f in page.files if analysable(f)]
        reports = dict(await self.reports.known(candidates))
        reports.update(self._recent_reports(candidates))
        # Tag verdicts first: only files this host could install are worth analysing,
        # and only in the newest versions; older ones are decided by their tags.
        fitting = [f for f in candidates if decide(f, None, profile, facts, tags=tags).keep]
        wanted = [f for f in newest_versions(fitting, ANALYSED_VERSIONS) if f.sha256 not in reports]
        await self._analyse(page.name, wanted)
        reports.update(self._recent_reports(wanted))
        verdicts = {
            f.filename: decide(f, reports.get(f.sha256 or ""), profile, facts, tags=tags)
            for f in page.files
        }
        verdicts = select(
            page.files, verdicts, profile, hide_sdists_without_wheels=self.hide_sdists
        )
        kept = tuple(f for f in page.files if verdicts[f.filename].keep)
        digest = hashlib.sha256("\n".join(f.filename for f in kept).encode()).hexdigest()[:16]
        provisional = any(f.sha256 in self._inflight for f in wanted)
        filtered = replace(
            page, files=kept, revision=f"{page.revision}/{digest}", provisional=provisional
        )
        return Decided(filtered, page, verdicts, reports)

    def _recent_reports(self, files: Sequence[File]) -> dict[str, Report]:
        now = time.monotonic()
        found = {}
        for f in files:
            entry = self._recent.get(f.sha256 or "")
            if entry is not None and entry[1] > now:
                found[f.sha256 or ""] = entry[0]
        return found

    async def _analyse(self, project: str, files: Sequence[File]) -> None:
        """Start analyses (once per wheel at a time); in strict mode wait for them."""
        if not files or isinstance(self.reports, NoReports):
            return
        futures = []
        for f in files:
            sha256 = f.sha256 or ""
            future = self._inflight.get(sha256)
            if future is None:
                future = self.reports.submit(f)
                self._inflight[sha256] = future
                future.add_done_callback(partial(self._reported, project, sha256))
            futures.append(future)
        if self.policy == "strict":
            await asyncio.wait(futures, timeout=self.budget)

    def _reported(self, project: str, sha256: str, future: asyncio.Future[Report]) -> None:
        self._inflight.pop(sha256, None)
        if not future.cancelled() and future.exception() is None:
            # Kept here too: a report that could not be stored (the analysis did not
            # run) still settles the decision for a while instead of being retried on
            # every request.
            self._recent[sha256] = (future.result(), time.monotonic() + RECENT_SECONDS)
            self._recent.move_to_end(sha256)
            while len(self._recent) > RECENT_KEPT:
                self._recent.popitem(last=False)
        # New reports change what this project's pages decide: decide again.
        self._generation[project] += 1
