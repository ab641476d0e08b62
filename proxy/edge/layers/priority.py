"""Several upstreams in priority order: a project comes whole from the first that has it.

Pages are never merged file by file, so a public project cannot shadow a private
one of the same name. A failing upstream is not skipped either: falling through
to a lower-priority index when a private one is down is exactly the
dependency-confusion hole this ordering closes.
"""

from __future__ import annotations

from collections.abc import Sequence

from packaging.utils import NormalizedName, canonicalize_name

from proxy.core.models import Page, ProjectList
from proxy.edge.index import Context, Index, Merged, each_listing
from proxy.errors import NotFound


class PriorityIndex:
    def __init__(self, indexes: Sequence[Index]) -> None:
        self.indexes = tuple(indexes)
        self._merged = Merged()

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        for index in self.indexes:
            try:
                return await index.page(name, ctx)
            except NotFound:
                continue
        raise NotFound(f"project {name!r} not found on any upstream")

    async def projects(self) -> ProjectList:
        listings = await each_listing(self.indexes)

        def merge() -> ProjectList:
            seen: dict[str, str] = {}
            for listing in listings:
                for listed in listing.names if listing is not None else ():
                    seen.setdefault(canonicalize_name(listed), listed)
            return ProjectList(names=tuple(seen.values()))

        return self._merged.get(listings, merge)
