"""A family of upstreams, one per build, served as one page (`proxy.core.families`).

Every member that has the project is asked at once; their files are merged into one
page, each file remembering its upstream and, where the member's table names one, its
build. Which build a host gets is the host filter's choice; this layer only merges, so
the universal view lists every build.

- A member that fails fails the page (502/504, or its stale page with a warning): its
  builds would otherwise vanish without a word, and hosts be handed another build.
- A member without the project adds nothing; none having it is a 404.
- The same filename from two members: the same bytes (equal sha256) are one file that
  belongs to no single build; different bytes are a conflict, and the file of the
  member listed first is kept (logged once per page revision).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from proxy.core.families import Family, build_label
from proxy.core.lru import LRU
from proxy.core.models import File, Page, ProjectList
from proxy.core.redact import redact
from proxy.core.revision import digest
from proxy.edge.index import Context, Index, Merged, each_listing
from proxy.errors import NotFound

log = logging.getLogger("hostfit.family")

LOGGED = 1024


@dataclass(frozen=True)
class Member:
    index: Index
    url: str
    build: str | None = None  # the table's ``build``: what its unlabelled files are built for


class FamilyIndex:
    def __init__(self, name: str, members: Sequence[Member]) -> None:
        self.name = name
        self.members = tuple(members)
        self._logged: LRU[tuple[str, str], None] = LRU(LOGGED)
        self._merged = Merged()

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        answers = await asyncio.gather(
            *(m.index.page(name, ctx) for m in self.members), return_exceptions=True
        )
        found: list[tuple[Member, Page]] = []
        for member, answer in zip(self.members, answers, strict=True):
            if isinstance(answer, NotFound):
                continue
            if isinstance(answer, BaseException):
                raise answer
            found.append((member, answer))
        if not found:
            urls = ", ".join(redact(m.url) for m in self.members)
            raise NotFound(f"project {name!r} not found in family {self.name!r} ({urls})")
        return self._merge(name, found)

    def _merge(self, name: NormalizedName, found: list[tuple[Member, Page]]) -> Page:
        files: dict[str, File] = {}
        sources: dict[str, str] = {}
        labels: dict[str, str] = {}
        shared: set[str] = set()
        conflicts: list[str] = []
        order: list[str] = []
        for member, page in found:
            url = redact(member.url)
            if member.build is not None:
                order.append(member.build)
            for f in page.files:
                first = files.get(f.filename)
                if first is None:
                    files[f.filename] = f
                    sources[f.filename] = url
                    if member.build is not None:
                        labels[f.filename] = member.build
                    elif (label := build_label(f.filename, None)) is not None:
                        order.append(label)
                elif first.sha256 is not None and first.sha256 == f.sha256:
                    shared.add(f.filename)
                else:
                    conflicts.append(f"{f.filename} ({url})")
        for filename in shared:
            labels.pop(filename, None)
        revision = digest(f"{redact(m.url)} {p.revision}" for m, p in found)
        if conflicts:
            self._log_conflicts(name, revision, conflicts)
        first_page = found[0][1]
        warnings = [p.warning for _, p in found if p.warning]
        meta = dict(first_page.meta)
        listed = [p.meta["versions"] for _, p in found if isinstance(p.meta.get("versions"), list)]
        if listed:
            # PEP 700: every version the merged page has files of, not just the first's.
            meta["versions"] = _versions(v for versions in listed for v in versions)
        return replace(
            first_page,
            meta=meta,
            files=tuple(files.values()),
            upstream=f"family {self.name}: " + ", ".join(redact(m.url) for m, _ in found),
            revision=revision,
            warning=warnings[0] if warnings else None,
            provisional=any(p.provisional for _, p in found),
            withheld=tuple(w for _, p in found for w in p.withheld),
            family=Family(self.name, tuple(dict.fromkeys(order)), labels, sources),
        )

    def _log_conflicts(self, name: str, revision: str, conflicts: list[str]) -> None:
        if not self._logged.add((name, revision), None):
            return
        log.warning(
            "%s: family %s: %d file(s) listed again with other bytes, the first kept: %s",
            name, self.name, len(conflicts), "; ".join(conflicts[:5]),
        )  # fmt: skip

    async def projects(self) -> ProjectList:
        listings = await each_listing([member.index for member in self.members])

        def merge() -> ProjectList:
            seen: dict[str, None] = {}
            for listing in listings:
                seen.update(dict.fromkeys(listing.names if listing is not None else ()))
            return ProjectList(names=tuple(seen))

        return self._merged.get(listings, merge)


def _versions(values: Iterable[object]) -> list[object]:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique, key=lambda v: Version(str(v)))
    except InvalidVersion:
        return unique
