"""Which CXXABI a libstdc++ provides, and which GCC it comes from, given the newest
GLIBCXX it defines.

Host profiles carry only ``glibcxx``; wheels may also need ``CXXABI_1.3.x``, and
libgcc_s's ``GCC_x`` versions. The labels grow together release by release (data:
``proxy/data/libstdcxx-abi.json``), and a system's libgcc_s comes from the GCC its
libstdc++ comes from (both are built from one GCC source tree and shipped together).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from proxy.core import datafiles
from proxy.core.dotted import Dotted
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

    def gcc_before(self, glibcxx: tuple[int, ...]) -> tuple[int, ...] | None:
        """A GCC release older than which a libstdc++ whose newest GLIBCXX is ``glibcxx``
        must be: the first release with a newer GLIBCXX. ``None`` where the table knows
        none (at or past its last release, the library may be of any newer GCC)."""
        return next((r.gcc for r in self.releases if r.glibcxx > glibcxx), None)


def first_gcc_with(node: Dotted) -> Dotted:
    """The first GCC release whose libgcc_s can define the symbol version ``GCC_<node>``.

    libgcc names a version node after the GCC version in development when it was added.
    Since GCC 5 that is ``N.0.0`` (``N.0`` on some targets: aarch64's ``GCC_11.0``) for
    major N, whose first release is N.1 (https://gcc.gnu.org/develop.html#num_scheme):
    ``GCC_7.0.0`` came with GCC 7.1.0. Before GCC 5 the node's version is a release's.
    """
    if node[0] >= 5 and not any(node[1:]):
        return (node[0], 1, 0)
    return node


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
