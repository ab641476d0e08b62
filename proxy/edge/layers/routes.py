"""Routes over the upstreams: a routed project is asked of its owner only (`proxy.core.routes`).

- A project an upstream's ``projects`` match is asked of that upstream alone, or of its
  family's members merged (`FamilyIndex`). Its owner's 404 is the answer, and so is its
  owner's failure: nothing else is asked, so no other index can stand in for it.
- Every other project goes by priority over the upstreams without ``projects``
  (`PriorityIndex`).
- The root listing holds each upstream's names that it serves.

With no routes configured this layer is not stacked at all: `PriorityIndex` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from packaging.utils import NormalizedName, canonicalize_name

from proxy.core.models import Page, ProjectList
from proxy.core.redact import redact
from proxy.core.routes import Routes
from proxy.edge.index import Context, Index, Merged, each_listing
from proxy.edge.layers.family import FamilyIndex, Member
from proxy.edge.layers.priority import PriorityIndex
from proxy.errors import NotFound


@dataclass(frozen=True)
class Upstream:
    index: Index
    url: str
    build: str | None = None  # a family member's ``build`` key


class RoutedIndex:
    def __init__(self, routes: Routes, upstreams: Sequence[Upstream]) -> None:
        self.routes = routes
        self.upstreams = tuple(upstreams)
        self._merged = Merged()
        self.priority = PriorityIndex([self.upstreams[i].index for i in routes.unrouted])
        self._families: dict[tuple[int, ...], FamilyIndex] = {}

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        owner = self.routes.owner(name)
        if owner is None:
            if not self.routes.unrouted:
                raise NotFound(f"project {name!r} is routed to no upstream")
            return await self.priority.page(name, ctx)
        if owner.family is None:
            (position,) = owner.upstreams
            try:
                return await self.upstreams[position].index.page(name, ctx)
            except NotFound:
                url = redact(self.upstreams[position].url)
                raise NotFound(
                    f"project {name!r} is routed to {url} (projects: {owner.pattern!r}),"
                    " which does not have it"
                ) from None
        family = self._families.get(owner.upstreams)
        if family is None:
            members = [
                Member(self.upstreams[i].index, self.upstreams[i].url, self.upstreams[i].build)
                for i in owner.upstreams
            ]
            family = self._families[owner.upstreams] = FamilyIndex(owner.family, members)
        return await family.page(name, ctx)

    async def projects(self) -> ProjectList:
        listings = await each_listing([upstream.index for upstream in self.upstreams])

        def merge() -> ProjectList:
            seen: dict[str, str] = {}
            for position, listing in enumerate(listings):
                for listed in listing.names if listing is not None else ():
                    if self.routes.lists(position, listed):
                        seen.setdefault(canonicalize_name(listed), listed)
            return ProjectList(names=tuple(seen.values()))

        return self._merged.get(listings, merge)
