"""What recent traffic shows about the fleet: host classes seen, what they were hidden and why.

`Fleet.saw` is called on every filtered page served, so it only notes the request: one
dictionary update, no decision, no I/O. The summaries (files hidden by reason, wheels
refused for reasons of loading) are made later, when someone looks (`refresh`, from the
landing page), from the host filter's cached decisions. Everything is bounded: the
newest ``capacity`` (project, host class) pairs are kept, the oldest forgotten. Memory of
one process only: each worker and replica sees its own traffic.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from proxy.core.decide import LOAD_KINDS, Verdict
from proxy.core.lru import LRU
from proxy.core.models import Page
from proxy.core.profile import HostProfile
from proxy.edge.index import Context
from proxy.errors import HostfitError
from proxy.ui.landing import Affected, HostClass, ReasonCount

log = logging.getLogger("hostfit.fleet")

CAPACITY = 512
REFRESH_LIMIT = 64  # summaries made per look, at most
REFRESH_SECONDS = 1.0  # and for at most this long


@dataclass(frozen=True, slots=True)
class Summary:
    files: int
    hidden: int
    by_kind: Mapping[str, int]  # hidden files per reason kind (a file counts once per kind)
    refused: Mapping[str, tuple[str, ...]]  # filename -> reasons of loading it was hidden for
    settled: bool
    wanted: int  # wheels the host's walk still waits for


def summarise(page: Page, verdicts: Mapping[str, Verdict], settled: bool, wanted: int) -> Summary:
    by_kind: Counter[str] = Counter()
    refused: dict[str, tuple[str, ...]] = {}
    hidden = 0
    for file in page.files:
        verdict = verdicts.get(file.filename)
        if verdict is None or verdict.keep:
            continue
        hidden += 1
        by_kind.update({r.kind for r in verdict.reasons})
        loading = tuple(r.message for r in verdict.reasons if r.kind in LOAD_KINDS)
        if loading:
            refused[file.filename] = loading
    return Summary(len(page.files), hidden, dict(by_kind), refused, settled, wanted)


@dataclass(slots=True)
class Sighting:
    project: str
    profile: HostProfile
    requests: int = 0
    last_seen: float = 0.0
    summary: Summary | None = None
    summarised_at: float = -1.0  # last_seen when the summary was made


Summariser = Callable[[str, Context], Awaitable[Summary]]


@dataclass
class Fleet:
    capacity: int = CAPACITY
    clock: Callable[[], float] = time.time
    _seen: LRU[tuple[str, str], Sighting] = field(init=False)

    def __post_init__(self) -> None:
        self._seen = LRU(self.capacity)

    def saw(self, project: str, ctx: Context) -> None:
        """A filtered page was served to a host that told something about itself."""
        if ctx.view != "filtered" or not ctx.profile:
            return
        key = (project, ctx.profile.to_string())
        entry = self._seen.get(key)
        if entry is None:
            entry = Sighting(project, ctx.profile)
            self._seen.put(key, entry)
        entry.requests += 1
        entry.last_seen = self.clock()

    async def refresh(
        self, summariser: Summariser, *, limit: int = REFRESH_LIMIT, budget: float = REFRESH_SECONDS
    ) -> None:
        """Summarise the pairs seen since their last summary, newest first, for at most
        ``budget`` seconds (a page whose cached copy expired is fetched again); the rest
        wait for the next look."""
        deadline = time.monotonic() + budget
        stale = [s for s in reversed(list(self._seen.values())) if s.summarised_at < s.last_seen]
        for entry in stale[:limit]:
            if time.monotonic() > deadline:
                break
            seen_at = entry.last_seen
            try:
                entry.summary = await summariser(entry.project, Context(profile=entry.profile))
            except HostfitError as exc:
                log.info("no fleet summary for %s: %s", entry.project, exc)
            entry.summarised_at = seen_at

    def host_classes(self) -> list[HostClass]:
        grouped: dict[str, list[Sighting]] = {}
        for (_, profile), entry in self._seen.items():
            grouped.setdefault(profile, []).append(entry)
        result = []
        for profile, entries in grouped.items():
            latest = max(entries, key=lambda s: s.last_seen)
            result.append(
                HostClass(
                    profile=profile,
                    requests=sum(s.requests for s in entries),
                    projects=len(entries),
                    last_seen=latest.last_seen,
                    latest_project=latest.project,
                )
            )
        return sorted(result, key=lambda h: h.last_seen, reverse=True)

    def hidden_by_reason(self) -> list[ReasonCount]:
        files: Counter[str] = Counter()
        hosts: dict[str, set[str]] = {}
        for (_, profile), entry in self._seen.items():
            if entry.summary is None:
                continue
            for kind, count in entry.summary.by_kind.items():
                files[kind] += count
                hosts.setdefault(kind, set()).add(profile)
        return [ReasonCount(kind, n, len(hosts[kind])) for kind, n in files.most_common()]

    def most_affected(self, count: int = 10) -> list[Affected]:
        per: dict[str, list[Summary]] = {}
        for (project, _), entry in self._seen.items():
            if entry.summary is not None:
                per.setdefault(project, []).append(entry.summary)
        rows = [
            Affected(
                project=project,
                hosts=sum(1 for s in summaries if s.refused),
                refused=sum(len(s.refused) for s in summaries),
                hidden=sum(s.hidden for s in summaries),
            )
            for project, summaries in per.items()
        ]
        rows = [r for r in rows if r.hidden]
        rows.sort(key=lambda r: (r.refused, r.hosts, r.hidden), reverse=True)
        return rows[:count]

    def refusals(self, project: str, filename: str) -> list[tuple[str, tuple[str, ...]]]:
        """(host class, reasons) for each host class recently refused this file."""
        found = []
        for (seen_project, profile), entry in reversed(list(self._seen.items())):
            if seen_project != project or entry.summary is None:
                continue
            reasons = entry.summary.refused.get(filename)
            if reasons:
                found.append((profile, reasons))
        return found

    def unsettled(self) -> tuple[int, int]:
        """(pairs whose walk had not settled at their last summary, wheels they wait for)."""
        walks = wheels = 0
        for entry in self._seen.values():
            if entry.summary is not None and not entry.summary.settled:
                walks += 1
                wheels += entry.summary.wanted
        return walks, wheels

    def __len__(self) -> int:
        return len(self._seen)
