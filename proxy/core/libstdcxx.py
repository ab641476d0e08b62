"""Which CXXABI a libstdc++ provides, given the newest GLIBCXX it defines.

Host profiles carry only ``glibcxx``; wheels may also need ``CXXABI_1.3.x``. Both
labels grow together release by release (data: ``proxy/data/libstdcxx-abi.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from proxy.core import datafiles
from proxy.errors import ConfigError

LIBSTDCXX_DATA_FILE = "libstdcxx-abi.json"


@dataclass(frozen=True, slots=True)
class Release:
    gcc: tuple[int, ...]
    glibcxx: tuple[int, ...]
    cxxabi: tuple[int, ...]
    source: str


@dataclass(frozen=True, slots=True)
class LibstdcxxTable:
    releases: tuple[Release, ...]  # oldest first

    def cxxabi_for(self, glibcxx: tuple[int, ...]) -> tuple[tuple[int, ...], bool] | None:
        """Newest CXXABI of a libstdc++ whose newest GLIBCXX is ``glibcxx``.

        The flag says whether it is exact: past the table's last release a library
        has at least that release's CXXABI, maybe more. ``None`` before the first.
        """
        known = [r for r in self.releases if r.glibcxx <= glibcxx]
        if not known:
            return None
        return known[-1].cxxabi, glibcxx <= self.releases[-1].glibcxx


def parse_libstdcxx_table(data: Any) -> LibstdcxxTable:
    releases: list[Release] = []
    for i, item in enumerate(datafiles.entries(data, LIBSTDCXX_DATA_FILE, "releases")):
        where = f"{LIBSTDCXX_DATA_FILE}: releases[{i}]"
        release = Release(
            gcc=datafiles.version(item, "gcc", where),
            glibcxx=datafiles.version(item, "glibcxx", where),
            cxxabi=datafiles.version(item, "cxxabi", where),
            source=item["source"],
        )
        if releases and not (
            release.gcc > releases[-1].gcc
            and release.glibcxx >= releases[-1].glibcxx
            and release.cxxabi >= releases[-1].cxxabi
        ):
            raise ConfigError(f"{where}: not newer than the release before it")
        releases.append(release)
    return LibstdcxxTable(tuple(releases))


@cache
def libstdcxx_table() -> LibstdcxxTable:
    return parse_libstdcxx_table(datafiles.read_json(LIBSTDCXX_DATA_FILE))
