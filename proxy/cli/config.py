"""`hostfit config`: the effective settings of `hostfit serve`, secrets redacted, and where
each value came from (command line, environment, config file, pip, or the default).

Takes the same options as `hostfit serve`, so ``hostfit config --port 9000`` shows what
``hostfit serve --port 9000`` would run with.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from proxy.core.redact import REDACTED, redact
from proxy.edge.config import Settings, load_settings_with_sources
from proxy.edge.rules_loader import read_rules
from proxy.edge.settings_table import add_arguments, specs
from proxy.errors import ConfigError


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config",
        help="print the effective settings and where each came from",
        description="Print the settings hostfit serve would run with (secrets redacted), "
        "and where each value came from.",
    )
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings, sources = load_settings_with_sources(vars(args))
        if not settings.upstreams:
            settings = settings.with_upstreams()
            sources["upstreams"] = "pip's configuration or default index"
        read_rules(settings.rules)  # rules serve would refuse to start with
    except ConfigError as exc:
        print(f"hostfit config: {exc}", file=sys.stderr)
        return 2
    rows = effective(settings, sources)
    if args.json:
        print(json.dumps({name: {"value": v, "from": src} for name, v, src in rows}, indent=2))
        return 0
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {json.dumps(value)}  ({source})")
    return 0


def effective(settings: Settings, sources: dict[str, str]) -> list[tuple[str, Any, str]]:
    """(setting, value as JSON, source) for every setting, with secrets redacted."""
    rows = []
    for spec in specs():
        value = getattr(settings, spec.name)
        shown = REDACTED if spec.secret and value else _shown(value)
        rows.append((spec.name, shown, sources.get(spec.name, "default")))
    return rows


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_shown(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(repr(value))  # upstream tables: their repr hides passwords and tokens
