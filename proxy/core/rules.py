"""Rules: what operators say their fleet may install, and what hostfit knows that binaries
cannot tell. The schema is documented in ``rules/README.md``.

`load_rules` takes TOML texts by file name (the edge reads the files) and returns one
frozen `Rules` value, or raises `ConfigError` naming the file, the key and what is
wrong: ``rules/policy.toml: deny[2].version: invalid specifier '>>1'``. Nothing here
reads a clock or a file; the shipped knowledge in ``proxy/data`` is program data, read
like the other data tables.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidName, NormalizedName, canonicalize_name
from packaging.version import Version

from proxy.core.report import Requires
from proxy.errors import ConfigError, HostfitError

SHIPPED_FILES = ("project-facts.toml", "metadata-fixes.toml")
SHIPPED_PREFIX = "proxy/data/"
Keep = Literal["keep", "hide"]

_TABLES = ("sources", "defaults", "quarantine", "platforms", "knowledge")
_ARRAYS = ("deny", "allow", "pin", "fact", "retag", "metadata", "best_variant")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION_SECONDS = 100 * 366 * 86400
_PLATFORM_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]!]+$")
_DOTTED = re.compile(r"^\d+(?:\.\d+)*$")
FACT_KEYS = ("x86_64_level", "cuda_major", "glibc", "glibcxx")


@dataclass(frozen=True, slots=True)
class Match:
    """Which files an entry is about: one project (None: every project), some versions."""

    project: NormalizedName | None
    versions: SpecifierSet | None = None

    def covers(self, project: str, version: Version | None) -> bool:
        if self.project is not None and self.project != project:
            return False
        if self.versions is None:
            return True
        # Pre-releases are versions like any other here: a rule about "<2" covers 1.9rc1.
        return version is not None and self.versions.contains(version, prereleases=True)

    def describe(self) -> str:
        name = self.project or "every project"
        return f"{name} {self.versions}" if self.versions else name


@dataclass(frozen=True, slots=True)
class Deny:
    where: str
    match: Match
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Allow:
    where: str
    match: Match


@dataclass(frozen=True, slots=True)
class Pin:
    where: str
    match: Match


@dataclass(frozen=True, slots=True)
class Fact:
    """Something about a project's binaries that reading them cannot reveal: a need they
    have (``requires``), or that their CUDA builds load and run on a host with no NVIDIA
    driver, on the CPU (``runs_without_driver``: they need a CUDA major only to use a GPU)."""

    where: str
    match: Match
    requires: Requires
    note: str
    source: str  # the citation itself, from the file's [sources]
    shipped: bool = False
    runs_without_driver: bool = False


@dataclass(frozen=True, slots=True)
class Retag:
    where: str
    match: Match


@dataclass(frozen=True, slots=True)
class BestVariant:
    """Offer installers that cannot read wheel variants (PEP 825) the variant that fits the
    host best, rewritten under a name without a label."""

    where: str
    match: Match


@dataclass(frozen=True, slots=True)
class MetadataFix:
    where: str
    match: Match
    add_requires: tuple[str, ...] = ()
    remove_requires: frozenset[NormalizedName] = frozenset()
    requires_python: str | None = None  # None: unchanged; "": removed
    source: str = ""
    shipped: bool = False

    def recipe(self) -> dict[str, Any]:
        """What the fix does, for rewrite digests: where it was written does not matter."""
        return {
            "add_requires": list(self.add_requires),
            "remove_requires": sorted(self.remove_requires),
            "requires_python": self.requires_python,
        }


@dataclass(frozen=True, slots=True)
class Quarantine:
    where: str
    min_age: float  # seconds
    min_age_text: str
    exempt: frozenset[NormalizedName] = frozenset()
    missing_upload_time: Keep = "keep"


@dataclass(frozen=True, slots=True)
class Platforms:
    where: str
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rules:
    files: tuple[str, ...] = ()
    digest: str = ""
    default_profile: str | None = None
    yanked: Keep = "keep"
    yanked_where: str = ""
    quarantine: Quarantine | None = None
    platforms: Platforms | None = None
    deny: tuple[Deny, ...] = ()
    allow: tuple[Allow, ...] = ()
    pins: tuple[Pin, ...] = ()
    facts: tuple[Fact, ...] = ()
    retag: tuple[Retag, ...] = ()
    metadata: tuple[MetadataFix, ...] = ()
    best_variant: tuple[BestVariant, ...] = ()

    def facts_for(self, project: str) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts if f.match.project in (None, project))

    def fixes_for(self, project: str) -> tuple[MetadataFix, ...]:
        return tuple(m for m in self.metadata if m.match.project in (None, project))

    def retags(self, project: str) -> tuple[Retag, ...]:
        return tuple(r for r in self.retag if r.match.project in (None, project))

    def best_variants(self, project: str) -> tuple[BestVariant, ...]:
        return tuple(b for b in self.best_variant if b.match.project == project)

    @property
    def filters(self) -> bool:
        """Whether any policy could hide a file (if not, pages pass through untouched)."""
        return (
            bool(self.deny or self.allow or self.pins or self.quarantine or self.platforms)
            or self.yanked == "hide"
        )


EMPTY = Rules()


def shipped_texts() -> dict[str, str]:
    """hostfit's own knowledge, loaded before the operator's rules."""
    texts = {}
    for name in SHIPPED_FILES:
        try:
            text = resources.files("proxy").joinpath("data", name).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"{SHIPPED_PREFIX}{name}: {exc}") from exc
        texts[SHIPPED_PREFIX + name] = text
    return texts


def load_rules(texts: Mapping[str, str]) -> Rules:
    """Parse and validate rule files, in the order given; raises `ConfigError`."""
    builder = _Builder()
    for name, text in texts.items():
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{name}: invalid TOML: {exc}") from None
        except RecursionError:  # tomllib parses nested arrays and tables by recursion
            raise ConfigError(f"{name}: invalid TOML: nested too deeply") from None
        builder.add(name, data)
    digest = hashlib.sha256(
        json.dumps(
            sorted((n.rsplit("/", 1)[-1], t) for n, t in texts.items()), ensure_ascii=False
        ).encode()
    ).hexdigest()
    return builder.build(tuple(texts), digest)


class _Builder:
    def __init__(self) -> None:
        self.rules = Rules()
        self.lists: dict[str, list[Any]] = {key: [] for key in _ARRAYS}
        self.singles: dict[str, str] = {}  # setting -> where it was set
        self.knowledge = {"facts": True, "metadata_fixes": False}
        self.pinned: dict[str, str] = {}

    def build(self, files: tuple[str, ...], digest: str) -> Rules:
        facts = [f for f in self.lists["fact"] if self.knowledge["facts"] or not f.shipped]
        fixes = [
            m for m in self.lists["metadata"] if self.knowledge["metadata_fixes"] or not m.shipped
        ]
        return replace(
            self.rules,
            files=files,
            digest=digest,
            deny=tuple(self.lists["deny"]),
            allow=tuple(self.lists["allow"]),
            pins=tuple(self.lists["pin"]),
            facts=tuple(facts),
            retag=tuple(self.lists["retag"]),
            metadata=tuple(fixes),
            best_variant=tuple(self.lists["best_variant"]),
        )

    def add(self, name: str, data: Mapping[str, Any]) -> None:
        shipped = name.startswith(SHIPPED_PREFIX)
        for key in data:
            if key not in _TABLES and key not in _ARRAYS:
                expected = ", ".join(sorted((*_TABLES, *_ARRAYS)))
                raise ConfigError(f"{name}: {key}: unknown key (expected one of {expected})")
        sources = _Table(name, "sources", data.get("sources", {}))
        citations = {key: sources.string(key) for key in sources.data or {}}
        for key, citation in citations.items():
            if not citation.strip():
                raise sources.error(key, "empty citation")
        if "defaults" in data:
            self._defaults(_Table(name, "defaults", data["defaults"]))
        if "quarantine" in data:
            self._quarantine(_Table(name, "quarantine", data["quarantine"]))
        if "platforms" in data:
            self._platforms(_Table(name, "platforms", data["platforms"]))
        if "knowledge" in data:
            self._knowledge(_Table(name, "knowledge", data["knowledge"]))
        readers: dict[str, Callable[[_Table], Any]] = {
            "deny": self._deny,
            "allow": _allow,
            "pin": self._pin,
            "fact": lambda t: _fact(t, citations, shipped),
            "retag": _retag,
            "best_variant": _best_variant,
            "metadata": lambda t: _metadata_fix(t, citations, shipped),
        }
        for key, read in readers.items():
            if key in data:
                for table in _array(name, key, data[key]):
                    self.lists[key].append(read(table))

    def _once(self, table: _Table, key: str = "") -> None:
        setting = f"{table.path}.{key}" if key else table.path
        previous = self.singles.get(setting)
        if previous is not None:
            raise ConfigError(f"{table.name}: {setting}: already set in {previous}")
        self.singles[setting] = table.name

    def _defaults(self, table: _Table) -> None:
        table.only("profile", "yanked")
        if "profile" in table.data:
            self._once(table, "profile")
            text = table.string("profile")
            from proxy.core.profile import KEYS, parse_profile

            try:
                parse_profile(text, "default")
            except HostfitError as exc:
                raise ConfigError(f"{table.name}: defaults.profile: {exc}") from None
            # A request's profile may carry keys hostfit does not know (newer clients); the
            # operator's default may not: "glibc=2.28" would load as no facts at all.
            keys = [pair.partition("=")[0].strip() for pair in text.split(",") if pair.strip()]
            for key in keys:
                if key not in KEYS:
                    raise table.error(
                        "profile", f"unknown key {key!r} (expected one of {', '.join(KEYS)})"
                    )
            if not keys:
                raise table.error("profile", "empty profile (leave the key out for none)")
            self.rules = replace(self.rules, default_profile=text)
        if "yanked" in table.data:
            self._once(table, "yanked")
            yanked = table.choice("yanked", ("keep", "hide"))
            self.rules = replace(self.rules, yanked=yanked, yanked_where=table.at("yanked"))

    def _quarantine(self, table: _Table) -> None:
        table.only("min_age", "exempt", "missing_upload_time")
        self._once(table)
        text = table.string("min_age", required=True)
        quarantine = Quarantine(
            where=table.where,
            min_age=_duration(table, "min_age", text),
            min_age_text=text,
            exempt=frozenset(
                _project(table, f"exempt[{i}]", n) for i, n in table.strings("exempt")
            ),
            missing_upload_time=table.choice("missing_upload_time", ("keep", "hide")),
        )
        self.rules = replace(self.rules, quarantine=quarantine)

    def _platforms(self, table: _Table) -> None:
        table.only("allow", "deny")
        self._once(table)
        for key in ("allow", "deny"):
            for i, pattern in table.strings(key):
                if not _PLATFORM_PATTERN.match(pattern):
                    raise table.error(f"{key}[{i}]", f"invalid platform pattern {pattern!r}")
        allow = tuple(p for _, p in table.strings("allow")) if "allow" in table.data else None
        deny = tuple(p for _, p in table.strings("deny"))
        self.rules = replace(self.rules, platforms=Platforms(table.where, allow, deny))

    def _knowledge(self, table: _Table) -> None:
        table.only("facts", "metadata_fixes")
        for key in ("facts", "metadata_fixes"):
            if key in table.data:
                self._once(table, key)
                self.knowledge[key] = table.boolean(key)

    def _deny(self, table: _Table) -> Deny:
        table.only("project", "version", "reason")
        reason = table.string("reason") if "reason" in table.data else None
        return Deny(table.where, _match(table), reason)

    def _pin(self, table: _Table) -> Pin:
        table.only("project", "version")
        match = _match(table, version_required=True)
        assert match.project is not None
        previous = self.pinned.get(match.project)
        if previous is not None:
            raise table.error("project", f"{match.project!r} is already pinned in {previous}")
        self.pinned[match.project] = table.where
        return Pin(table.where, match)


def _fact(table: _Table, citations: Mapping[str, str], shipped: bool) -> Fact:
    table.only("project", "version", "requires", "runs_without_driver", "note", "source")
    without_driver = "runs_without_driver" in table.data
    if without_driver and not table.boolean("runs_without_driver"):
        raise table.error("runs_without_driver", "only true means something: leave it out")
    if without_driver and "requires" in table.data:
        raise table.error("runs_without_driver", "a fact gives requires or this, not both")
    if not without_driver and "requires" not in table.data:
        raise table.error("requires", "missing (or runs_without_driver = true)")
    return Fact(
        where=table.where,
        match=_match(table),
        requires=Requires() if without_driver else _requires(table),
        note=table.string("note", required=True),
        source=_cite(table, citations),
        shipped=shipped,
        runs_without_driver=without_driver,
    )


def _requires(table: _Table) -> Requires:
    requires_table = _Table(table.name, f"{table.path}.requires", table.data.get("requires"))
    requires_table.only(*FACT_KEYS)
    values: dict[str, Any] = {}
    for key in ("x86_64_level", "cuda_major"):
        if key in requires_table.data:
            low, high = (1, 4) if key == "x86_64_level" else (1, 99)
            values[key] = requires_table.integer(key, low, high)
    for key in ("glibc", "glibcxx"):
        if key in requires_table.data:
            text = requires_table.string(key)
            if not _DOTTED.match(text):
                raise requires_table.error(key, f"{text!r} is not a dotted version")
            values[key] = text
    if not values:
        raise table.error("requires", f"empty (give one of {', '.join(FACT_KEYS)})")
    return Requires(**values)


def _metadata_fix(table: _Table, citations: Mapping[str, str], shipped: bool) -> MetadataFix:
    table.only("project", "version", "add_requires", "remove_requires", "requires_python",
               "source")  # fmt: skip
    add = []
    for i, text in table.strings("add_requires"):
        try:
            add.append(str(Requirement(text)))
        except InvalidRequirement as exc:
            raise table.error(
                f"add_requires[{i}]", f"invalid requirement {text!r}: {exc}"
            ) from None
    remove = frozenset(
        _project(table, f"remove_requires[{i}]", n) for i, n in table.strings("remove_requires")
    )
    requires_python = None
    if "requires_python" in table.data:
        requires_python = table.string("requires_python")
        if requires_python:
            requires_python = str(_specifier(table, "requires_python", requires_python))
    if not add and not remove and requires_python is None:
        raise table.error(
            "", "nothing to change (give add_requires, remove_requires or requires_python)"
        )
    return MetadataFix(
        where=table.where,
        match=_match(table),
        add_requires=tuple(add),
        remove_requires=remove,
        requires_python=requires_python,
        source=_cite(table, citations),
        shipped=shipped,
    )


def _allow(table: _Table) -> Allow:
    table.only("project", "version")
    return Allow(table.where, _match(table))


def _retag(table: _Table) -> Retag:
    table.only("project", "version")
    return Retag(table.where, _match(table, any_project=True))


def _best_variant(table: _Table) -> BestVariant:
    table.only("project", "version")
    return BestVariant(table.where, _match(table))


def _cite(table: _Table, citations: Mapping[str, str]) -> str:
    key = table.string("source", required=True)
    if key not in citations:
        raise table.error("source", f"{key!r} is not defined in [sources]")
    return citations[key]


def _match(table: _Table, *, version_required: bool = False, any_project: bool = False) -> Match:
    raw = table.string("project", required=True)
    project = None if any_project and raw == "*" else _project(table, "project", raw)
    versions = None
    if "version" in table.data or version_required:
        versions = _specifier(table, "version", table.string("version", required=True))
    return Match(project, versions)


def _project(table: _Table, key: str, text: str) -> NormalizedName:
    try:
        return canonicalize_name(text, validate=True)
    except InvalidName:
        raise table.error(key, f"invalid project name {text!r}") from None


def _specifier(table: _Table, key: str, text: str) -> SpecifierSet:
    try:
        specifier = SpecifierSet(text)
    except InvalidSpecifier:
        raise table.error(key, f"invalid specifier {text!r}") from None
    if not str(specifier):
        raise table.error(key, "empty specifier (leave the key out to mean every version)")
    return specifier


def _duration(table: _Table, key: str, text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise table.error(
            key, f"invalid duration {text!r} (a number and s, m, h, d or w, e.g. '7d')"
        )
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds > MAX_DURATION_SECONDS:
        # An upload time plus more would pass the calendar's end (year 9999): every page
        # with an upload-time would fail, not just this rule.
        raise table.error(key, f"duration {text!r} is longer than 100 years")
    return seconds


def _array(name: str, key: str, value: Any) -> Iterable[_Table]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(
            f"{name}: {key}: expected an array of tables ([[{key}]]), got {_kind(value)}"
        )
    return [_Table(name, f"{key}[{i}]", item) for i, item in enumerate(value)]


@dataclass(frozen=True, slots=True)
class _Table:
    name: str  # the file
    path: str  # the key path inside it
    data: Any = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data is not None and not isinstance(self.data, dict):
            raise ConfigError(f"{self.name}: {self.path}: expected a table, got {_kind(self.data)}")

    @property
    def where(self) -> str:
        return f"{self.name}: {self.path}"

    def at(self, key: str) -> str:
        return f"{self.where}.{key}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.at(key) if key else self.where}: {message}")

    def only(self, *keys: str) -> None:
        for key in self.data or {}:
            if key not in keys:
                raise self.error(key, f"unknown key (expected one of {', '.join(keys)})")

    def _get(self, key: str, kinds: tuple[type, ...], what: str, required: bool) -> Any:
        if key not in (self.data or {}):
            if required:
                raise self.error(key, "missing")
            return None
        value = self.data[key]
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise self.error(key, f"expected {what}, got {_kind(value)}")
        return value

    def string(self, key: str, *, required: bool = False) -> str:
        value = self._get(key, (str,), "a string", required)
        return value if value is not None else ""

    def boolean(self, key: str) -> bool:
        return bool(self._get(key, (bool,), "true or false", True))

    def integer(self, key: str, low: int, high: int) -> int:
        value: int = self._get(key, (int,), "an integer", True)
        if not low <= value <= high:
            raise self.error(key, f"{value} is out of range ({low} to {high})")
        return value

    def choice(self, key: str, choices: Sequence[str]) -> Any:
        """The value given, or the first choice when the key is left out (not when it is
        empty: ``yanked = ""`` is a mistake, not a request for the default)."""
        value = self._get(key, (str,), "a string", False)
        if value is None:
            return choices[0]
        if value not in choices:
            options = " or ".join(repr(c) for c in choices)
            raise self.error(key, f"expected {options}, got {value!r}")
        return value

    def strings(self, key: str) -> list[tuple[int, str]]:
        values = self._get(key, (list,), "an array of strings", False) or []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(f"{key}[{i}]", f"expected a string, got {_kind(value)}")
        return list(enumerate(values))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return type(value).__name__
