"""The frontier: how far down a project's versions analysis must go for one host.

An installer takes the newest version it is offered. So the version that matters is
not a fixed window of the newest releases but the newest one that is still offered
once the newer ones have been hidden, and it moves down as reports come in. For one
host, `walk` goes down the versions pip would consider, newest first:

- a version with a kept file whose report is missing is *pending*: its unreported
  files are wanted, and it counts towards the walk as if it were offered;
- a version whose kept files all have the reports they need is *verified*;
- a version with nothing kept passes the walk down to the next one.

The walk stops after ``1 + keep`` versions that are offered or pending: the newest
version the host is offered, and ``keep`` more below it for capped and pinned
requirements. It is settled when nothing is wanted, and then ``offered`` is the
version a plain ``pip install`` picks, verified to fit.

`pip_choice` says which file a plain ``pip install <project>`` would take now, given
the verdicts as they stand. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.version import Version

from proxy.core.decide import Verdict
from proxy.core.models import File
from proxy.core.profile import HostProfile
from proxy.core.tags import ClientTags
from proxy.core.versions import file_version, wheel_tags

DEFAULT_KEEP = 3


@dataclass(frozen=True, slots=True)
class Frontier:
    wanted: tuple[File, ...]  # files to analyse next, newest version first
    pending: tuple[Version, ...]  # versions waiting for those reports
    verified: tuple[Version, ...]  # versions walked and offered with every report in
    offered: Version | None  # the newest version offered, once nothing newer is pending

    @property
    def settled(self) -> bool:
        return not self.wanted


def is_linux_platform(filename: str) -> bool:
    tags = wheel_tags(filename) if filename.endswith(".whl") else None
    return tags is not None and any("linux" in tag.platform for tag in tags)


def is_pure(filename: str) -> bool:
    tags = wheel_tags(filename) if filename.endswith(".whl") else None
    return tags is not None and all(tag.platform == "any" for tag in tags)


def needs_report(files: Sequence[File]) -> list[File]:
    """The files of a page whose verdict depends on a report.

    Linux platform wheels carry the ELF files analysis reads. A pure wheel matters
    where its version also ships Linux platform wheels: it is the fallback when those
    are hidden, and it may carry native code only for other systems.
    """
    linux_versions = {
        file_version(f.filename) for f in files if f.is_wheel and is_linux_platform(f.filename)
    }
    return [
        f
        for f in files
        if f.is_wheel
        and f.sha256
        and (
            is_linux_platform(f.filename)
            or (is_pure(f.filename) and file_version(f.filename) in linux_versions)
        )
    ]


def considered(file: File, profile: HostProfile) -> bool:
    """Whether pip would look at this file for an unpinned requirement."""
    if file.yanked:
        return False
    requires = file.requires_python
    if requires and profile.python is not None:
        return _python_fits(requires, *profile.python.value)
    return True


@lru_cache(maxsize=4096)
def _python_fits(requires: str, major: int, minor: int) -> bool:
    """Some patch release of this Python satisfies ``requires`` (pip checks the full
    version, which a profile does not carry)."""
    try:
        spec = SpecifierSet(requires)
    except InvalidSpecifier:
        return True  # pip ignores a specifier it cannot read
    return any(
        spec.contains(Version(f"{major}.{minor}.{patch}"), prereleases=True) for patch in (0, 99)
    )


def versions_newest_first(
    files: Iterable[File], profile: HostProfile, verdicts: Mapping[str, Verdict]
) -> list[tuple[Version, list[File]]]:
    """Versions pip would consider for an unpinned requirement, newest first.

    Pre-releases count only where the page offers no final release, as in pip: a final
    whose every file is hidden is not on the page this host gets, so pip takes a
    pre-release then, and the walk must read it.
    """
    grouped: dict[Version, list[File]] = defaultdict(list)
    for f in files:
        version = file_version(f.filename)
        if version is not None and considered(f, profile):
            grouped[version].append(f)
    finals = [
        v
        for v, members in grouped.items()
        if not v.is_prerelease and any(verdicts[f.filename].keep for f in members)
    ]
    versions = finals or list(grouped)
    return [(v, grouped[v]) for v in sorted(versions, reverse=True)]


def walk(
    files: Sequence[File],
    verdicts: Mapping[str, Verdict],
    unreported: Collection[str],
    profile: HostProfile,
    keep: int = DEFAULT_KEEP,
) -> Frontier:
    """``unreported``: names of files that need a report and have none yet."""
    wanted: list[File] = []
    pending: list[Version] = []
    verified: list[Version] = []
    offered: Version | None = None
    counted = 0
    for version, members in versions_newest_first(files, profile, verdicts):
        kept = [f for f in members if verdicts[f.filename].keep]
        waiting = [f for f in kept if f.filename in unreported]
        if waiting:
            wanted.extend(waiting)
            pending.append(version)
        elif kept:
            verified.append(version)
            if offered is None and not pending:
                offered = version
        else:
            continue
        counted += 1
        if counted > keep:
            break
    return Frontier(tuple(wanted), tuple(pending), tuple(verified), offered)


def pip_choice(
    files: Sequence[File], verdicts: Mapping[str, Verdict], profile: HostProfile, tags: ClientTags
) -> File | None:
    """The file a plain ``pip install <project>`` takes from the files kept now.

    The newest version with a kept file; in it, the wheel whose tag the client ranks
    best (when its tags are known), else any kept wheel, else the sdist.
    """
    for _, members in versions_newest_first(files, profile, verdicts):
        kept = [f for f in members if verdicts[f.filename].keep]
        if not kept:
            continue
        wheels = [f for f in kept if f.is_wheel]
        if not wheels:
            return kept[0]
        rank = {tag: i for i, tag in enumerate(tags.tags)}
        return min(wheels, key=lambda f: _best_rank(f.filename, rank))
    return None


def _best_rank(filename: str, rank: Mapping[Tag, int]) -> int:
    tags = wheel_tags(filename) or frozenset()
    return min((rank.get(t, len(rank)) for t in tags), default=len(rank))
