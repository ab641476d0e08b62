"""The frontier on real projects: what the first request gets, what settling costs, and
what an old host is finally delivered, checked with readelf.

One command (``bench/run frontier [PROJECT ...] [--profile P] [-- SERVE_ARGS]``) starts
a fresh ``hostfit serve`` with no configuration (so its upstream is the index this
machine's pip uses) and, for each project, as a host with ``--profile`` (default: a
CentOS 7 host, glibc 2.17):

- the cold filtered page: time to first byte and in all, and whether it was served
  provisional (its walk not settled within the analysis budget);
- the walk: time until settled, bytes analyses read from upstream, versions walked;
- the delivery: ``pip download`` through the proxy with the profile in pip's
  User-Agent, and every ELF member of the delivered wheel read with ``readelf -V``:
  the newest GLIBC and GLIBCXX versions it needs against the host's.

It needs the network (the public index), so it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.proxy import ProxyProcess  # noqa: E402

JSON_V1 = "application/vnd.pypi.simple.v1+json"
DEFAULT_PROJECTS = ["playwright", "wasmtime", "debugpy", "numpy", "grpcio"]
CENTOS7 = "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.17,glibcxx=3.4.19"
_VERSION_NEED = re.compile(r"Name: (GLIBC|GLIBCXX)_([0-9.]+)")


def fetched(proxy: ProxyProcess) -> float:
    """Bytes taken from upstream for analyses: read by URL, and files downloaded whole
    (walks download wheels within --analysis-download-max; nothing else downloads a file
    before the delivery)."""
    text = httpx.get(proxy.url + "metrics").text
    match = re.search(r"^hostfit_analysis_fetched_bytes ([0-9.e+]+)$", text, re.M)
    whole = re.findall(r"^hostfit_upstream_file_bytes_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    return (float(match[1]) if match else 0.0) + sum(map(float, whole))


def explain(proxy: ProxyProcess, project: str, profile: str) -> dict[str, object]:
    response = httpx.get(
        proxy.url + f"explain/{project}/",
        params={"profile": profile, "format": "json"},
        timeout=120,
    )
    return dict(response.json())


def elf_needs(wheel: Path) -> dict[str, str]:
    """Newest GLIBC and GLIBCXX versions any ELF member of the wheel needs (readelf)."""
    newest: dict[str, tuple[int, ...]] = {}
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                if member.read(4) != b"\x7fELF":
                    continue
            path = Path(archive.extract(info, tmp))
            done = subprocess.run(
                ["readelf", "-V", "--wide", str(path)], capture_output=True, text=True, check=False
            )
            for lib, version in _VERSION_NEED.findall(done.stdout):
                parsed = tuple(int(p) for p in version.split("."))
                newest[lib] = max(newest.get(lib, ()), parsed)
    return {lib: ".".join(map(str, v)) for lib, v in newest.items()}


def fits(needs: dict[str, str], profile: str) -> bool:
    host = dict(pair.split("=", 1) for pair in profile.split(","))
    limits = {"GLIBC": host.get("libc", "").removeprefix("glibc-"), "GLIBCXX": host.get("glibcxx")}
    for lib, version in needs.items():
        limit = limits.get(lib)
        if limit and tuple(map(int, version.split("."))) > tuple(map(int, limit.split("."))):
            return False
    return True


def run_project(
    proxy: ProxyProcess, project: str, profile: str, timeout: float
) -> dict[str, object]:
    before = fetched(proxy)
    started = time.monotonic()
    with httpx.stream(
        "GET",
        proxy.url + f"p/{profile}/simple/{project}/",
        headers={"Accept": JSON_V1},
        timeout=120,
    ) as response:
        first_byte = time.monotonic() - started
        body = response.read()
        total = time.monotonic() - started
        provisional = "max-age=5," in response.headers.get("cache-control", "")
        status = response.status_code
    files = len(json.loads(body)["files"]) if status == 200 else 0
    data = explain(proxy, project, profile)
    while not data["frontier"]["settled"]:  # type: ignore[index]
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.5)
        data = explain(proxy, project, profile)
    settle = time.monotonic() - started
    frontier = data["frontier"]
    assert isinstance(frontier, dict)
    result: dict[str, object] = {
        "project": project,
        "page_files": data["served"] + data["hidden"],  # type: ignore[operator]
        "served_files": files,
        "first_byte_s": round(first_byte, 3),
        "first_page_s": round(total, 3),
        "first_provisional": provisional,
        "settled": frontier["settled"],
        "settle_s": round(settle, 1),
        "fetched_mb": round((fetched(proxy) - before) / 1e6, 1),
        "verified_versions": frontier["verified_versions"],
        "pip_would_install": data["pip_would_install"],
    }
    result.update(deliver(proxy, project, profile))
    return result


def deliver(proxy: ProxyProcess, project: str, profile: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
        env.update(
            PIP_CONFIG_FILE=os.devnull,
            PIP_USER_AGENT_USER_DATA=profile,
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_NO_CACHE_DIR="1",
        )
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["-d", tmp, "--index-url", proxy.url + "simple/", project]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            return {"delivered": None, "error": last}
        needs = elf_needs(wheels[0])
        return {"delivered": wheels[0].name, "readelf": needs, "fits": fits(needs, profile)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("projects", nargs="*", default=DEFAULT_PROJECTS)
    parser.add_argument("--profile", default=CENTOS7)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait per walk")
    parser.add_argument("--json", type=Path, help="also write the results here")
    argv = sys.argv[1:]
    serve_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    results = []
    # No --upstream: hostfit asks pip for its index, as a user's first run does.
    with (
        tempfile.TemporaryDirectory() as tmp,
        ProxyProcess(*serve_args, cache_dir=Path(tmp) / "cache") as proxy,
    ):
        for project in args.projects:
            result = run_project(proxy, project, args.profile, args.timeout)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(f"\nprofile {args.profile}; date {time.strftime('%Y-%m-%d')}\n")
    print("| project | files | first page | provisional | settled after | fetched | delivered "
          "| readelf: needs | fits |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        needs = ", ".join(f"{k} {v}" for k, v in dict(r.get("readelf") or {}).items()) or "—"
        delivered = r.get("delivered") or f"nothing ({r.get('error')})"
        settled = f"{r['settle_s']} s" if r["settled"] else f"not in {r['settle_s']} s"
        print(
            f"| {r['project']} | {r['page_files']} | {r['first_page_s']} s "
            f"| {'yes' if r['first_provisional'] else 'no'} | {settled} | {r['fetched_mb']} MB "
            f"| {delivered} | {needs} | {r.get('fits', '—')} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r.get("fits", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
