"""The one interface every serving feature implements and wraps: the contract.

An index answers two questions: which projects exist, and what one project's page
holds for this request. Features are layers, each wrapping the one below, one module each
in `proxy.edge.layers`, stacked once at start-up from one ordered list
(`proxy.edge.services.upstreams`, then `proxy.edge.services.STACK`); from the bottom:

    CachedUpstream  one upstream, its pages cached and revalidated   (both views)
    OriginFilter    links to origins not allowed are dropped          (both views)
    PriorityIndex   a project is taken whole from the first upstream
                    that has it; a failing one is never skipped       (both views)
      or RoutedIndex  where upstreams own projects: a routed project
                    only from its owner, or its family merged
                    (FamilyIndex); the rest by priority               (both views)
    HashFillIndex   files published without sha256 are hashed once    (both views)
    PolicyIndex     the operator's deny/allow/quarantine rules        (both views)
    HostFilter      only files that load on the host, one build per
                    version; frontier walks                           (filtered only)
    RewriteIndex    rewritten wheels in place of their originals      (filtered only)
    VariantIndex    each version's variants.json linked beside the page;
                    per host, variant wheels it cannot use dropped,
                    with their labels in the served file              (both views)
    TurnMemo        a page asked for again in the same turn of the event
                    loop is the answer made for it in that turn       (both views)

`projects()` returns the root listing: names as the upstream spelt them; a layer may
only remove names (policies), never invent one. Where several upstreams make it, one
that fails leaves its names out (logged) while another answers (`each_listing`): a root
list short of one upstream's names beats none, and a page is never taken from another
upstream because of it.

`page(name, ctx)`, for a name already normalised (PEP 503):
- returns a `Page` whose files are a subset of the layer below's, or replacements of
  them (rewrites), never files from elsewhere; every file keeps its upstream keys.
- ``page.revision`` changes whenever the page's content may have changed: a layer that
  changes the files derives its revision from the one below plus what it changed (a
  digest of the kept names, the rules' digest, ...), so renderings and ETags keyed by
  revision are never stale. Equal revision means equal content.
- ``page.provisional`` is set when the answer is expected to change soon (reports
  still being made); callers cache such a page briefly.
- raises `proxy.errors.NotFound` when no upstream has the project (a 404 upstream, or
  every upstream of the priority list); never for an upstream that failed, which
  raises `UpstreamError`/`UpstreamTimeout` (502/504, or a stale page with a warning
  when one is cached). Errors become HTTP statuses in one place, `proxy.edge.app`.
- ``ctx.view == "universal"`` asks for the page unfiltered and unmodified by the host:
  the layers marked "filtered only" pass it through untouched.
- what a layer does for each request beyond the answer (a metric counted per page
  served) it does through `per_request`, because `TurnMemo` (the top of the stack) may
  hand one answer to several requests of the same turn of the event loop.
  Code that changes what a page holds (an admin's purge, a report dropped) does not
  ask the top of the stack for that page before it yields: it could be handed the
  answer made earlier in the same turn.

Files and `.metadata` are not served through the stack: `proxy.edge.app.project_file`
asks the stack for the universal page, finds the file on it (or, for a rewritten wheel,
asks the rewrite layer, `RewriteIndex.file`, for the file made from one of its files),
then the file service streams it, or the metadata service serves its `.metadata`, and
the download gate (`proxy.edge.gate`) judges it for the host. A file is only ever
served when the page the stack gives for it lists it (or its original), so the origin
filter and the policies hold for downloads too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from packaging.utils import NormalizedName

from proxy.core.models import Page, ProjectList
from proxy.core.profile import HostProfile
from proxy.errors import HostfitError

log = logging.getLogger("hostfit.upstream")

View = Literal["filtered", "universal"]
A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class Context:
    """What a request asks beyond the project name."""

    view: View = "filtered"
    profile: HostProfile = field(default_factory=HostProfile)


UNIVERSAL = Context(view="universal")


class Index(Protocol):
    async def projects(self) -> ProjectList: ...

    async def page(self, name: NormalizedName, ctx: Context) -> Page: ...


Effect = tuple[Callable[[Any], None], Any]
# The per-request effects of the page being made (`TurnMemo`), where one is being made.
_EFFECTS: ContextVar[list[Effect] | None] = ContextVar("hostfit.page_effects", default=None)


@contextlib.contextmanager
def effects_collected() -> Iterator[list[Effect]]:
    """The `per_request` effects done while a page is made within, in order."""
    effects: list[Effect] = []
    token = _EFFECTS.set(effects)
    try:
        yield effects
    finally:
        _EFFECTS.reset(token)


def per_request(effect: Callable[[A], None], argument: A) -> None:
    """``effect(argument)`` now, for this request, and again for each request of the same
    turn of the event loop that `TurnMemo` hands this answer to."""
    effect(argument)
    effects = _EFFECTS.get()
    if effects is not None:
        effects.append((effect, argument))


class IndexLayer:
    """A layer over ``inner`` that passes through what it does not change: a subclass
    overrides only the question it answers differently."""

    def __init__(self, inner: Index) -> None:
        self.inner = inner

    async def projects(self) -> ProjectList:
        return await self.inner.projects()

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        return await self.inner.page(name, ctx)


async def each_listing(indexes: Sequence[Index]) -> list[ProjectList | None]:
    """Each index's root listing, in order; None for one that failed while another
    answered. When every one fails, the first failure is raised."""
    found: list[ProjectList | None] = []
    failures: list[HostfitError] = []
    for index in indexes:
        try:
            found.append(await index.projects())
        except HostfitError as exc:
            failures.append(exc)
            found.append(None)
    if failures and all(listing is None for listing in found):
        raise failures[0]
    for failure in failures:
        log.warning("project list served without one upstream's names: %s", failure)
    return found


class Merged:
    """A root list made from others, made again only when one of them is another object
    than last time: the lists below are kept for the page TTL, and merging a big index's
    (900,000 names, each canonicalised) takes a second."""

    def __init__(self) -> None:
        self._last: tuple[tuple[object, ...], ProjectList] | None = None

    def get(self, sources: Sequence[object], merge: Callable[[], ProjectList]) -> ProjectList:
        last = self._last
        if (
            last is not None
            and len(last[0]) == len(sources)
            and all(a is b for a, b in zip(last[0], sources, strict=True))
        ):
            return last[1]
        merged = merge()
        self._last = (tuple(sources), merged)
        return merged
