"""`hostfit serve`: run the proxy under uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from proxy.core.redact import redact
from proxy.edge import logs
from proxy.edge.config import Settings, load_settings
from proxy.edge.rules_loader import read_rules
from proxy.edge.upstreams_config import UpstreamTable
from proxy.errors import ConfigError

_ENV = "HOSTFIT_RESOLVED_SETTINGS"
_ACCESS_ENV = "HOSTFIT_RESOLVED_ACCESS_LOG"
_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the index proxy", description="Run the index proxy."
    )
    add_setting_arguments(parser)
    parser.add_argument(
        "--no-access-log", dest="access_log", action="store_false", help="do not log requests"
    )
    parser.add_argument(
        "--uvicorn-access-log",
        action="store_true",
        help="uvicorn's own access log lines as well as hostfit's",
    )
    parser.set_defaults(func=run)


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that make up the settings (shared with `hostfit config`)."""
    parser.add_argument(
        "--upstream",
        dest="upstreams",
        action="append",
        metavar="URL",
        help="upstream simple index, repeatable, in priority order "
        "(default: the index pip is configured with)",
    )
    parser.add_argument(
        "--file-origin",
        dest="file_origins",
        action="append",
        metavar="URL",
        help="another origin (scheme://host:port) upstream pages may link files on, "
        "repeatable (default: only each upstream's own origin, and for pip's default index "
        "the host it serves files from)",
    )
    parser.add_argument(
        "--upstream-ca",
        type=Path,
        metavar="FILE",
        help="a CA bundle (PEM) trusted for upstreams besides the system store",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--cache-dir", type=Path, help="cache directory")
    parser.add_argument("--redis", metavar="URL", help="Redis URL for shared state")
    parser.add_argument("--rules", type=Path, metavar="PATH", help="rules directory or file")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--page-ttl", type=float, help="seconds a page is served before revalidation"
    )
    parser.add_argument(
        "--upstream-deadline",
        type=float,
        metavar="SECONDS",
        help="the longest an upstream page fetch may take in all, retries and slow bodies "
        "included; past it the stale page or a 504 is served (default 60)",
    )
    parser.add_argument("--workers", type=int, help="server processes (default 1)")
    parser.add_argument(
        "--default-profile",
        metavar="PROFILE",
        help="host profile for clients that tell nothing, e.g. libc=glibc-2.28,cuda=none",
    )
    parser.add_argument(
        "--analysis",
        choices=["optimistic", "strict"],
        help="a page whose analysis is unfinished after --analysis-budget: served provisional, "
        "with the download gate as the safety net (optimistic, default), or answered 503 "
        "with Retry-After (strict)",
    )
    parser.add_argument(
        "--analysis-budget",
        type=float,
        metavar="SECONDS",
        help="how long a page request waits for its analysis (default 2)",
    )
    parser.add_argument(
        "--analysis-workers", type=int, metavar="N", help="analysis processes (default 2)"
    )
    parser.add_argument(
        "--frontier-keep",
        type=int,
        metavar="K",
        help="kept versions verified below the newest one a host is offered (default 3)",
    )
    parser.add_argument(
        "--frontier-max-bytes",
        type=int,
        metavar="BYTES",
        help="wheel bytes one walk down a page may analyse before it waits for the next "
        "request (default 8 GiB)",
    )
    parser.add_argument(
        "--frontier-max-seconds",
        type=float,
        metavar="SECONDS",
        help="time one walk down a page may take (default 600)",
    )
    parser.add_argument(
        "--upstream-timeout",
        type=float,
        metavar="SECONDS",
        help="the longest wait for any one read from upstream (default 30)",
    )
    parser.add_argument(
        "--hide-sdists-without-wheels",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hide a version's sdist from a host none of its wheels fits (default: hide)",
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="turn on the admin endpoints (/admin/...), for requests bearing this token; "
        "prefer HOSTFIT_ADMIN_TOKEN, which no process listing shows (default: off)",
    )
    parser.add_argument(
        "--file-deadline",
        type=float,
        metavar="SECONDS",
        help="the longest one file download from upstream may take, in all (default 1800)",
    )
    parser.add_argument(
        "--cache-max-size",
        metavar="BYTES",
        help="file cache budget, such as 50G (K, M, G, T: powers of 1024); least recently "
        "used files are evicted to stay within it (default: no budget)",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "text", "auto"],
        help="log lines as JSON objects or as text with timestamps; auto: text on a "
        "terminal, JSON otherwise (default auto)",
    )


def run(args: argparse.Namespace) -> int:
    logs.configure("auto")
    try:
        settings = load_settings(vars(args)).with_upstreams()
        logs.configure(settings.log_format)
        read_rules(settings.rules)  # refuse to start on bad rules, before any worker starts
    except ConfigError as exc:
        print(f"hostfit: {exc}")
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
    os.environ[_ENV] = json.dumps(asdict(settings), default=str)
    # hostfit's access log (proxy.edge.observe) replaces uvicorn's unless both are asked for.
    os.environ[_ACCESS_ENV] = "1" if args.access_log else ""
    with _metrics_dir(settings.workers):
        uvicorn.run(
            "proxy.cli.serve:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            access_log=args.access_log and args.uvicorn_access_log,
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

    data = json.loads(os.environ[_ENV])
    logs.configure(data["log_format"])  # a --workers process starts with no handlers
    data["upstreams"] = tuple(data["upstreams"])
    data["file_origins"] = tuple(data["file_origins"])
    data["upstream_tables"] = tuple(UpstreamTable.from_json(t) for t in data["upstream_tables"])
    data["upstream_ca"] = Path(data["upstream_ca"]) if data["upstream_ca"] else None
    data["cache_dir"] = Path(data["cache_dir"])
    data["rules"] = Path(data["rules"]) if data["rules"] else None
    return build_app(Settings(**data), access_log=bool(os.environ.get(_ACCESS_ENV)))
