"""The `hostfit` command: serve, inspect, probe, explain, config, admin.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``; the
parser it adds carries ``func`` (``(argparse.Namespace) -> int``) as a default.
Imports are deferred so that `hostfit probe` does not pay for the server stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from proxy import __version__

SUBCOMMANDS = (
    "proxy.cli.serve",
    "proxy.cli.inspect",
    "proxy.cli.probe",
    "proxy.cli.explain",
    "proxy.cli.config",
    "proxy.cli.admin",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hostfit",
        description="Index proxy that serves each host only the wheels that will load there.",
    )
    parser.add_argument("--version", action="version", version=f"hostfit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
