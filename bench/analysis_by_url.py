"""Analysis by URL on large CUDA wheels: the share of each wheel's bytes it fetches.

    bench/run analysis-url [PROJECT==VERSION ...] [--direct] [--no-check] [--wheels DIR]

For every wheel (by default the pinned CUDA wheels in `DEFAULT`), the Linux x86_64 file
of that version is looked up on the index this machine's pip uses (``PIP_INDEX_URL``,
else pip's default), downloaded once into bench/.cache/cuda-wheels/ (sha256 checked)
and served by a local HTTP server that honours Range, so that every run reads the
same bytes; ``--direct`` reads from the index's own file URL instead (no download,
network-bound). The analysis runs in this process as the server's workers run it
(`proxy.analysis.remote.RemoteFile` and `analyze_wheel(..., far=True)`), and prints
the bytes fetched, their share of the wheel, the requests and the time, both for the
early answer (every fact but the GPU code, `proxy.analysis.early`) and for the whole
report. Unless ``--no-check``, both are compared with those of the local file, inflated
forward from its start, and the line says whether they are the same.

It needs the network, so it is neither part of the test suite nor of ``bench/run``'s
default run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast
from urllib.parse import quote

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from inspect_bench import range_server  # noqa: E402

from proxy.analysis.early import EarlyReport  # noqa: E402
from proxy.analysis.remote import RemoteFile  # noqa: E402
from proxy.analysis.wheel import analyze_wheel  # noqa: E402
from proxy.core.report import Report  # noqa: E402

CACHE = BENCH / ".cache" / "cuda-wheels"
JSON_V1 = "application/vnd.pypi.simple.v1+json"
# Large wheels whose libraries are mostly CUDA fat binaries. Pinned, so that runs on
# different days read the same bytes.
DEFAULT = (
    "nvidia-cusparse-cu12==12.5.9.5",
    "nvidia-cublas-cu12==12.9.3.13",
    "nvidia-cudnn-cu12==9.9.0.52",
    "torch==2.9.1",
)
PLATFORM = "x86_64.whl"
PYTHON_TAGS = ("py3-none", "cp311-cp311")


@dataclass(frozen=True)
class Wheel:
    filename: str
    url: str
    sha256: str
    size: int


def index_url() -> str:
    configured = os.environ.get("PIP_INDEX_URL")
    if configured:
        return configured.rstrip("/")
    from pip._internal.models.index import PyPI  # pip's default, never written here

    return str(PyPI.simple_url).rstrip("/")


def find_wheel(client: httpx.Client, requirement: str) -> Wheel:
    project, _, version = requirement.partition("==")
    page = client.get(f"{index_url()}/{project}/", headers={"Accept": JSON_V1})
    page.raise_for_status()
    prefix = project.replace("-", "_") + "-" + version + "-"
    for entry in page.json()["files"]:
        name = entry["filename"]
        if (
            name.lower().startswith(prefix.lower())
            and name.endswith(PLATFORM)
            and "linux" in name
            and any(f"-{tags}-" in name for tags in PYTHON_TAGS)
        ):
            return Wheel(name, entry["url"], entry["hashes"]["sha256"], int(entry["size"]))
    raise SystemExit(f"{requirement}: no Linux x86_64 wheel on the index")


def download(client: httpx.Client, wheel: Wheel) -> Path:
    target = CACHE / wheel.filename
    if target.exists() and target.stat().st_size == wheel.size:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with client.stream("GET", wheel.url) as response, partial.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != wheel.sha256:
        partial.unlink()
        raise SystemExit(f"{wheel.filename}: sha256 mismatch")
    partial.replace(target)
    return target


@dataclass(frozen=True)
class Measured:
    report: Report
    fetched: int
    requests: int
    seconds: float


def by_url(url: str, wheel: Wheel) -> tuple[Measured | None, Measured]:
    """The early answer (None without fat binaries) and the report, as fetched by then."""
    started = time.monotonic()
    told: list[Measured] = []
    with RemoteFile(url) as remote:

        def early(found: EarlyReport) -> None:
            seconds = time.monotonic() - started
            told.append(Measured(found.report, remote.fetched, remote.requests, seconds))

        report = analyze_wheel(
            cast(IO[bytes], remote), wheel.filename, wheel.sha256, far=remote.ranged, early=early
        )
        seconds = time.monotonic() - started
        return (told[0] if told else None), Measured(
            report, remote.fetched, remote.requests, seconds
        )


def by_file(path: Path, wheel: Wheel) -> tuple[Report | None, Report]:
    told: list[Report] = []
    with path.open("rb") as source:
        report = analyze_wheel(
            source, wheel.filename, wheel.sha256, early=lambda found: told.append(found.report)
        )
    return (told[0] if told else None), report


def needs_text(report: Report) -> str:
    if report.status != "ok":
        return f"unanalysable: {report.reason}"
    needs = report.requires
    sass, ptx = needs.gpu_sms or (), needs.gpu_ptx or ()
    return (
        f"glibc {needs.glibc or '-'}, GLIBCXX {needs.glibcxx or '-'},"
        f" CUDA {needs.cuda_major or '-'}; sm {'/'.join(sass) or '-'}; ptx {'/'.join(ptx) or '-'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", nargs="*", help="PROJECT==VERSION (default: pinned set)")
    parser.add_argument("--direct", action="store_true", help="read from the index's file URL")
    parser.add_argument("--no-check", action="store_true", help="skip the by-file comparison")
    args = parser.parse_args(argv)
    with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60, connect=15)) as client:
        wheels = [find_wheel(client, r) for r in args.requirements or DEFAULT]
        paths = {} if args.direct else {w.filename: download(client, w) for w in wheels}
    source = "the index's file URLs" if args.direct else "a local Range server"
    print(f"{time.strftime('%Y-%m-%d')}, by URL from {source}")
    with range_server(CACHE) as origin:
        for wheel in wheels:
            url = wheel.url if args.direct else f"{origin}/{quote(wheel.filename)}"
            early, measured = by_url(url, wheel)
            checked = not args.no_check and not args.direct
            expected = by_file(paths[wheel.filename], wheel) if checked else (None, None)
            print(f"{wheel.filename}, {wheel.size / 1e6:.0f} MB", flush=True)
            for label, got, want in (
                ("early answer", early, expected[0]),
                ("report", measured, expected[1]),
            ):
                if got is None:
                    print(f"  {label:<14} none: no CUDA fat binaries")
                    continue
                same = "same as by file" if got.report == want else "DIFFERENT from by file"
                check = same if checked else ""
                print(
                    f"  {label:<14} {got.fetched / 1e6:>8.1f} MB {got.fetched / wheel.size:>6.1%}"
                    f" {got.requests:>6} requests {got.seconds:>6.1f} s  {check}",
                    flush=True,
                )
            print(f"  {needs_text(measured.report)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
