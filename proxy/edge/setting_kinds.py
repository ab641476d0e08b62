"""Kinds of setting value: how each is read and how it travels to workers.

A value arrives as an option's or environment variable's text, or as a config file's
TOML value (a number, a boolean, a list); `Kind.parse` makes the setting's value of any
of them, raising ValueError with what was expected. Under ``--workers N`` the resolved
settings reach each worker as JSON: `Kind.dump` makes the JSON value, `Kind.load` reads
it back (by default `parse` again, which takes what `dump` made).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from proxy.edge.upstreams_config import UpstreamTable, tables_setting


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, eq=False)  # a kind is itself: compared and hashed by identity
class Kind:
    parse: Callable[[Any], Any]
    dump: Callable[[Any], Any] = _same
    load: Callable[[Any], Any] | None = None
    metavar: str | None = None  # the option's placeholder, unless the setting names one
    option: Mapping[str, Any] = field(default_factory=dict)  # more add_argument keywords

    def from_json(self, value: Any) -> Any:
        return (self.load or self.parse)(value)


def _urls(value: object) -> tuple[str, ...]:
    """A list (repeated option, TOML array), or one text of space-separated URLs."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return tuple(str(value).split())


def _text(value: object) -> str:
    """Text as given: an option's or a variable's always is; a config file's may be a
    list, a table, a number or a boolean, which was taken as its Python spelling."""
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {_toml_type(value)}")
    return value


def _path(value: object) -> Path:
    return Path(_text(value))


# TOML's types as a config file's reader would name them (bool before int: it is one).
_TOML_TYPES = ((bool, "a boolean"), ((int, float), "a number"), (list, "a list"), (dict, "a table"))


def _toml_type(value: object) -> str:
    for kind, name in _TOML_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _whole(low: int, high: int | None = None) -> Callable[[object], int]:
    """A whole number from ``low`` (to ``high``): a port past 65535 was taken modulo 2^16
    by the socket, and a worker count below 1 served nothing."""
    wanted = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")

    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected {wanted}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected {wanted}") from None
        if number < low or (high is not None and number > high):
            raise ValueError(f"expected {wanted}")
        return number

    return parse


def _duration(value: object) -> float:
    number = float(str(value))
    if not 0 <= number < float("inf"):
        raise ValueError("expected a number of seconds, 0 or more")
    return number


def _seconds(value: object) -> float:
    number = float(str(value))
    if not 0 < number < float("inf"):
        raise ValueError("expected a number of seconds above 0")
    return number


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _bytes(least: int) -> Callable[[object], int]:
    """Bytes, ``least`` or more, with an optional binary suffix: 50G, 512M, 1.5T, 10GiB
    (K, M, G, T = 1024^n)."""

    def check(value: object) -> int:
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        try:
            number = float(text.removesuffix(unit) if unit else text) * _UNITS[unit]
        except ValueError:
            raise ValueError("expected bytes, such as 50G, 512M or 1000000") from None
        if not least <= number < float("inf"):
            raise ValueError("expected at least one byte" if least else "expected bytes, 0 or more")
        return int(number)

    return check


def _profile(value: object) -> str:
    from proxy.core.profile import parse_profile
    from proxy.errors import HostfitError

    text = _text(value)
    try:
        parse_profile(text, "default")
    except HostfitError as exc:
        raise ValueError(str(exc)) from None
    return text


TEXT = Kind(_text)
INT = Kind(_whole(0), metavar="N")
COUNT = Kind(_whole(1), metavar="N")  # of processes: at least one
PORT = Kind(_whole(0, 65535), metavar="PORT")
FLOAT = Kind(_duration, metavar="SECONDS")  # 0 or more and finite
SECONDS = Kind(_seconds, metavar="SECONDS")  # above 0 and finite: a deadline
SIZE = Kind(_bytes(1), metavar="BYTES")
BYTES = Kind(_bytes(0), metavar="BYTES")  # 0 or more
BOOL = Kind(_boolean, option={"action": argparse.BooleanOptionalAction})
PATH = Kind(_path, dump=str, metavar="PATH")
URLS = Kind(_urls, dump=list, metavar="URL", option={"action": "append"})
PROFILE = Kind(_profile, metavar="PROFILE")
# Only a config file's [[hostfit.upstream]] tables make them (proxy.edge.config).
TABLES = Kind(
    tables_setting,
    dump=lambda tables: [asdict(t) for t in tables],
    load=lambda data: tuple(UpstreamTable.from_json(t) for t in data),
)
