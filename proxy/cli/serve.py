"""`hostfit serve`: run the proxy under uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from proxy.core.redact import redact
from proxy.edge import logs
from proxy.edge.config import load_settings
from proxy.edge.rules_loader import read_rules
from proxy.edge.settings_table import add_arguments, from_json, to_json
from proxy.errors import ConfigError

_ENV = "HOSTFIT_RESOLVED_SETTINGS"
_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the index proxy", description="Run the index proxy."
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logs.configure("auto")
    try:
        settings = load_settings(vars(args)).with_upstreams()
        logs.configure(settings.log_format)
        read_rules(settings.rules)  # refuse to start on bad rules, before any worker starts
    except ConfigError as exc:
        print(f"hostfit: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    logging.getLogger("hostfit").info(
        "upstreams: %s; file origins: %s; cache: %s; state: %s",
        redact(", ".join(settings.upstreams)),
        redact(", ".join(settings.file_origins)) or "each upstream's own",
        settings.cache_dir,
        redact(settings.redis or "embedded"),
    )
    # Settings travel to worker processes through the environment, resolved once here.
    os.environ[_ENV] = to_json(settings)
    with _metrics_dir(settings.workers):
        uvicorn.run(
            "proxy.cli.serve:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            # hostfit's access log (proxy.edge.observe) replaces uvicorn's unless both are on.
            access_log=settings.access_log and settings.uvicorn_access_log,
            log_level="info",
            log_config=None,  # uvicorn's lines go through hostfit's handler (proxy.edge.logs)
        )
    return 0


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, /metrics sums them all: prometheus_client's multiprocess
    mode, in a fresh directory set before the workers start (unless one is given)."""
    if workers <= 1 or os.environ.get(_MULTIPROC):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="hostfit-metrics-") as path:
        os.environ[_MULTIPROC] = path
        try:
            yield
        finally:
            del os.environ[_MULTIPROC]


def create_app() -> Any:
    from proxy.edge.app import build_app

    settings = from_json(os.environ[_ENV])
    logs.configure(settings.log_format)  # a --workers process starts with no handlers
    return build_app(settings, access_log=settings.access_log)
