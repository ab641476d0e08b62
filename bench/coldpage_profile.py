"""Where a cold page's time goes: one grpcio-size page (11,000 files, 4.9 MB of JSON)
asked of hostfit for the first time, under cProfile.

``.venv/bin/python bench/coldpage_profile.py [--files N] [--repeat R] [--accept ...]``

The app runs in this process, its lifespan entered by hand, and requests go through
httpx's ASGI transport, so the whole request is on one thread; work the server hands
to a thread (rendering, the state store) is run inline here so that the profile sees
it. The upstream is nginx serving a static page, as in bench/compare_bench.py. Wall
times are taken without the profiler first (real threads), then one profiled request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from servers import NginxServer  # noqa: E402
from synthetic import Shape, synthetic_files, write_project, write_root  # noqa: E402

from proxy.edge.app import build_app  # noqa: E402
from proxy.edge.config import Settings  # noqa: E402

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1,"
    " text/html; q=0.01"
)
# Functions that stand for a stage of the cold path, by (file suffix, function name).
STAGES = [
    ("upstream fetch (HTTP, body read, gunzip)", "layers/upstream.py", "_read"),
    ("parse JSON into models", "core/pages.py", "parse_json_page"),
    ("parse HTML into models", "core/pages.py", "parse_html_page"),
    ("page cache: encode to store (gzip)", "layers/page_cache.py", "encode"),
    ("variants layer: variant wheels grouped", "layers/variants.py", "_groups"),
    ("page cache: state store write", "stores/embedded.py", "set"),
    ("origin filter", "layers/origins.py", "page"),
    ("hash filling", "layers/hash_fill.py", "page"),
    ("policy (rules)", "layers/policy.py", "page"),
    ("host filter", "layers/host_filter.py", "page"),
    ("rewrite layer", "layers/rewrite.py", "page"),
    ("metadata hashes known", "edge/metadata.py", "known_hashes"),
    ("links to the proxy", "core/links.py", "link_page"),
    ("render JSON, linked", "core/links.py", "render_linked_json"),
    ("render JSON", "core/pages.py", "render_json_page"),
    ("render HTML", "core/pages.py", "render_html_page"),
    ("render cache (ETag)", "edge/render.py", "put"),
    ("gzip compress (pages, stored sources)", "edge/compression.py", "gzipped"),
    ("whole request", "edge/app.py", "simple_project"),
]
T = TypeVar("T")


async def _inline(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return func(*args, **kwargs)


async def cold_requests(
    app: Any, names: list[str], headers: dict[str, str], profile: cProfile.Profile | None
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each request; CPU time is this process's, all threads, so
    other load on the machine counts less in it than in the wall time."""
    times = []
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=300) as client,
    ):
        await client.get("/readyz")
        for name in names:
            if profile is not None:
                profile.enable()
            began, cpu = time.perf_counter(), time.process_time()
            response = await client.get(f"/simple/{name}/", headers=headers)
            times.append((time.perf_counter() - began, time.process_time() - cpu))
            if profile is not None:
                profile.disable()
            response.raise_for_status()
    return times


def stage_table(stats: pstats.Stats) -> str:
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    lines = [f"{'stage':<44}{'calls':>7}{'cumulative ms':>15}"]
    for label, suffix, function in STAGES:
        calls, cumulative = 0, 0.0
        for (filename, _, name), (_, ncalls, _, cum, _) in entries.items():
            if filename.endswith(suffix) and name == function:
                calls += ncalls
                cumulative += cum
        if calls:
            lines.append(f"{label:<44}{calls:>7}{cumulative * 1e3:>15.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=11_000)
    parser.add_argument("--repeat", type=int, default=5, help="cold requests timed, unprofiled")
    parser.add_argument("--accept", default=PIP_ACCEPT)
    parser.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hostfit-coldprofile-"))
    work.chmod(0o755)
    root = work / "www"
    upstream = NginxServer.upstream(work / "nginx", root, 1)
    names = [f"grpcio-cold{i}" for i in range(args.repeat + 1)]
    for name in names:
        write_project(root, name, synthetic_files(name, Shape(args.files)))
    write_root(root, names)
    headers = {"Accept": args.accept, "User-Agent": "bench/1"}
    if args.gzip:
        headers["Accept-Encoding"] = "gzip"
    upstream.start()
    try:
        settings = Settings(upstreams=(upstream.index,), cache_dir=work / "cache1")
        wall = asyncio.run(cold_requests(build_app(settings), names[:-1], headers, None))
        profile = cProfile.Profile()
        asyncio.to_thread = _inline  # type: ignore[assignment]
        settings = Settings(upstreams=(upstream.index,), cache_dir=work / "cache2")
        asyncio.run(cold_requests(build_app(settings), names[-1:], headers, profile))
    finally:
        upstream.stop()

    out = io.StringIO()
    walls, cpus = [w * 1e3 for w, _ in wall], [c * 1e3 for _, c in wall]
    out.write(
        f"cold page of {args.files} files, Accept: {args.accept!r}, gzip: {args.gzip}\n"
        f"unprofiled, {len(wall)} cold requests: wall median {statistics.median(walls):.0f} ms"
        f" (min {min(walls):.0f}, max {max(walls):.0f}); CPU median"
        f" {statistics.median(cpus):.0f} ms (min {min(cpus):.0f})\n\n"
    )
    stats = pstats.Stats(profile, stream=out)
    out.write(stage_table(stats) + "\n\n")
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    text = out.getvalue().replace(str(BENCH.parent) + "/", "")
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
