"""`hostfit explain PROJECT --profile ...`: what a host is served, file by file, and why."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from proxy.core.names import normalize_project
from proxy.core.profile import merge, parse_profile
from proxy.edge.config import load_settings
from proxy.edge.index import Context
from proxy.edge.settings_table import add_arguments
from proxy.errors import HostfitError


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "explain",
        help="say what a host is served from a project and why the rest is hidden",
        description="Say, file by file, what a host with PROFILE is served and why.",
    )
    parser.add_argument("project")
    parser.add_argument(
        "--profile", required=True, help="host profile, e.g. python=3.11,libc=glibc-2.28"
    )
    add_arguments(parser)  # every setting, as for hostfit serve (the same table)
    parser.add_argument(
        "--wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the analysis to settle (default 300)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        data = asyncio.run(_explain(args))
    except HostfitError as exc:
        print(f"hostfit explain: {exc}")
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{data['project']} for {data['profile'] or '(a host that told nothing)'}")
    print(f"from {data['upstream']}")
    served, unverified, hidden = data["served"], data["not_verified"], data["hidden"]
    print(f"{served} served ({unverified} not verified yet), {hidden} hidden")
    frontier, choice = data["frontier"], data["pip_would_install"]
    if frontier is not None and not frontier["settled"]:
        pending = ", ".join(frontier["pending_versions"])
        print(f"analysis not settled: {len(frontier['analysing'])} wheel(s) of {pending} left")
    if choice is not None:
        verified = "verified" if choice["verified"] else "not verified yet"
        print(f"a plain pip install takes {choice['filename']} ({verified})")
    if data["builds"]:
        print("\nbuilds:")
        for b in data["builds"]:
            analysing = " (being analysed)" if b["analysing"] else ""
            print(f"  {b['version']}+{b['build']}: {b['status']}{analysing}: {b['why']}")
    print()
    width = max((len(f["filename"]) for f in data["files"]), default=10)
    for f in data["files"]:
        fits = "not verified yet" if f["status"] == "not verified yet" else "fits"
        why = "; ".join([r["message"] for r in f["reasons"]] or f.get("notes") or [fits])
        if f.get("rewrite"):
            rewrite = f["rewrite"]
            served = rewrite["served_as"] or f"not yet ({rewrite['status']})"
            why += f"; rewritten by {', '.join(rewrite['rules'])}: served as {served}"
        print(f"  {f['verdict']:<5} {f['filename']:<{width}}  {why}")
    return 0


async def _explain(args: argparse.Namespace) -> dict[str, Any]:
    from proxy.edge.services import open_services

    name = normalize_project(args.project)
    settings = load_settings(vars(args)).with_upstreams()
    async with open_services(settings) as services:
        profile = merge(parse_profile(args.profile, "url"), services.default_profile)
        # A person asking why wants the full answer: wait for the walk to settle.
        ctx = Context(profile=profile)
        decided = await services.filter.explain(name, ctx, wait=args.wait)
        decided = await services.variants.explain(decided, ctx)
        notes = await services.rewrites.explain(decided)
        return decided.explained(profile, notes)
