"""`hostfit admin`: the admin endpoints of a running proxy, from the command line.

    hostfit admin purge PROJECT          forget a project's cached pages
    hostfit admin drop-report SHA256     delete a wheel's report; it is analysed anew
    hostfit admin reload-rules           read the rules again (bad rules are refused)

The token comes from ``--token`` or ``HOSTFIT_ADMIN_TOKEN`` (the same variable the
server reads), the proxy's address from ``--url`` (default http://127.0.0.1:8080/).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

from proxy.core.redact import redact


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "admin",
        help="purge a project's pages, drop a report or reload rules on a running proxy",
        description="Call the admin endpoints of a running hostfit (they need a token).",
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080/", help="the proxy's address")
    parser.add_argument("--token", help="admin token (default: $HOSTFIT_ADMIN_TOKEN)")
    actions = parser.add_subparsers(dest="action", required=True)
    purge = actions.add_parser("purge", help="forget a project's cached pages")
    purge.add_argument("project")
    drop = actions.add_parser("drop-report", help="delete a wheel's stored report")
    drop.add_argument("sha256")
    actions.add_parser("reload-rules", help="read the rules again")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("HOSTFIT_ADMIN_TOKEN")
    if not token:
        print("hostfit admin: no token: give --token or set HOSTFIT_ADMIN_TOKEN", file=sys.stderr)
        return 2
    if args.action == "purge":
        path = f"admin/projects/{args.project}/purge"
    elif args.action == "drop-report":
        path = f"admin/reports/{args.sha256}/drop"
    else:
        path = "admin/rules/reload"
    url = args.url.rstrip("/") + "/" + path
    try:
        response = httpx.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    except httpx.HTTPError as exc:
        print(redact(f"hostfit admin: {url}: {exc}"), file=sys.stderr)
        return 1
    print(response.text.strip())
    return 0 if response.status_code == 200 else 1
