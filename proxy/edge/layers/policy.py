"""The operator's policies as an index wrapper: the files they hide leave the page.

Policies apply to every view, the universal one included: they are the fleet's
policy, not a judgement about one host. The served page's revision carries the
rules digest and the kept files, so every cache keyed by revision (decisions,
renderings) follows a rules change or a file leaving quarantine. The outcome for a
page is cached until the rules change or quarantine releases a file.

Files left off further down because they may not be fetched (``Page.withheld``, see
`proxy.edge.layers.origins`) are reported here beside the policies' own, so that explain
lists them as hidden with their reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from packaging.utils import NormalizedName, canonicalize_name

from proxy.core.decide import Reason
from proxy.core.lru import LRU
from proxy.core.models import Page, ProjectList
from proxy.core.revision import revised
from proxy.core.rule_policy import PolicyOutcome, apply_policies, listed
from proxy.core.rules import Rules
from proxy.edge.index import Context, Index, IndexLayer, Merged

KEPT = 1024


@dataclass(frozen=True, slots=True)
class Filtered:
    page: Page  # as served
    before: Page  # as the inner index gave it
    hidden: Mapping[str, tuple[Reason, ...]]
    until: datetime | None


def utc_now() -> datetime:
    return datetime.now(UTC)


class PolicyIndex(IndexLayer):
    def __init__(
        self, inner: Index, rules: Callable[[], Rules], clock: Callable[[], datetime] = utc_now
    ) -> None:
        super().__init__(inner)
        self.rules = rules
        self.clock = clock
        self._cache: LRU[tuple[str, ...], Filtered] = LRU(KEPT)
        self._served: LRU[tuple[str, ...], Filtered] = LRU(KEPT)
        self._listed = Merged()  # the root list as the rules leave it

    async def projects(self) -> ProjectList:
        projects = await self.inner.projects()
        rules = self.rules()
        if not rules.filters:
            return projects

        def kept() -> ProjectList:
            names = tuple(n for n in projects.names if listed(rules, canonicalize_name(n)))
            return replace(projects, names=names)

        return self._listed.get((projects, rules), kept)

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        page = await self.inner.page(name, ctx)
        rules = self.rules()
        if not rules.filters and not page.withheld:
            return page
        return self._filtered(page, rules).page

    def hidden_from(self, page: Page) -> Filtered | None:
        """For explain: what the page served under this revision hid, and why."""
        return self._served.get((page.name, page.revision))

    def _filtered(self, page: Page, rules: Rules) -> Filtered:
        now = self.clock()
        key = (page.name, page.upstream, page.revision, rules.digest)
        cached = self._cache.get(key)
        if cached is not None and (cached.until is None or now < cached.until):
            return cached
        outcome: PolicyOutcome = apply_policies(rules, page.name, page.files, now)
        kept = tuple(f for f in page.files if f.filename not in outcome.hidden)
        revision = revised(page.revision, "rules", [rules.digest, *(f.filename for f in kept)])
        served = replace(page, files=kept, revision=revision, withheld=())
        hidden: dict[str, tuple[Reason, ...]] = {
            f.filename: (Reason("origin", why),) for f, why in page.withheld
        }
        hidden.update(outcome.hidden)
        before = replace(page, files=page.files + tuple(f for f, _ in page.withheld), withheld=())
        result = Filtered(served, before, hidden, outcome.until)
        self._cache.put(key, result)
        self._served.put((page.name, revision), result)
        return result
