"""hostfit side by side with its peers, against one local upstream, in one run.

``bench/run compare [--quick | --full] [--workers N] [--seconds S] [--json FILE]``

One nginx is the upstream: it serves synthetic pages shaped like the public index's
(PEP 691 JSON and PEP 503 HTML, pre-compressed) and real files. Every proxy reads
from it: nginx proxy_cache, proxpi (when installed in bench/.cache/venv-proxpi, which
``bench/run`` does) and hostfit. The same nginx, asked directly, is the 1.00 of every
ratio, measured in the same run. Workloads (issue 15):

- cached page (numpy's 4,415 files), HTML, JSON and JSON with gzip, 64 connections:
  requests/s, and the JSON p99;
- a cached 200 MiB file: MB/s, with hostfit's resident memory while serving it;
- cold pages: the first request for a project no proxy has seen (pip's Accept, gzip,
  no host profile), on five pages of 150 to 11,000 files, each size asked on fresh
  copies; the median of the five, and grpcio's 11,000 files (4.9 MB of JSON) alone;
  also measured on ``floor`` (`floor_proxy`: fetch, inflate, parse, relink, write and
  compress, nothing else), the least a Python proxy on hostfit's stack spends;
- a Range request for a file not cached yet: the status answered;
- a small page filtered for pip's User-Agent at 64 connections, hostfit and nginx each
  with 1, 2 and 4 worker processes;
- ``pip download`` of 7 projects and ``uv pip compile`` of 7 pins, cold (the proxy never
  saw them) and warm, each client with an empty cache of its own;
- with ``--full``: hostfit's resident memory while serving a 2 GiB file, first
  through from upstream and then from its cache.

``--quick`` runs every workload on tiny sizes for about a second each: it shows that
they all run (the smoke test does this), not how fast. Exits non-zero when a workload
fails on nginx, nginx proxy_cache or hostfit; a peer that cannot do one is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urljoin

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from load import generator, load  # noqa: E402
from servers import (  # noqa: E402
    FloorServer,
    HostfitServer,
    NginxServer,
    ProxpiServer,
    Server,
    proxpi_installed,
    quiet,
)
from synthetic import (  # noqa: E402
    COLD_SHAPES,
    QUICK_SHAPES,
    Shape,
    escaped,
    place_file,
    synthetic_files,
    write_project,
    write_root,
)

from tests.support.clients import UV, clean_env  # noqa: E402
from tests.support.wheels import WheelSpec, build_wheel  # noqa: E402

JSON_V1 = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON_V1}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
PIP_AGENT = "pip/24.0 " + json.dumps(
    {
        "installer": {"name": "pip", "version": "24.0"},
        "python": "3.11.7",
        "implementation": {"name": "CPython", "version": "3.11.7"},
        "distro": {"name": "Debian GNU/Linux", "libc": {"lib": "glibc", "version": "2.36"}},
        "system": {"name": "Linux", "release": "6.1"},
        "cpu": "x86_64",
    }
)
PIP_HEADERS = {"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip", "User-Agent": PIP_AGENT}
# No installer in the User-Agent, so no host profile: the page every proxy serves alike.
COLD_HEADERS = {"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "bench/1"}
SERVERS = ("nginx", "nginx-cache", "proxpi", "hostfit", "floor")
MUST_WORK = ("nginx", "nginx-cache", "hostfit")
CLIENT_DEPS = 6  # plus the top project: 7 projects, 7 pins
CLIENT_VERSION = "9.0"

Cell = float | int | str


@dataclass(frozen=True)
class Sizes:
    seconds: float
    connections: int
    file_mib: int
    range_mib: int
    cold: dict[str, Shape]
    cold_copies: int
    warm_runs: int
    top_kib: int
    dep_kib: int
    page_files: int
    small_files: int
    worker_counts: tuple[int, ...]
    huge_gib: int  # 0: the 2 GiB memory workload is not run


def sizes(args: argparse.Namespace) -> Sizes:
    if args.quick:
        return Sizes(
            seconds=1, connections=16, file_mib=4, range_mib=1, cold=QUICK_SHAPES,
            cold_copies=1, warm_runs=1, top_kib=64, dep_kib=16, page_files=200,
            small_files=20, worker_counts=(1, 2), huge_gib=0,
        )  # fmt: skip
    # Warm client runs: one varies by a quarter from the next on a 2-core machine, so the
    # median of seven (three left pip's ratio to direct anywhere from 0.7 to 1.3).
    return Sizes(
        seconds=args.seconds, connections=64, file_mib=200, range_mib=8, cold=COLD_SHAPES,
        cold_copies=3, warm_runs=7, top_kib=4096, dep_kib=512, page_files=4415,
        small_files=40, worker_counts=(1, 2, 4), huge_gib=2 if args.full else 0,
    )  # fmt: skip


@dataclass
class Results:
    figures: dict[str, dict[str, Cell]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def put(self, workload: str, server: str, value: Cell) -> None:
        self.figures.setdefault(workload, {})[server] = value

    @contextlib.contextmanager
    def measuring(self, workload: str, server: str) -> Iterator[None]:
        """A failure is the figure: reported, and the run goes on with the next one."""
        try:
            yield
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.put(workload, server, f"error: {message}")
            self.notes.append(f"{workload} on {server}: {message}")

    def failed(self) -> list[str]:
        return [
            f"{w} on {s}"
            for w, cells in self.figures.items()
            for s, v in cells.items()
            if s in MUST_WORK and isinstance(v, str) and v.startswith("error")
        ]


@dataclass
class Bench:
    work: Path
    root: Path
    sizes: Sizes
    workers: int
    upstream: NginxServer
    servers: dict[str, Server] = field(default_factory=dict)
    cold_projects: dict[str, list[str]] = field(default_factory=dict)
    expected_files: dict[str, int] = field(default_factory=dict)
    results: Results = field(default_factory=Results)

    def each(self, workload: str) -> Iterator[tuple[str, Server]]:
        """Each server in turn, every server quiet before the next is measured."""
        for name, server in self.servers.items():
            if server.measures is not None and workload not in server.measures:
                continue
            yield name, server  # measured by the caller, under `Results.measuring`
            waited = quiet(list(self.servers.values()))
            if waited > 1.0:
                self.results.notes.append(f"{workload} on {name}: {waited:.0f} s to go quiet")


# The upstream's content ---------------------------------------------------------------


def random_file(path: Path, size: int, seed: int) -> Path:
    rng = random.Random(seed)
    with path.open("wb") as handle:
        left = size
        while left > 0:
            block = min(left, 1 << 20)
            handle.write(rng.randbytes(block))
            left -= block
    return path


def client_projects(
    prefix: str, s: Sizes, root: Path, src: Path
) -> dict[str, list[dict[str, object]]]:
    """A top project needing six others; each page has older versions as entries only,
    and a real wheel of the newest, which pip and uv pick."""
    deps = [f"{prefix}-dep{i}" for i in range(1, CLIENT_DEPS + 1)]
    pages = {}
    for i, project in enumerate([f"{prefix}-top", *deps]):
        top = i == 0
        payload = random.Random(f"{prefix}{i}").randbytes((s.top_kib if top else s.dep_kib) << 10)
        spec = WheelSpec(
            project,
            CLIENT_VERSION,
            files={f"{escaped(project)}/data.bin": payload},
            requires_dist=deps if top else [],
            requires_python=">=3.8",
        )
        wheel = build_wheel(spec, src)
        older = synthetic_files(project, Shape(60, pure=True))
        metadata = spec.metadata_text().encode()
        pages[project] = [*older, place_file(root, wheel, metadata=metadata)]
    return pages


def build_upstream(bench: Bench) -> None:
    s, root = bench.sizes, bench.root
    src = bench.work / "src"
    src.mkdir()
    projects: dict[str, list[dict[str, object]]] = {}
    projects["numpy"] = synthetic_files("numpy", Shape(s.page_files))
    projects["smallpkg"] = synthetic_files("smallpkg", Shape(s.small_files, pure=True))
    for kind, shape in s.cold.items():
        names = [f"{kind}-cold{i}" for i in range(s.cold_copies)]
        bench.cold_projects[kind] = names
        for name in names:
            projects[name] = synthetic_files(name, shape)
            bench.expected_files[name] = shape.files
    big = random_file(src / "bigfile-1.0.tar.gz", s.file_mib << 20, 1)
    projects["bigfile"] = [place_file(root, big)]
    ranged = random_file(src / "rangeprobe-1.0.tar.gz", s.range_mib << 20, 2)
    projects["rangeprobe"] = [place_file(root, ranged)]
    projects.update(client_projects("pipset", s, root, src / "pip"))
    projects.update(client_projects("uvset", s, root, src / "uv"))
    if s.huge_gib:
        huge = src / "hugefile-1.0.tar.gz"
        with huge.open("wb") as handle:
            handle.truncate(s.huge_gib << 30)  # sparse: no 2 GiB written to make it
        projects["hugefile"] = [place_file(root, huge)]
    for project, files in projects.items():
        write_project(root, project, files)
    write_root(root, projects)


# Helpers ----------------------------------------------------------------------------


def file_url(server: Server, project: str, headers: dict[str, str] | None = None) -> str:
    """The URL of the project's only (or newest) real file, as the server's page links it."""
    page_url = server.page_url(project)
    response = httpx.get(page_url, headers={"Accept": JSON_V1, **(headers or {})}, timeout=60)
    response.raise_for_status()
    files = response.json()["files"]
    wanted = [f for f in files if CLIENT_VERSION in f["filename"] or len(files) == 1]
    return urljoin(page_url, wanted[-1]["url"])


def get_as(url: str, headers: dict[str, str]) -> httpx.Response:
    """With exactly these headers, as wrk sends them (httpx adds an Accept-Encoding), so
    a cache is warmed for the variant the load asks for."""
    with httpx.Client(timeout=120) as client:
        request = client.build_request("GET", url, headers=headers)
        if "accept-encoding" not in {k.lower() for k in headers}:
            del request.headers["accept-encoding"]
        response = client.send(request)
        response.raise_for_status()
        return response


def fetch_whole(url: str, timeout: float = 600) -> int:
    """Follows redirects; returns the bytes received."""
    received = 0
    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            received += len(chunk)
    return received


def warm_file(server: Server, url: str) -> None:
    """Until the server answers from its own cache: proxpi redirects to upstream while
    its download runs in the background."""
    deadline = time.monotonic() + 300
    while True:
        fetch_whole(url)
        head = httpx.get(url, headers={"Range": "bytes=0-0"}, timeout=60)
        if head.status_code in (200, 206):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.name} never served {url} itself")
        time.sleep(0.2)


@contextlib.contextmanager
def sampled_rss(hostfit: HostfitServer) -> Iterator[list[int]]:
    """The largest resident set seen every 20 ms while the block runs (bytes)."""
    peak = [hostfit.rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            with contextlib.suppress(Exception):
                peak[0] = max(peak[0], hostfit.rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def timed(make: Callable[[], object]) -> float:
    began = time.perf_counter()
    make()
    return time.perf_counter() - began


# Workloads --------------------------------------------------------------------------


def cached_pages(bench: Bench) -> None:
    s = bench.sizes
    cases = {
        "page_html": {"Accept": "text/html"},
        "page_json": {"Accept": PIP_ACCEPT},
        "page_json_gzip": {"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip"},
    }
    for workload, headers in cases.items():
        for name, server in bench.each(workload):
            with bench.results.measuring(workload, name):
                url = server.page_url("numpy")
                for _ in range(2):
                    response = get_as(url, headers)
                figures = load(url, s.seconds, s.connections, headers)
                bench.results.put(workload, name, figures["rps"])
                if workload == "page_json":
                    bench.results.put("page_json_p99", name, figures["p99_ms"])
                if figures["errors"]:
                    bench.results.notes.append(
                        f"{workload} on {name}: {figures['errors']:.0f} socket errors (timeouts)"
                    )
                size = len(response.content)
                bench.results.put(f"{workload}_bytes", name, size)


def cold_pages(bench: Bench) -> None:
    per_kind: dict[str, dict[str, float]] = {}
    for name, server in bench.each("cold_median"):
        with bench.results.measuring("cold_median", name):
            with httpx.Client(headers=COLD_HEADERS, timeout=300) as client:
                client.get(server.index)  # the connection, and the proxy's start-up, not timed
                for kind, projects in bench.cold_projects.items():
                    times = []
                    for project in projects:
                        body = bytearray()
                        began = time.perf_counter()
                        with client.stream("GET", server.page_url(project)) as response:
                            for chunk in response.iter_raw():
                                body += chunk
                        times.append(time.perf_counter() - began)
                        response.raise_for_status()
                        data = bytes(body)
                        if response.headers.get("content-encoding") == "gzip":
                            data = gzip.decompress(data)
                        count = len(json.loads(data)["files"])
                        if count != bench.expected_files[project]:
                            raise RuntimeError(f"{project}: {count} files served")
                    per_kind.setdefault(kind, {})[name] = statistics.median(times) * 1e3
            kinds = list(bench.cold_projects)
            bench.results.put(
                "cold_median", name, statistics.median(per_kind[k][name] for k in kinds)
            )
            bench.results.put("cold_grpcio", name, per_kind["grpcio"][name])
            for kind in kinds:
                bench.results.put(f"cold_{kind}", name, per_kind[kind][name])


def range_uncached(bench: Bench) -> None:
    for name, server in bench.each("range_uncached"):
        with bench.results.measuring("range_uncached", name):
            url = file_url(server, "rangeprobe")
            response = httpx.get(
                url, headers={"Range": "bytes=1000-1999"}, timeout=120, follow_redirects=True
            )
            expected = {206: 1000, 200: bench.sizes.range_mib << 20}
            if len(response.content) != expected.get(response.status_code, -1):
                raise RuntimeError(f"{response.status_code} with {len(response.content)} bytes")
            bench.results.put("range_uncached", name, response.status_code)


def cached_file(bench: Bench) -> None:
    s = bench.sizes
    for name, server in bench.each("file_cached"):
        with bench.results.measuring("file_cached", name):
            url = file_url(server, "bigfile")
            if isinstance(server, HostfitServer):
                before = server.rss()
                with sampled_rss(server) as peak:
                    warm_file(server, url)
                bench.results.put("file_rss_first_mib", name, (peak[0] - before) / 2**20)
            else:
                warm_file(server, url)
            if isinstance(server, HostfitServer):
                before = server.rss()
                with sampled_rss(server) as peak:
                    figures = load(url, s.seconds, 2, {})
                bench.results.put("file_rss_cached_mib", name, (peak[0] - before) / 2**20)
            else:
                figures = load(url, s.seconds, 2, {})
            bench.results.put("file_cached", name, figures["mb_s"])


def small_pages(bench: Bench) -> None:
    s = bench.sizes
    for workers in s.worker_counts:
        workload = f"small_{workers}w"
        extra: list[Server] = []
        servers: dict[str, Server] = {}
        try:
            for name, server in bench.servers.items():
                if server.measures is not None and workload not in server.measures:
                    continue
                if workers == bench.workers:
                    servers[name] = server
                elif name == "nginx":
                    work = bench.work / f"nginx-{workers}w"
                    other = NginxServer.upstream(work, bench.root, workers).start()
                    extra.append(other)
                    servers[name] = other
                elif name == "hostfit":
                    work = bench.work / f"hostfit-{workers}w"
                    other = HostfitServer(work, bench.upstream, workers).start()
                    extra.append(other)
                    servers[name] = other
            for name, server in servers.items():
                with bench.results.measuring(workload, name):
                    url = server.page_url("smallpkg")
                    for _ in range(2 * workers):  # every worker has it decided
                        get_as(url, PIP_HEADERS)
                    figures = load(url, s.seconds, s.connections, PIP_HEADERS)
                    bench.results.put(workload, name, figures["rps"])
                quiet([*bench.servers.values(), *extra])
        finally:
            for other in extra:
                other.stop()


def clients(bench: Bench) -> None:
    s = bench.sizes
    for name, server in bench.each("pip_cold"):
        with bench.results.measuring("pip_cold", name):
            runs = []
            for run in range(1 + s.warm_runs):
                dest = bench.work / f"pip-{name}-{run}"
                home = bench.work / f"home-pip-{name}-{run}"
                command = [
                    sys.executable, "-m", "pip", "download", "--no-cache-dir", "-q", "-d",
                    str(dest), "--index-url", server.index, "pipset-top",
                ]  # fmt: skip
                runs.append(timed(lambda c=command, h=home: _client(c, h)))
                got = len(list(dest.glob("*.whl")))
                if got != 1 + CLIENT_DEPS:
                    raise RuntimeError(f"pip downloaded {got} wheels")
            bench.results.put("pip_cold", name, runs[0])
            bench.results.put("pip_warm", name, statistics.median(runs[1:]))
    pins = [f"uvset-top=={CLIENT_VERSION}"]
    pins += [f"uvset-dep{i}=={CLIENT_VERSION}" for i in range(1, CLIENT_DEPS + 1)]
    requirements = bench.work / "requirements.in"
    requirements.write_text("\n".join(pins) + "\n")
    for name, server in bench.each("uv_cold"):
        with bench.results.measuring("uv_cold", name):
            runs = []
            for run in range(1 + s.warm_runs):
                out = bench.work / f"uv-{name}-{run}.txt"
                home = bench.work / f"home-uv-{name}-{run}"
                command = [
                    str(UV), "pip", "compile", "--no-cache", "-q", "--index-url", server.index,
                    "--python-version", "3.11", str(requirements), "-o", str(out),
                ]  # fmt: skip
                runs.append(timed(lambda c=command, h=home: _client(c, h)))
                locked = [line for line in out.read_text().splitlines() if "==" in line]
                if len(locked) != len(pins):
                    raise RuntimeError(f"uv locked {len(locked)} of {len(pins)} pins")
            bench.results.put("uv_cold", name, runs[0])
            bench.results.put("uv_warm", name, statistics.median(runs[1:]))


def _client(command: list[str], home: Path) -> None:
    home.mkdir(parents=True)
    done = subprocess.run(
        command, env=clean_env(home), capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed: {done.stderr.strip()[-500:]}")


def huge_file(bench: Bench) -> None:
    """hostfit alone: resident memory while a 2 GiB file goes through, then from cache."""
    hostfit = bench.servers["hostfit"]
    assert isinstance(hostfit, HostfitServer)
    size = bench.sizes.huge_gib << 30
    with bench.results.measuring("huge_first_mib", "hostfit"):
        url = file_url(hostfit, "hugefile")
        before = hostfit.rss()
        with sampled_rss(hostfit) as peak:
            seconds = timed(lambda: fetch_whole(url, timeout=1800))
        bench.results.put("huge_first_mib", "hostfit", (peak[0] - before) / 2**20)
        bench.results.put("huge_first_mb_s", "hostfit", size / seconds / 1e6)
        before = hostfit.rss()
        with sampled_rss(hostfit) as peak:
            seconds = timed(lambda: fetch_whole(url, timeout=1800))
        bench.results.put("huge_cached_mib", "hostfit", (peak[0] - before) / 2**20)
        bench.results.put("huge_cached_mb_s", "hostfit", size / seconds / 1e6)
    with bench.results.measuring("huge_cached_mb_s", "nginx"):
        url = file_url(bench.upstream, "hugefile")
        seconds = timed(lambda: fetch_whole(url, timeout=1800))
        bench.results.put("huge_cached_mb_s", "nginx", size / seconds / 1e6)


# The report -------------------------------------------------------------------------

# (key, label, how): "rate" higher is better, ratio to nginx; "time" lower is better,
# ratio to nginx; "ms", "status", "mib", "mb_s": the figure itself.
ROWS = [
    ("page_html", "cached page, HTML, {c} connections", "rate"),
    ("page_json", "cached page, JSON, {c} connections", "rate"),
    ("page_json_p99", "JSON p99 at {c} connections", "time"),
    ("page_json_gzip", "cached page, JSON with gzip", "rate"),
    ("file_cached", "cached {f} MiB file, MB/s", "rate"),
    ("cold_median", "cold page, median of 5 projects", "time"),
    ("cold_grpcio", "cold grpcio-size page (ms)", "ms"),
    ("range_uncached", "Range on a file not cached yet", "status"),
    ("small_1w", "small page for pip, 1 worker", "rate"),
    ("small_2w", "small page for pip, 2 workers", "rate"),
    ("small_4w", "small page for pip, 4 workers", "rate"),
    ("pip_warm", "pip download, 7 projects, warm", "time"),
    ("pip_cold", "pip download, 7 projects, cold", "time"),
    ("uv_warm", "uv pip compile, 7 pins, warm", "time"),
    ("uv_cold", "uv pip compile, 7 pins, cold", "time"),
    ("file_rss_first_mib", "RSS growth, {f} MiB file first served (MiB)", "mib"),
    ("file_rss_cached_mib", "RSS growth, {f} MiB file cached (MiB)", "mib"),
    ("huge_first_mib", "RSS growth, 2 GiB file through (MiB)", "mib"),
    ("huge_cached_mib", "RSS growth, 2 GiB file cached (MiB)", "mib"),
    ("huge_cached_mb_s", "2 GiB file cached, MB/s", "mb_s"),
]
ABSOLUTE = {"rate": "{:.0f}", "time": "{:.3g}", "ms": "{:.1f}", "status": "{}", "mib": "{:.0f}"}


def _shown(value: Cell | None, reference: Cell | None, how: str, ratio: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return "not installed" if value == "not installed" else "error"
    if ratio and how in ("rate", "time") and isinstance(reference, float | int) and reference:
        figure = value / reference
        return f"{figure:.2f}" if figure >= 0.1 else f"{figure:.3f}"
    if how == "mb_s":
        return f"{value:.0f}"
    return ABSOLUTE.get(how, "{:.3g}").format(value)


def table(results: Results, s: Sizes, ratio: bool) -> str:
    width = 46
    lines = [f"{'':<{width}}" + "".join(f"{name:>15}" for name in SERVERS)]
    for key, label, how in ROWS:
        cells = results.figures.get(key)
        if not cells:
            continue
        text = label.format(c=s.connections, f=s.file_mib)
        reference = cells.get("nginx")
        row = [_shown(cells.get(name), reference, how, ratio) for name in SERVERS]
        lines.append(f"{text:<{width}}" + "".join(f"{c:>15}" for c in row))
    return "\n".join(lines)


WORKLOADS: dict[str, Callable[[Bench], None]] = {
    "cached_pages": cached_pages,
    "cold_pages": cold_pages,
    "range_uncached": range_uncached,
    "cached_file": cached_file,
    "small_pages": small_pages,
    "clients": clients,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="tiny sizes: checks each runs")
    mode.add_argument("--full", action="store_true", help="also the 2 GiB memory workload")
    parser.add_argument("--seconds", type=float, default=5, help="per throughput run")
    parser.add_argument("--workers", type=int, default=1, help="processes of each server")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=list(WORKLOADS),
        help=f"a comma-separated subset of: {', '.join(WORKLOADS)}",
    )
    args = parser.parse_args()
    unknown = set(args.only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    s = sizes(args)
    began = time.monotonic()

    work = Path(tempfile.mkdtemp(prefix="hostfit-compare-"))
    work.chmod(0o755)  # nginx workers may drop root's privileges and must read the files
    root = work / "www"
    upstream = NginxServer.upstream(work / "nginx", root, args.workers)
    bench = Bench(work, root, s, args.workers, upstream)
    started: list[Server] = []
    try:
        build_upstream(bench)
        bench.servers["nginx"] = upstream.start()
        started.append(upstream)
        cache = NginxServer.cache(work / "nginx-cache", upstream, args.workers).start()
        started.append(cache)
        bench.servers["nginx-cache"] = cache
        if proxpi_installed():
            proxpi = ProxpiServer(work / "proxpi", upstream).start()
            started.append(proxpi)
            bench.servers["proxpi"] = proxpi
        else:
            print("proxpi: not installed (bench/run installs it from the index); skipped")
            bench.results.notes.append("proxpi not installed")
        hostfit = HostfitServer(work / "hostfit", upstream, args.workers).start()
        started.append(hostfit)
        bench.servers["hostfit"] = hostfit
        if "cold_pages" in args.only:
            floor = FloorServer(work / "floor", upstream).start()
            started.append(floor)
            bench.servers["floor"] = floor

        for name in args.only:
            WORKLOADS[name](bench)
        if s.huge_gib:
            huge_file(bench)
        bench.results.put("peak_rss_mib", "hostfit", hostfit.rss("VmHWM") / 2**20)
    finally:
        for server in reversed(started):
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if "proxpi" not in bench.servers:
        for cells in bench.results.figures.values():
            cells.setdefault("proxpi", "not installed")

    results = bench.results
    elapsed = time.monotonic() - began
    print(
        f"\n{date.today()}, {platform.machine()}, {os.cpu_count()} cores, python"
        f" {platform.python_version()}; load: {generator()}; {args.workers} worker(s) each;"
        f" {'quick' if args.quick else 'full' if args.full else 'default'} run in {elapsed:.0f} s"
    )
    print("\nRatios to the upstream nginx (throughput: higher is better; times: lower is better)")
    print(table(results, s, ratio=True))
    print("\nFigures (req/s, MB/s, ms for p99 and cold pages, s for clients, MiB)")
    print(table(results, s, ratio=False))
    for kind in s.cold:
        cells = results.figures.get(f"cold_{kind}", {})
        shown = ", ".join(f"{n} {v:.1f}" for n, v in cells.items() if isinstance(v, float | int))
        print(f"cold {kind} ({s.cold[kind].files} files), ms: {shown}")
    for note in results.notes:
        print(f"note: {note}")
    if args.json:
        data = {
            "date": str(date.today()),
            "cores": os.cpu_count(),
            "mode": "quick" if args.quick else "full" if args.full else "default",
            "workers": args.workers,
            "load": generator(),
            "figures": results.figures,
            "notes": results.notes,
        }
        args.json.write_text(json.dumps(data, indent=2))
    failed = results.failed()
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
