"""Availability on real projects: does each host get the newest version it could install?

``bench/run availability [PROJECT ...] [--hosts x86_64-glibc,aarch64-musl,...]``
starts a fresh ``hostfit serve`` with no configuration (its upstream is the index this
machine's pip uses) and, for each project and host, waits for the host's walk to settle
and compares the version hostfit offers with the newest one whose wheel tags fit the
host (CPython 3.11; not yanked, no pre-releases). Where hostfit offers an older one (or
none), it prints why the newer fitting wheels were hidden: a check too strict hides
good wheels as surely as a missing check would serve bad ones.

The promise's side (that what is delivered loads) is `bench/run frontier`'s. This needs
the network, so it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.proxy import ProxyProcess  # noqa: E402

JSON_V1 = "application/vnd.pypi.simple.v1+json"
PYTHON = (3, 11)
PROJECTS = [
    "numpy",
    "pandas",
    "scipy",
    "pydantic-core",
    "cryptography",
    "orjson",
    "lxml",
    "pillow",
    "psutil",
    "grpcio",
    "regex",
    "charset-normalizer",
    "pyyaml",
    "markupsafe",
    "aiohttp",
    "yarl",
    "msgpack",
    "zstandard",
    "rpds-py",
    "jiter",
    "tokenizers",
    "cffi",
    "bcrypt",
    "greenlet",
    "protobuf",
    "kiwisolver",
    "scikit-learn",
    "polars",
    "duckdb",
    "ruff",
    "watchfiles",
    "websockets",
]


def _glibc(machine: str) -> list[str]:
    newest = [f"manylinux_2_{minor}_{machine}" for minor in range(35, 4, -1)]
    legacy = [f"manylinux{n}_{machine}" for n in ("2014", "2010", "1")]
    return [*newest, *legacy, f"linux_{machine}"]


def _musl(machine: str) -> list[str]:
    return [f"musllinux_1_{minor}_{machine}" for minor in (2, 1, 0)] + [f"linux_{machine}"]


# Each host: its profile, and the platform tags its pip accepts, most specific first.
HOSTS: dict[str, tuple[str, list[str]]] = {
    "x86_64-glibc": ("arch=x86_64,libc=glibc-2.35,glibcxx=3.4.30", _glibc("x86_64")),
    "aarch64-glibc": ("arch=aarch64,libc=glibc-2.35,glibcxx=3.4.30", _glibc("aarch64")),
    "x86_64-musl": ("arch=x86_64,libc=musl-1.2", _musl("x86_64")),
    "aarch64-musl": ("arch=aarch64,libc=musl-1.2", _musl("aarch64")),
}


def tags_of(platforms: list[str]) -> set[Tag]:
    return set(cpython_tags(PYTHON, platforms=platforms)) | set(
        compatible_tags(PYTHON, "cp311", platforms=platforms)
    )


def newest_fitting(page: dict[str, Any], tags: set[Tag]) -> tuple[Version | None, set[str]]:
    fitting: dict[Version, set[str]] = {}
    for entry in page["files"]:
        name = entry["filename"]
        if not name.endswith(".whl") or entry.get("yanked"):
            continue
        try:
            _, version, _, wheel_tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        if not version.is_prerelease and wheel_tags & tags:
            fitting.setdefault(version, set()).add(name)
    if not fitting:
        return None, set()
    newest = max(fitting)
    return newest, fitting[newest]


def check(proxy: ProxyProcess, project: str, host: str, timeout: float) -> list[str]:
    """Lines for one project and host: OK or !!, and the reasons where it is !!."""
    profile = f"python=3.11,impl=cp,{HOSTS[host][0]}"
    page = httpx.get(
        proxy.url + f"universal/simple/{project}/", headers={"Accept": JSON_V1}, timeout=300
    ).json()
    newest, names = newest_fitting(page, tags_of(HOSTS[host][1]))
    deadline = time.monotonic() + timeout
    while True:
        explained = httpx.get(
            proxy.url + f"explain/{project}/",
            params={"profile": profile, "format": "json"},
            timeout=300,
        ).json()
        frontier = explained["frontier"]
        if frontier["settled"] or time.monotonic() > deadline:
            break
        time.sleep(3)
    offered = frontier.get("offered")
    good = newest is None or (offered is not None and Version(offered) == newest)
    lines = [
        f"{'OK' if good else '!!'}  {project} {host}: newest fitting {newest}, offered {offered}"
    ]
    if not frontier["settled"]:
        lines.append("      not settled within the timeout")
    if not good:
        for entry in explained["files"]:
            if entry["filename"] in names:
                reasons = "; ".join(r["message"] for r in entry["reasons"]) or "-"
                lines.append(f"      {entry['filename']}: {entry['verdict']}: {reasons}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("projects", nargs="*", default=list(PROJECTS))
    parser.add_argument("--hosts", default=",".join(HOSTS), help="of: " + ", ".join(HOSTS))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait per walk")
    args = parser.parse_args()
    hosts = args.hosts.split(",")
    unknown = [h for h in hosts if h not in HOSTS]
    if unknown:
        parser.error(f"unknown hosts: {', '.join(unknown)}")
    jobs = [(project, host) for project in args.projects for host in hosts]
    flagged = 0
    # No --upstream: hostfit asks pip for its index, as a user's first run does.
    with (
        tempfile.TemporaryDirectory() as tmp,
        ProxyProcess(cache_dir=Path(tmp) / "cache") as proxy,
        ThreadPoolExecutor(4) as pool,
    ):
        for lines in pool.map(lambda job: check(proxy, job[0], job[1], args.timeout), jobs):
            flagged += lines[0].startswith("!!")
            print("\n".join(lines), flush=True)
    print(f"{len(jobs) - flagged} of {len(jobs)} project and host pairs offered the newest fit")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
