"""The host filter: each host is served only the files that will install and load there.

For a filtered view, every file gets a verdict from `proxy.core.decide` (tags, then
the wheel's report), each version's build is chosen (`proxy.core.families`: one of
``+cu126``, ``+cu128``, ``+cpu``), page-level choices are applied (`proxy.core.select`),
and the hidden files are dropped. Decisions are cached per (page revision, host profile,
reports known), so a cached page costs a dictionary lookup; filtered pages that keep
the same files share one revision, and with it one rendering.

Reports follow the host (`proxy.core.frontier`): for each host class that asks for a
page, a *walk* analyses down from the newest version until the newest version the
host is offered is verified to fit, plus ``keep`` more. A walk runs as a task of its
own, bounded in bytes (the wheels' listed sizes) and time, and at most ``walks`` run
at once; a request that finds one unfinished starts it again where the reports stand.
Reports are stored by sha256, so a restart or another replica resumes with them.

A wheel that will not load here is hidden before its report when its metadata says
so (cheap facts) or when its analysis answers early (`proxy.analysis.early`: every
fact but the GPU code, read before the CUDA fat binaries that are most of such a
wheel). Neither vouches for a wheel: a wheel they keep waits for its report, and its
version is not verified until then.

A request waits up to ``budget`` seconds for its walk. A page decided before its walk
settled is *provisional*: cached briefly, because the answer is about to change.
With the ``strict`` policy such a page is not served at all (the caller answers 503
with ``Retry-After``). Either way `refusal` is the download gate's test, the safety
net under both: no host is handed a wheel whose report says it will not load there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from packaging.utils import NormalizedName

from proxy.analysis.early import EarlyReport
from proxy.core.cheap_facts import cheap_requires
from proxy.core.decide import (
    LOAD_KINDS,
    Reason,
    Verdict,
    decide,
    hidden_by_kind,
    runs_without_driver,
)
from proxy.core.explain import explanation
from proxy.core.families import BuildChoice, choose_builds
from proxy.core.frontier import DEFAULT_KEEP, Frontier, is_pure, needs_report, pip_choice, walk
from proxy.core.lru import LRU, Generations
from proxy.core.models import File, Page
from proxy.core.profile import HostProfile
from proxy.core.report import Report
from proxy.core.revision import revised
from proxy.core.rules import EMPTY, Fact, Rules
from proxy.core.select import foreign_only, select
from proxy.core.tags import client_tags
from proxy.core.variants import wheel_project
from proxy.edge.flight import Flights
from proxy.edge.index import Context, Index, IndexLayer, per_request
from proxy.edge.layers.policy import PolicyIndex
from proxy.edge.scheduler import AnalysisScheduler
from proxy.errors import HostfitError

log = logging.getLogger("hostfit.filter")

Policy = Literal["optimistic", "strict"]


class StoredMetadata(Protocol):
    """Core metadata already held (nothing fetched), for cheap facts."""

    async def stored(self, wheels: Sequence[File]) -> Mapping[str, bytes]:
        """By wheel sha256."""
        ...

    def generation(self, project: str) -> int:
        """Moves whenever metadata of one of the project's wheels is learnt."""
        ...


# Decisions kept, weighed by the files they decide (about 300 bytes each: a verdict and
# the filtered page). The key holds the request's profile, which a client chooses: by
# count, 2,048 profiles on an 8,000-file page held 5 GB.
DECISION_FILES_KEPT = 500_000
WATCHED_KEPT = 200_000
PROJECTS_KEPT = 65_536  # generations: forgetting one only costs a decision
EARLY_MARK = "(from an early read; analysis still running)"


@dataclass(frozen=True, slots=True)
class WalkLimits:
    keep: int = DEFAULT_KEEP  # kept versions verified below the one offered
    concurrency: int = 4  # analyses in flight for one walk
    max_bytes: int = 8 * 1024**3  # listed wheel sizes one walk may take on
    max_seconds: float = 600.0  # one walk's time
    walks: int = 64  # walks running at once, over every page and host


