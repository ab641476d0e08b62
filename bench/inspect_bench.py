"""Benchmark `hostfit inspect` against `auditwheel show`, and URL inspection's bytes fetched.

    python bench/inspect_bench.py [WHEEL ...] [--no-stored] [--no-auditwheel]

For every wheel: wall time and peak RSS of `hostfit inspect --json WHEEL` and of
`auditwheel show WHEEL`, each run as a child process measured with wait4().
For every wheel over 50 MB: `hostfit inspect URL` against a local HTTP server that
honours Range (python's http.server does not), the share of the wheel's bytes it
fetched, and whether its report is the one inspecting the file gave. Unless
--no-stored, each large wheel is also rewritten with stored (uncompressed) members
into bench/.cache/, to show how much of the URL cost is deflate's. Each line ends
with the aims it meets: at least 5 times faster than auditwheel on a large wheel,
under 15% of a large wheel's bytes fetched by URL.

Without arguments it uses /opt/wheels/*.whl and tests/.cache/wheels/*.whl.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
LARGE = 50 * 1000 * 1000
AIM_SPEEDUP = 5.0
AIM_SHARE = 0.15
_FETCHED = re.compile(r"fetched ([\d,]+) bytes .* of ([\d,]+) \(.*\) in (\d+) requests")


@dataclass
class Run:
    seconds: float
    peak_mb: float
    returncode: int
    stderr: str
    stdout: str


def measure(command: Sequence[str]) -> Run:
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read()
    return Run(seconds, usage.ru_maxrss / 1024, process.returncode, stderr, stdout)


def same_report(by_file: str, by_url: str) -> bool:
    """Whether two `inspect --json` reports agree (a URL read does not hash the wheel)."""
    first, second = json.loads(by_file), json.loads(by_url)
    first.pop("sha256", None)
    second.pop("sha256", None)
    return bool(first == second)


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed")
    return found


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """GET with a single `Range: bytes=a-b` / `bytes=-n`, enough for RemoteFile."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            else:
                start = max(0, size - int(match.group(2)))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with path.open("rb") as source:
            source.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = source.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


@contextmanager
def range_server(directory: Path) -> Iterator[str]:
    def handler(*args: object, **kwargs: object) -> _RangeHandler:
        return _RangeHandler(*args, directory=str(directory), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def stored_copy(wheel: Path) -> Path:
    """The same members, uncompressed (a valid wheel: members may be stored)."""
    target = CACHE / "stored" / wheel.name
    if target.exists() and target.stat().st_mtime >= wheel.stat().st_mtime:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(partial, "w") as out:
        for info in source.infolist():
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.external_attr = info.external_attr
            copy.create_system = info.create_system
            copy.compress_type = zipfile.ZIP_STORED
            with source.open(info) as data, out.open(copy, "w", force_zip64=True) as sink:
                shutil.copyfileobj(data, sink, 1 << 20)
    partial.replace(target)
    return target


def url_share(hostfit: str, wheel: Path) -> tuple[Run, int, int, int]:
    with range_server(wheel.parent) as origin:
        run = measure([hostfit, "inspect", "--json", f"{origin}/{quote(wheel.name)}"])
    match = _FETCHED.search(run.stderr)
    if run.returncode not in (0, 1) or match is None:
        raise SystemExit(f"inspect by URL failed: {run.stderr}")
    fetched, size, requests = (int(g.replace(",", "")) for g in match.groups())
    return run, fetched, size, requests


def default_wheels() -> list[Path]:
    found = sorted(Path("/opt/wheels").glob("*.whl"))
    found += sorted((ROOT / "tests" / ".cache" / "wheels").glob("*.whl"))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="*", type=Path)
    parser.add_argument("--no-stored", action="store_true", help="skip the stored-copy runs")
    parser.add_argument("--no-auditwheel", action="store_true", help="skip auditwheel")
    args = parser.parse_args(argv)
    wheels = args.wheels or default_wheels()
    if not wheels:
        raise SystemExit("no wheels: pass some, or run the tests once to fill the cache")
    hostfit, auditwheel = tool("hostfit"), tool("auditwheel")

    print(f"{'wheel':<58} {'MB':>7} {'hostfit s':>9} {'MB rss':>7} {'auditwheel s':>12} "
          f"{'MB rss':>7} {'speed-up':>8}")  # fmt: skip
    local_reports = {}
    for wheel in wheels:
        ours = measure([hostfit, "inspect", "--json", str(wheel)])
        local_reports[wheel] = ours.stdout
        if ours.returncode not in (0, 1):
            raise SystemExit(f"hostfit inspect failed on {wheel}: {ours.stderr}")
        size_mb = wheel.stat().st_size / 1e6
        line = f"{wheel.name[:58]:<58} {size_mb:>7.1f} {ours.seconds:>9.2f} {ours.peak_mb:>7.0f}"
        if not args.no_auditwheel:
            theirs = measure([auditwheel, "show", str(wheel)])
            speedup = theirs.seconds / ours.seconds
            line += f" {theirs.seconds:>12.2f} {theirs.peak_mb:>7.0f} {speedup:>7.1f}x"
            if wheel.stat().st_size > LARGE:
                line += "  aim met" if speedup >= AIM_SPEEDUP else "  aim missed"
        print(line, flush=True)

    large = [w for w in wheels if w.stat().st_size > LARGE]
    if large:
        print(f"\nURL inspection (local Range server), wheels over {LARGE // 1_000_000} MB:")
        print(f"{'wheel':<58} {'members':>8} {'fetched MB':>10} {'of MB':>7} {'share':>7} "
              f"{'requests':>8} {'s':>6}  report by URL = by file")  # fmt: skip
    for wheel in large:
        variants = [("deflated", wheel)]
        if not args.no_stored:
            variants.append(("stored", stored_copy(wheel)))
        for label, path in variants:
            run, fetched, size, requests = url_share(hostfit, path)
            aim = "aim met" if fetched / size < AIM_SHARE else "aim missed"
            same = (
                ""
                if path != wheel
                else ("same" if same_report(local_reports[wheel], run.stdout) else "DIFFERENT")
            )
            print(
                f"{path.name[:58]:<58} {label:>8} {fetched / 1e6:>10.1f} {size / 1e6:>7.1f} "
                f"{fetched / size:>7.1%} {requests:>8} {run.seconds:>6.2f}  {same:<9} {aim}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
