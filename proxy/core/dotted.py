"""Dotted version numbers ("2.17", "3.4.19", "550.54.14"): tuples of ints, and back.

The one parser for the versions binaries and hosts speak in (symbol versions, glibc,
libstdc++, CUDA, drivers, compute capabilities). Python package versions are
`packaging.version.Version`'s business, not this module's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

Dotted = tuple[int, ...]

_DOTTED = re.compile(r"\d+(?:\.\d+)*")


def parse_dotted(text: str) -> Dotted:
    """``"3.4.19"`` -> ``(3, 4, 19)``; ValueError for anything else."""
    if not _DOTTED.fullmatch(text):
        raise ValueError(f"not a dotted version: {text!r}")
    return tuple(int(part) for part in text.split("."))


def maybe_dotted(text: str | None) -> Dotted | None:
    """The version, or None where ``text`` is none (a need that cannot be compared)."""
    if text is None or not _DOTTED.fullmatch(text):
        return None
    return parse_dotted(text)


def dotted(version: Iterable[int]) -> str:
    return ".".join(str(part) for part in version)