def _decided_weight(decided: Decided) -> int:
    return len(decided.verdicts) + 1


class AnalysisPending(HostfitError):
    """Strict policy: the page is not decided yet; the client should come back."""

    status_code = 503
    retry_after = 5


@dataclass(frozen=True, slots=True)
class Decided:
    page: Page  # the filtered page
    page_all: Page  # the page before filtering
    verdicts: Mapping[str, Verdict]  # every file of page_all, by filename
    reports: Mapping[str, Report]
    frontier: Frontier
    unreported: frozenset[str]  # files whose verdict waits for a report
    choice: File | None  # what a plain `pip install <project>` takes now
    builds: tuple[BuildChoice, ...] = ()  # each version's builds, and which one was chosen
    hidden: Mapping[str, int] = field(default_factory=dict)  # files hidden, by reason kind
    # Unreported files whose analysis could not run a moment ago (a stand-in is held for
    # `scheduler.RETRY_SECONDS`, longer after failures in a row): the walk leaves them
    # until the first expires (`retry_at`, monotonic).
    stood_in: frozenset[str] = frozenset()
    retry_at: float = 0.0

    def explained(
        self, profile: HostProfile, rewrites: Mapping[str, Mapping[str, Any]] | None
    ) -> dict[str, Any]:
        """The explanation of this decision (`proxy.core.explain.explanation`)."""
        return explanation(
            self.page_all,
            self.verdicts,
            self.reports,
            profile,
            rewrites,
            unreported=self.unreported,
            frontier=self.frontier,
            choice=self.choice,
            builds=self.builds,
        )


