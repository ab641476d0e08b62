"""manylinux/musllinux policies as data: which symbol versions each tag lets a binary need.

The table (``proxy/data/manylinux-policy.json``) gives, per policy and architecture,
the newest GLIBC, GLIBCXX, CXXABI and GCC version a host of that policy provides,
plus the few non-numeric version names it defines (``CXXABI_TM_1``). Named glibc
versions newer than every policy (``GLIBC_ABI_GNU2_TLS``) are listed on their own,
with the release that first defines them (``glibc_named``). Each entry cites one of
the file's ``sources``. ``PolicyTable.from_json`` validates everything and names the
exact place of any fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from proxy.core import datafiles
from proxy.core.dotted import Dotted, parse_dotted
from proxy.errors import ConfigError

POLICY_DATA_FILE = "manylinux-policy.json"

PREFIXES = ("GLIBC", "GLIBCXX", "CXXABI", "GCC")
ARCHES = frozenset(
    {"x86_64", "i686", "aarch64", "ppc64", "ppc64le", "s390x", "armv7l", "riscv64", "loongarch64"}
)
_VERSION_NAME = re.compile(r"^(GLIBCXX|GLIBC|CXXABI|GCC)_(.+)$")
_NUMERIC = re.compile(r"^\d+(\.\d+)*$")
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)$")
_MUSLLINUX = re.compile(r"^musllinux_(\d+)_(\d+)$")
_PLATFORM = re.compile(r"^(manylinux|musllinux)_(\d+)_(\d+)_(.+)$")
_LEGACY_PLATFORM = re.compile(r"^(manylinux1|manylinux2010|manylinux2014)_(.+)$")

Version = Dotted


class PolicyError(ConfigError):
    """The policy table is malformed; the message names the faulty entry."""


def split_version_name(name: str) -> tuple[str, str] | None:
    """``"GLIBCXX_3.4.21"`` -> ``("GLIBCXX", "3.4.21")``; None for prefixes no policy governs."""
    match = _VERSION_NAME.match(name)
    return (match.group(1), match.group(2)) if match else None


def is_numeric(version: str) -> bool:
    return bool(_NUMERIC.match(version))


@dataclass(frozen=True, slots=True)
class GlibcPolicy:
    tag: str
    glibc: tuple[int, int]
    aliases: tuple[str, ...]
    ceilings: Mapping[str, Mapping[str, Version]]  # arch -> prefix -> newest version
    named: Mapping[str, frozenset[str]]  # arch -> non-numeric version names provided
    source: str

    def covers(self, arch: str, version_names: Iterable[str]) -> bool:
        ceilings = self.ceilings.get(arch)
        if ceilings is None:
            return False
        named = self.named.get(arch, frozenset())
        for name in version_names:
            split = split_version_name(name)
            if split is None:
                continue
            prefix, version = split
            if is_numeric(version):
                ceiling = ceilings.get(prefix)
                if ceiling is None or parse_dotted(version) > ceiling:
                    return False
            elif name not in named:
                return False
        return True


@dataclass(frozen=True, slots=True)
class MuslPolicy:
    tag: str
    musl: tuple[int, int]
    arches: frozenset[str]
    source: str


@dataclass(frozen=True, slots=True)
class PolicyTable:
    manylinux: tuple[GlibcPolicy, ...]  # oldest glibc first
    musllinux: tuple[MuslPolicy, ...]  # oldest musl first
    # Named glibc versions no policy lists yet: the release that first defines each.
    glibc_named: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def glibc_tag(self, arch: str, version_names: Iterable[str]) -> GlibcPolicy | None:
        """The most widely compatible policy covering every version named."""
        names = tuple(version_names)
        for policy in self.manylinux:
            if policy.covers(arch, names):
                return policy
        return None

    def musl_tag(self, arch: str) -> MuslPolicy | None:
        # musl has no symbol versions: nothing in a binary distinguishes musl releases.
        return next((p for p in self.musllinux if arch in p.arches), None)

    def glibc_naming(self, name: str) -> tuple[int, int] | None:
        """The glibc release that first defines this non-numeric version name, on any
        architecture (``GLIBC_ABI_DT_RELR``: 2.36), or None where no table names it."""
        for policy in self.manylinux:
            if any(name in names for names in policy.named.values()):
                return policy.glibc
        return self.glibc_named.get(name)

    def glibc_after_known(self) -> tuple[int, int]:
        """The first glibc release newer than every release the tables know: all a
        named version they do not know can be said to need (every release up to the
        newest known is known to lack it; glibc numbers its releases 2.N)."""
        newest = max([p.glibc for p in self.manylinux] + list(self.glibc_named.values()))
        return newest[0], newest[1] + 1

    def glibc_of_alias(self, alias: str) -> tuple[int, int] | None:
        for policy in self.manylinux:
            if alias in policy.aliases:
                return policy.glibc
        return None

    def claim(self, platform: str) -> tuple[str, tuple[int, int], str] | None:
        """What a platform tag claims: ``manylinux2014_x86_64`` -> ``("manylinux", (2, 17),
        "x86_64")``, ``musllinux_1_2_aarch64`` -> ``("musllinux", (1, 2), "aarch64")``;
        None for any other tag (``linux_x86_64``, ``any``, another system's)."""
        match = _PLATFORM.match(platform)
        if match:
            return match.group(1), (int(match.group(2)), int(match.group(3))), match.group(4)
        legacy = _LEGACY_PLATFORM.match(platform)
        if legacy:
            glibc = self.glibc_of_alias(legacy.group(1))
            if glibc is not None:
                return "manylinux", glibc, legacy.group(2)
        return None

    @classmethod
    def from_json(cls, data: Any, name: str = POLICY_DATA_FILE) -> PolicyTable:
        manylinux = tuple(
            _glibc_policy(item, f"manylinux[{i}]")
            for i, item in enumerate(datafiles.entries(data, name, "manylinux"))
        )
        musllinux = tuple(
            _musl_policy(item, f"musllinux[{i}]")
            for i, item in enumerate(datafiles.entries(data, name, "musllinux"))
        )
        _check_order([p.glibc for p in manylinux], "manylinux")
        _check_order([p.musl for p in musllinux], "musllinux")
        _check_monotonic(manylinux)
        glibc_named = _glibc_named(data, name, manylinux)
        return cls(manylinux=manylinux, musllinux=musllinux, glibc_named=glibc_named)


@cache
def policy_table() -> PolicyTable:
    """The shipped table, validated once per process."""
    return PolicyTable.from_json(datafiles.read_json(POLICY_DATA_FILE))


def _glibc_policy(data: Any, where: str) -> GlibcPolicy:
    item = _mapping(data, where)
    tag = _string(item.get("tag"), f"{where}.tag")
    match = _MANYLINUX.match(tag)
    if not match:
        raise PolicyError(f"{where}.tag: {tag!r} is not manylinux_X_Y")
    glibc = (int(match.group(1)), int(match.group(2)))
    aliases = tuple(
        _string(a, f"{where}.aliases[{i}]")
        for i, a in enumerate(_list(item.get("aliases", []), f"{where}.aliases"))
    )
    ceilings: dict[str, dict[str, Version]] = {}
    named: dict[str, frozenset[str]] = {}
    arches = _mapping(item.get("arches"), f"{where}.arches")
    if not arches:
        raise PolicyError(f"{where}.arches: empty")
    for arch, body in arches.items():
        here = f"{where}.arches.{arch}"
        if arch not in ARCHES:
            raise PolicyError(f"{here}: unknown architecture")
        entry = _mapping(body, here)
        ceilings[arch] = {}
        for prefix, version in _mapping(entry.get("ceilings"), f"{here}.ceilings").items():
            text = _string(version, f"{here}.ceilings.{prefix}")
            if prefix not in PREFIXES:
                raise PolicyError(f"{here}.ceilings.{prefix}: unknown prefix")
            if not is_numeric(text):
                raise PolicyError(f"{here}.ceilings.{prefix}: {text!r} is not a dotted version")
            ceilings[arch][prefix] = parse_dotted(text)
        glibc_ceiling = ceilings[arch].get("GLIBC")
        if glibc_ceiling is None or glibc_ceiling[0] != glibc[0]:
            raise PolicyError(f"{here}.ceilings.GLIBC: must be a {glibc[0]}.x version")
        names = frozenset(
            _string(n, f"{here}.named[{i}]")
            for i, n in enumerate(_list(entry.get("named", []), f"{here}.named"))
        )
        for name in names:
            split = split_version_name(name)
            if split is None or is_numeric(split[1]):
                raise PolicyError(f"{here}.named: {name!r} is not a non-numeric version name")
        named[arch] = names
    return GlibcPolicy(
        tag=tag,
        glibc=glibc,
        aliases=aliases,
        ceilings=ceilings,
        named=named,
        source=item["source"],
    )


def _glibc_named(
    data: Any, name: str, manylinux: tuple[GlibcPolicy, ...]
) -> dict[str, tuple[int, int]]:
    if "glibc_named" not in data:
        return {}
    found: dict[str, tuple[int, int]] = {}
    for i, item in enumerate(datafiles.entries(data, name, "glibc_named")):
        where = f"glibc_named[{i}]"
        version_name = _string(item.get("name"), f"{where}.name")
        split = split_version_name(version_name)
        if split is None or split[0] != "GLIBC" or is_numeric(split[1]):
            raise PolicyError(f"{where}.name: {version_name!r} is not a named GLIBC version")
        if version_name in found or any(
            version_name in names for policy in manylinux for names in policy.named.values()
        ):
            raise PolicyError(f"{where}.name: {version_name!r} is listed already")
        glibc = _string(item.get("glibc"), f"{where}.glibc")
        release = re.fullmatch(r"2\.(\d+)", glibc)
        if release is None:
            raise PolicyError(f"{where}.glibc: {glibc!r} is not a 2.N glibc release")
        found[version_name] = (2, int(release.group(1)))
    return found


def _musl_policy(data: Any, where: str) -> MuslPolicy:
    item = _mapping(data, where)
    tag = _string(item.get("tag"), f"{where}.tag")
    match = _MUSLLINUX.match(tag)
    if not match:
        raise PolicyError(f"{where}.tag: {tag!r} is not musllinux_X_Y")
    arches = frozenset(
        _string(a, f"{where}.arches[{i}]")
        for i, a in enumerate(_list(item.get("arches"), f"{where}.arches"))
    )
    if not arches or not arches <= ARCHES:
        raise PolicyError(f"{where}.arches: unknown or no architectures {sorted(arches - ARCHES)}")
    return MuslPolicy(
        tag=tag,
        musl=(int(match.group(1)), int(match.group(2))),
        arches=arches,
        source=item["source"],
    )


def _check_order(versions: list[tuple[int, int]], where: str) -> None:
    if not versions:
        raise PolicyError(f"{where}: no policies")
    for i in range(1, len(versions)):
        if versions[i] <= versions[i - 1]:
            raise PolicyError(f"{where}[{i}]: policies must be in ascending order")


def _check_monotonic(policies: tuple[GlibcPolicy, ...]) -> None:
    """A newer policy never provides less than an older one on the same architecture."""
    for i in range(1, len(policies)):
        old, new = policies[i - 1], policies[i]
        for arch, ceilings in new.ceilings.items():
            for prefix, ceiling in old.ceilings.get(arch, {}).items():
                if ceilings.get(prefix, ()) < ceiling:
                    raise PolicyError(
                        f"manylinux[{i}].arches.{arch}.ceilings.{prefix}: older than in {old.tag}"
                    )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{where}: expected a string, got {type(value).__name__}")
    return value
