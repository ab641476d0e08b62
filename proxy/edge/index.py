"""The one interface every serving feature implements and wraps.

An index answers two questions: which projects exist, and what one project's page
holds for this request. Features (caching, upstream priority, rules, the host
filter, rewriting) are wrappers composed once at start-up in `proxy.edge.app`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from packaging.utils import NormalizedName

from proxy.core.models import Page, ProjectList
from proxy.core.profile import HostProfile

View = Literal["filtered", "universal"]


@dataclass(frozen=True, slots=True)
class Context:
    """What a request asks beyond the project name."""

    view: View = "filtered"
    profile: HostProfile = field(default_factory=HostProfile)


UNIVERSAL = Context(view="universal")


class Index(Protocol):
    async def projects(self) -> ProjectList: ...

    async def page(self, name: NormalizedName, ctx: Context) -> Page: ...