class HostFilter(IndexLayer):
    def __init__(
        self,
        inner: Index,
        scheduler: AnalysisScheduler,
        metadata: StoredMetadata,
        *,
        policy: Policy = "optimistic",
        budget: float = 2.0,
        limits: WalkLimits = WalkLimits(),
        hide_sdists_without_wheels: bool = True,
        rules: Callable[[], Rules] = lambda: EMPTY,
        served: Callable[[Mapping[str, int]], None] = lambda hidden: None,
    ) -> None:
        """``served``: told, as each filtered page is served, how many files it hides by
        reason kind (metrics), for every page served (`per_request`); the counts are
        worked out once per decision."""
        super().__init__(inner)
        self.metadata = metadata
        self.served = served
        self.rules = rules  # for project facts; read on every decision, so reloads apply
        self.scheduler = scheduler
        self.policy = policy
        self.budget = budget
        self.limits = limits
        self.hide_sdists = hide_sdists_without_wheels
        self._decided: LRU[tuple[str, ...], Decided] = LRU(
            DECISION_FILES_KEPT, weigh=_decided_weight
        )
        self._generation: Generations[str] = Generations(PROJECTS_KEPT)
        self._watched: LRU[str, str] = LRU(WATCHED_KEPT)  # unreported sha256 -> project
        # Reported by URL, sha256 -> project: reported again when a download checks the
        # bytes. Apart, so that these (kept until downloaded) never push out the above.
        self._by_url: LRU[str, str] = LRU(WATCHED_KEPT)
        self._walks: Flights[tuple[str, ...], None] = Flights()
        # Set (and replaced) on each early answer: walks waiting for reports look again,
        # since a wheel hidden early moves their frontier on.
        self._early_news = asyncio.Event()
        scheduler.listen(self._reported)
        scheduler.listen_early(self._told_early)

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        page = await self.inner.page(name, ctx)
        if ctx.view == "universal" or not ctx.profile:
            return page
        decided = await self.decided(page, ctx, wait=self.budget)
        if self.policy == "strict" and not decided.frontier.settled:
            left = len(decided.frontier.wanted)
            raise AnalysisPending(
                f"{name}: {left} wheel(s) still being analysed for this host; retry shortly"
            )
        per_request(self.served, decided.hidden)
        return decided.page

    async def explain(self, name: NormalizedName, ctx: Context, *, wait: float = 0.0) -> Decided:
        """Every file of the project with its verdict for this host, and the reports used,
        after waiting up to ``wait`` seconds for the host's walk to settle.

        Files the operator's policies took off the page come back with their rule reasons.
        """
        decided = await self.decided(await self.inner.page(name, ctx), ctx, wait=wait)
        if not isinstance(self.inner, PolicyIndex):
            return decided
        policies = self.inner.hidden_from(decided.page_all)
        if policies is None or not policies.hidden:
            return decided
        verdicts = {name: Verdict(reasons) for name, reasons in policies.hidden.items()}
        verdicts.update(decided.verdicts)
        return replace(decided, page_all=policies.before, verdicts=verdicts)

    async def decided(self, page: Page, ctx: Context, *, wait: float) -> Decided:
        """The decision with the reports at hand after waiting up to ``wait`` seconds
        for this host's walk, which is (re)started if unsettled."""
        rules = self.rules()  # one snapshot per decision, even across a reload
        decided = await self._current(page, ctx, rules)
        if decided.frontier.settled:
            return decided
        task = self._start_walk(page, ctx, rules)
        if wait > 0 and task is not None:
            await asyncio.wait({task}, timeout=wait)
            decided = await self._current(page, ctx, rules)
        return decided

    def forget_decisions(self) -> None:
        """Decide every page again (an admin dropped a report or purged a page)."""
        self._decided.clear()

    def refusal(
        self, page: Page, file: File, report: Report | None, ctx: Context
    ) -> tuple[Reason, ...]:
        """The download gate's test: why this wheel would not load on this host, if it would not.

        Only reasons of loading count: tags are the installer's own check, and variant
        or sdist choices are preferences a pinned requirement may override. Without a
        report, what the project facts say: enough to refuse, never to vouch.
        """
        rules = self.rules()
        profile = ctx.profile
        verdict = decide(
            file, report, profile, rules.facts_for(page.name), build=_build_of(page, file)
        )
        reasons = [r for r in verdict.reasons if r.kind in LOAD_KINDS]
        foreign = foreign_only(file, report, page.files, profile)
        if foreign is not None:
            reasons.append(foreign)
        return tuple(reasons)

    # ------------------------------------------------------------------------

    async def _current(self, page: Page, ctx: Context, rules: Rules) -> Decided:
        # The generation moves whenever a report of this project arrives, so a
        # provisional decision is reused until there is something new to decide with.
        learnt = self.metadata.generation(page.name)
        key = (page.name, page.upstream, page.revision, ctx.profile.to_string(),
               f"{self._generation[page.name]}.{learnt}", rules.digest)  # fmt: skip
        cached = self._decided.get(key)
        # One that waits on stand-ins is made again once they expire, so that the walk
        # tries those wheels again: no report would come to move the generation.
        if cached is not None and not (cached.stood_in and time.monotonic() >= cached.retry_at):
            return cached
        decided = await self._decide(page, ctx, rules)
        self._decided.put(key, decided)
        return decided

    async def _decide(self, page: Page, ctx: Context, rules: Rules) -> Decided:
        profile = ctx.profile
        tags = client_tags(profile)
        facts = rules.facts_for(page.name)
        candidates = needs_report(page.files)
        # A pure wheel outside them is decided without a report, but one made of it is
        # used: the download gate reads every wheel, and a pure one may carry ELF files
        # it refused. Without this the page went on offering it, and pip failed on it
        # where an older version fits.
        listed = {id(f) for f in candidates}
        judged = [f for f in page.files if id(f) not in listed and f.sha256 and is_pure(f.filename)]
        known = await self.scheduler.known([*candidates, *judged])
        # A stand-in for an analysis that could not run is no report: its wheel stays
        # unreported (unverified, the frontier unsettled, its walk retried), neither
        # vouched for nor hidden as unanalysable.
        reports = {sha: r for sha, r in known.items() if self.scheduler.ran(r)}
        unreported = frozenset(f.filename for f in candidates if f.sha256 not in reports)
        stood_in_files = [
            f for f in candidates if (f.sha256 or "") in known and f.sha256 not in reports
        ]
        stood_in = frozenset(f.filename for f in stood_in_files)
        retry_at = min(
            (self.scheduler.retry_at(f.sha256 or "") for f in stood_in_files), default=0.0
        )
        for f in candidates:
            # Watched until reported: the report must move the generation, or this
            # decision outlives it; one made by URL is reported again when a download
            # checks the bytes (`AnalysisScheduler.verified`), and may say otherwise.
            report = reports.get(f.sha256 or "")
            if report is None:
                self._watched.put(f.sha256 or "", page.name)
            elif report.made_from != "file":
                self._by_url.put(f.sha256 or "", page.name)
        verdicts = {
            f.filename: decide(
                f, reports.get(f.sha256 or ""), profile, facts, tags=tags, build=_build_of(page, f)
            )
            for f in page.files
        }
        verdicts.update(await self._cheap_verdicts(page, unreported, ctx, rules))
        verdicts.update(self._early_verdicts(page, unreported, verdicts, ctx, rules))
        builds = choose_builds(
            page.files,
            verdicts,
            profile,
            reports=reports,
            unreported=unreported,
            family=page.family,
            without_driver=_without_driver(page, facts),
        )
        verdicts = select(
            page.files,
            builds.verdicts,
            profile,
            reports=reports,
            hide_sdists_without_wheels=self.hide_sdists,
        )
        frontier = walk(page.files, verdicts, unreported, profile, self.limits.keep)
        kept = tuple(f for f in page.files if verdicts[f.filename].keep)
        filtered = replace(
            page,
            files=kept,
            revision=revised(page.revision, "kept", (f.filename for f in kept)),
            provisional=page.provisional or not frontier.settled,
        )
        choice = pip_choice(page.files, verdicts, profile, tags)
        return Decided(
            filtered, page, verdicts, reports, frontier, unreported, choice, builds.builds,
            hidden_by_kind(verdicts), stood_in, retry_at,
        )  # fmt: skip

    async def _cheap_verdicts(
        self, page: Page, unreported: frozenset[str], ctx: Context, rules: Rules
    ) -> dict[str, Verdict]:
        """Wheels that metadata alone shows will not load here: hidden before their report.

        Only hiding counts; a cheap fact never vouches for a wheel. Not for a host with no
        NVIDIA driver: there the question is whether an import loads the driver or a CUDA
        runtime, which only the binaries tell (xgboost 2 requires nvidia-nccl-cu12 and
        runs on the CPU), and a wheel hidden before its report was never walked to, so
        it stayed hidden from such hosts. Their walk reads it (its early report, without
        the GPU code, is enough there).
        """
        waiting = [f for f in page.files if f.filename in unreported]
        if not waiting or _has_no_driver(ctx.profile):
            return {}
        held = await self.metadata.stored(waiting)
        verdicts = {}
        for f in waiting:
            data = held.get(f.sha256 or "")
            found = cheap_requires(data, f.filename) if data is not None else None
            if found is None:
                continue
            requires, source = found
            stand_in = Report(f.filename, f.sha256 or "", requires=requires)
            verdict = decide(
                f, stand_in, ctx.profile, rules.facts_for(page.name), build=_build_of(page, f)
            )
            if not verdict.keep:
                reasons = tuple(
                    replace(r, message=f"{r.message} (from {source}; not analysed yet)")
                    for r in verdict.reasons
                )
                verdicts[f.filename] = replace(verdict, reasons=reasons)
        return verdicts

    def _early_verdicts(
        self,
        page: Page,
        unreported: frozenset[str],
        verdicts: Mapping[str, Verdict],
        ctx: Context,
        rules: Rules,
    ) -> dict[str, Verdict]:
        """Wheels whose analysis answered early that they will not load here: hidden
        before their report. Only reasons of loading count, and only hiding: the GPU code
        the early answer leaves out may be what decides for a wheel it would keep."""
        waiting = [f for f in page.files if f.filename in unreported and verdicts[f.filename].keep]
        answers = self.scheduler.early(waiting) if waiting else {}
        found = {}
        for f in waiting:
            answer = answers.get(f.sha256 or "")
            if answer is None:
                continue
            stand_in = Report(f.filename, f.sha256 or "", requires=answer.report.requires)
            verdict = decide(
                f, stand_in, ctx.profile, rules.facts_for(page.name), build=_build_of(page, f)
            )
            if any(r.kind in LOAD_KINDS for r in verdict.reasons):
                reasons = tuple(
                    replace(r, message=f"{r.message} {EARLY_MARK}") for r in verdict.reasons
                )
                found[f.filename] = replace(verdict, reasons=reasons)
        return found

    def _start_walk(self, page: Page, ctx: Context, rules: Rules) -> asyncio.Task[None] | None:
        key = (page.name, page.upstream, page.revision, ctx.profile.to_string(), rules.digest)
        if key not in self._walks and len(self._walks) >= self.limits.walks:
            log.info("%s: %d walks already running; this one waits", page.name, len(self._walks))
            return None
        return self._walks.start(key, lambda: self._walk(page, ctx, rules))

    async def _walk(self, page: Page, ctx: Context, rules: Rules) -> None:
        deadline = time.monotonic() + self.limits.max_seconds
        taken: set[str] = set()
        spent = 0
        while True:
            decided = await self._current(page, ctx, rules)
            frontier = decided.frontier
            if frontier.settled:
                return
            wanted = [f for f in frontier.wanted if f.filename not in decided.stood_in]
            if not wanted:
                # Every wheel it waits for could not be analysed just now: resubmitted at
                # once they would fail again in a loop; the next request tries them anew.
                log.info(
                    "%s: walk for %s paused: %d analyses did not run",
                    page.name, ctx.profile.to_string() or "?", len(frontier.wanted),
                )  # fmt: skip
                return
            if time.monotonic() >= deadline or spent >= self.limits.max_bytes:
                log.info(
                    "%s: walk for %s stopped at its limits (%d bytes, %d wheels left);"
                    " the next request resumes it",
                    page.name, ctx.profile.to_string() or "?", spent, len(frontier.wanted),
                )  # fmt: skip
                return
            futures = []
            for f in wanted[: self.limits.concurrency]:
                if f.sha256 not in taken:
                    taken.add(f.sha256 or "")
                    spent += f.size or 0
                futures.append(self.scheduler.submit(f))
            news = asyncio.ensure_future(self._early_news.wait())
            awaited: list[asyncio.Future[Any]] = [*futures, news]
            try:
                done, _ = await asyncio.wait(
                    awaited,
                    timeout=max(deadline - time.monotonic(), 0.0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                news.cancel()
            if done - {news}:
                self._generation.move(page.name)

    def _reported(self, file: File, report: Report) -> None:
        sha256 = file.sha256 or ""
        project = self._watched.pop(sha256)
        by_url = self._by_url.pop(sha256) if report.made_from == "file" else None
        # Else a wheel no page watches (a pure one the gate read): its project's pages
        # may still offer it.
        project = project or by_url or wheel_project(file.filename)
        if project is not None:
            # New reports change what this project's pages decide: decide again.
            self._generation.move(project)

    def _told_early(self, file: File, answer: EarlyReport) -> None:
        project = self._watched.peek(file.sha256 or "")  # the report is still to come
        if project is not None:
            self._generation.move(project)
        self._early_news.set()
        self._early_news = asyncio.Event()

    async def close(self) -> None:
        await self._walks.close()


def _has_no_driver(profile: HostProfile) -> bool:
    return profile.cuda is not None and profile.cuda.value is None


def _build_of(page: Page, file: File) -> str | None:
    """A family member's configured build label, for a file whose version carries none."""
    return page.family.labels.get(file.filename) if page.family is not None else None


def _without_driver(page: Page, facts: Sequence[Fact]) -> frozenset[str]:
    """The page's wheels a project fact says run on the CPU without a driver (most
    projects have no such fact: their pages are not walked for it)."""
    if not any(fact.runs_without_driver for fact in facts):
        return frozenset()
    return frozenset(f.filename for f in page.files if runs_without_driver(f, facts))
