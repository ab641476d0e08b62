"""Links to origins hostfit may not contact leave the page (one upstream's index wrapper).

A page may link files only on its upstream's file origins (`proxy.core.origins`). Any
other link is taken off the page before anything downstream can fetch it (hash
filling, metadata, analysis, downloads), with one log line per page revision, and is
kept in ``Page.withheld`` with the reason so that explain can say why it is hidden.
The outbound request hook refuses such requests anyway; this keeps them off the page.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from packaging.utils import NormalizedName

from proxy.core.lru import LRU
from proxy.core.models import Page
from proxy.core.origins import Origin, OriginPlan, Screened, screen
from proxy.edge.config import Settings, pip_default_files
from proxy.edge.index import Context, Index, IndexLayer
from proxy.edge.upstreams_config import plan_upstreams

log = logging.getLogger("hostfit.origins")

KEPT = 1024


def origin_plan(settings: Settings) -> OriginPlan:
    """What this server may contact and what it sends each origin: from its settings, the
    environment (secrets named by ``*_env`` keys, ``NETRC``) and what pip says of its default."""
    return plan_upstreams(settings, os.environ, pip_default_files())


class OriginFilter(IndexLayer):
    def __init__(self, inner: Index, allowed: frozenset[Origin]) -> None:
        super().__init__(inner)
        self.allowed = allowed
        self._screened: LRU[tuple[str, str, str], Screened] = LRU(KEPT)

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        page = await self.inner.page(name, ctx)
        key = (page.upstream, page.name, page.revision)
        screened = self._screened.get(key)
        if screened is None:
            screened = screen(page.files, self.allowed)
            if screened.withheld:
                log.warning("%s: left off the page: %s", page.name, _summary(screened))
            self._screened.put(key, screened)
        if not screened.withheld:
            return page
        return replace(page, files=screened.files, withheld=screened.withheld)


def _summary(screened: Screened) -> str:
    """Each refusal once, with how many files it took off and one of them."""
    by_reason: dict[str, list[str]] = {}
    for f, why in screened.withheld:
        by_reason.setdefault(why, []).append(f.filename)
    return "; ".join(
        f"{why} ({len(names)} file(s), e.g. {names[0]})" for why, names in by_reason.items()
    )
