"""Read and check the data tables shipped in ``proxy/data``.

Those files are part of the program (same bytes on every replica, versioned with
the code), so reading them is not the kind of I/O the core keeps out: no clock,
no network, no host state. Every entry names a source defined in the file's
``sources``; anything else is a `ConfigError` at load, never a wrong decision later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from proxy.core.dotted import parse_dotted
from proxy.errors import ConfigError


def read_json(name: str) -> Any:
    try:
        text = resources.files("proxy").joinpath("data", name).read_text("utf-8")
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"data file {name}: {exc}") from exc


def entries(data: Any, name: str, key: str) -> list[Mapping[str, Any]]:
    """The list under ``key``, checked to be objects whose ``source`` is defined."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"data file {name}: not a JSON object")
    sources = data.get("sources")
    if not isinstance(sources, Mapping) or not all(
        isinstance(v, str) and v for v in sources.values()
    ):
        raise ConfigError(f"data file {name}: 'sources' must map names to citations")
    items = data.get(key)
    if not isinstance(items, list) or not items:
        raise ConfigError(f"data file {name}: '{key}' must be a non-empty list")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ConfigError(f"data file {name}: {key}[{i}] is not an object")
        if item.get("source") not in sources:
            raise ConfigError(f"data file {name}: {key}[{i}] cites no known source")
    return items


def version(item: Mapping[str, Any], field: str, where: str) -> tuple[int, ...]:
    value = item.get(field)
    if not isinstance(value, str) or not re.fullmatch(r"\d+(?:\.\d+)*", value):
        raise ConfigError(f"{where}: {field} {value!r} is not a dotted version")
    return parse_dotted(value)
