"""Per-project routes: which upstreams may answer for a project.

An upstream with ``projects`` (names or glob patterns, ``*``, ``?``, ``[...]``) owns
those projects, and serves nothing else. Owning means exclusive: a routed project is
looked up only in its owner, never elsewhere, not even while the owner fails, so a
public project of the same name can never stand in for it (the dependency-confusion
guard that priority order gives unrouted projects, made explicit per project).

- Names and patterns are compared PEP 503-normalised (``Foo_Bar`` is ``foo-bar``), so
  a pattern matches every spelling of a name.
- The first upstream in priority order with a matching pattern owns the project.
  When it belongs to a family, every member of that family with a matching pattern
  serves it, merged (`proxy.core.families`).
- Upstreams without ``projects`` serve every unrouted project, by priority.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from packaging.utils import NormalizedName, canonicalize_name

from proxy.errors import ConfigError

# What a project name may hold (PEP 508, any case), plus the glob characters.
_PATTERN = re.compile(r"[A-Za-z0-9._*?\[\]!-]+")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One upstream's routing keys, in priority order; ``patterns`` empty: unrouted."""

    patterns: tuple[str, ...] = ()
    family: str | None = None


@dataclass(frozen=True, slots=True)
class Owner:
    """Who serves a routed project: upstream positions in priority order."""

    upstreams: tuple[int, ...]
    pattern: str  # the first owner's matching pattern, as configured
    family: str | None


def normalize_pattern(pattern: str) -> str:
    """A pattern in the spelling names are compared in: ``Torch_*`` -> ``torch-*``."""
    if not _PATTERN.fullmatch(pattern):
        raise ConfigError(
            f"project pattern {pattern!r}: only name characters and the glob characters"
            " * ? [ ] ! are allowed"
        )
    return canonicalize_name(pattern)


class Routes:
    def __init__(self, specs: Sequence[RouteSpec]) -> None:
        self.specs = tuple(specs)
        self._normalized = tuple(
            tuple((p, normalize_pattern(p)) for p in spec.patterns) for spec in self.specs
        )
        for spec in self.specs:
            if spec.family is not None and not spec.patterns:
                raise ConfigError(
                    f"family {spec.family!r}: each member upstream needs projects,"
                    " the projects the family's builds are merged for"
                )
        self.unrouted = tuple(i for i, spec in enumerate(self.specs) if not spec.patterns)

    @property
    def routed(self) -> bool:
        return any(spec.patterns for spec in self.specs)

    def matching(self, position: int, name: NormalizedName) -> str | None:
        """The configured pattern of this upstream that matches ``name``, if one does."""
        return next((p for p, n in self._normalized[position] if fnmatchcase(name, n)), None)

    def owner(self, name: NormalizedName) -> Owner | None:
        """Who serves ``name``; None for an unrouted project (priority order decides)."""
        for position, spec in enumerate(self.specs):
            pattern = self.matching(position, name)
            if pattern is None:
                continue
            if spec.family is None:
                return Owner((position,), pattern, None)
            members = tuple(
                i
                for i, other in enumerate(self.specs)
                if other.family == spec.family and self.matching(i, name) is not None
            )
            return Owner(members, pattern, spec.family)
        return None

    def lists(self, position: int, listed: str) -> bool:
        """Whether a name on this upstream's root listing is one it serves."""
        owner = self.owner(canonicalize_name(listed))
        if owner is None:
            return position in self.unrouted
        return position in owner.upstreams
