"""`hostfit inspect WHEEL_PATH_OR_URL [--json]`: what a wheel's binaries need from a host.

A path is read in place; a URL is read with HTTP range requests (the zip directory
and the members analysis asks for), and the number of bytes fetched is reported on
stderr, with a progress line while it runs when stderr is a terminal. Exit status:
0 for an ``ok`` report, 1 for ``unanalysable``, 2 when the wheel cannot be read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import IO, TextIO, cast
from urllib.parse import unquote, urlsplit

from proxy.analysis.wheel import analyze_wheel
from proxy.core.dotted import parse_dotted
from proxy.core.policy import is_numeric, split_version_name
from proxy.core.report import ElfFile, Report
from proxy.errors import HostfitError


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "inspect",
        help="show what a wheel's ELF binaries need from the host",
        description="Analyse a wheel (a local path or an http(s) URL) and print its report.",
    )
    parser.add_argument("wheel", metavar="WHEEL_PATH_OR_URL")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target: str = args.wheel
    try:
        if urlsplit(target).scheme in ("http", "https"):
            report = inspect_url(target, sys.stderr)
        else:
            report = inspect_file(Path(target))
    except (OSError, HostfitError) as exc:
        print(f"hostfit inspect: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # urllib's word on a URL it cannot split ('http://[::1')
        print(f"hostfit inspect: {target!r} is not a URL it can read: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render(report))
    return 0 if report.status == "ok" else 1


def inspect_file(path: Path) -> Report:
    with path.open("rb") as source:
        sha256 = hashlib.file_digest(source, "sha256").hexdigest()
        return analyze_wheel(source, path.name, sha256)


def inspect_url(url: str, stderr: TextIO) -> Report:
    from proxy.analysis.remote import RemoteFile  # the HTTP stack only when a URL needs it

    parts = urlsplit(url)
    filename = unquote(posixpath.basename(parts.path))
    # An index's file URL carries the hash in its fragment. It is checked when the
    # analysis fetched every byte; otherwise the report carries it as the URL's word,
    # and without a fragment the hash stays unknown (""): stderr says which.
    told = parts.fragment.removeprefix("sha256=") if parts.fragment.startswith("sha256=") else ""
    progress = _Progress(stderr) if stderr.isatty() else None
    with RemoteFile(parts._replace(fragment="").geturl(), progress=progress) as remote:
        report = analyze_wheel(cast(IO[bytes], remote), filename, told.lower(), far=remote.ranged)
        held = remote.held_sha256()
        if progress is not None:
            progress.clear()
        share = remote.fetched / remote.size if remote.size else 1.0
        how = "range requests" if remote.ranged else "a full download (no Range support)"
        print(
            f"fetched {remote.fetched:,} bytes ({_size(remote.fetched)}) of {remote.size:,} "
            f"({share:.1%}) in {remote.requests} requests, by {how}",
            file=stderr,
        )
    if held is not None and told and held != told.lower():
        raise HostfitError(f"{filename}: its bytes' sha256 is {held}, the URL says {told}")
    if held is not None:
        return replace(report, sha256=held)
    if told:
        print("sha256: the URL's, not checked (only part of the file was read)", file=stderr)
    else:
        print("sha256: unknown (only part of the file was read; the URL names none)", file=stderr)
    return report


class _Progress:
    """A self-overwriting stderr line, shown once a fetch has taken a moment."""

    def __init__(self, stream: TextIO, delay: float = 0.5) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.delay = delay
        self.shown = False
        self.last = 0.0

    def __call__(self, fetched: int, size: int) -> None:
        now = time.monotonic()
        if now - self.started < self.delay or now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        self.stream.write(f"\rfetching: {_size(fetched)} of a {_size(size)} wheel ")
        self.stream.flush()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


def render(report: Report) -> str:
    lines = [
        report.filename,
        *_rows([("sha256", report.sha256 or "unknown"), ("status", report.status)]),
    ]
    if report.status != "ok":
        lines.extend(_rows([("reason", report.reason or "")]))
        return "\n".join(lines)
    # Without ELF files there is nothing a Linux policy could cover: say so, rather
    # than suggest that binaries were found and failed every policy.
    if report.derived_platform_tag:
        tag = report.derived_platform_tag
    elif report.elf_files:
        tag = "none (no policy covers these binaries)"
    else:
        tag = "no ELF binaries (pure or for other platforms)"
    if report.overclaims:
        tag += "  (the wheel's own tag over-claims)"
    lines.extend(_rows([("derived tag", tag)]))
    req = report.requires
    lines.append("requires")
    lines.extend(
        _rows(
            [
                ("libc", req.libc),
                ("glibc", req.glibc),
                ("glibcxx", req.glibcxx),
                ("cxxabi", req.cxxabi),
                ("gcc", req.gcc),
                ("cuda major", req.cuda_major),
                ("nvidia driver", "libcuda.so.1" if req.nvidia_driver else None),
                ("gpu sm", ", ".join(req.gpu_sms) if req.gpu_sms else None),
                ("gpu ptx", ", ".join(req.gpu_ptx) if req.gpu_ptx else None),
                ("x86-64 level", f"x86-64-v{req.x86_64_level}" if req.x86_64_level else None),
                ("exec stack", "yes" if req.execstack else None),
            ]
        )
    )
    # What an import loads, as the loader checks read it: shown where there is any.
    loader = [
        (key, ", ".join(values))
        for key, values in (
            ("machines", req.machines),
            ("not mappable", req.not_elf),
            ("ELF systems", req.elf_systems),
            ("executables", req.executables),
            ("PIE", req.pie_executables),
            ("no dlopen", req.no_dlopen),
            ("IE TLS", req.initial_exec_tls),
            ("module ABIs", req.module_abis),
        )
        if values
    ]
    if req.mixed_libc:
        loader.append(("mixed libc", "glibc and musl"))
    if loader:
        lines.append("an import loads")
        lines.extend(_rows(loader))
    lines.append("libraries")
    lines.extend(
        _rows(
            [
                ("bundled", ", ".join(report.bundled_libraries) or None),
                ("external", ", ".join(report.external_libraries) or None),
            ]
        )
    )
    lines.append(f"ELF files ({len(report.elf_files)})")
    table = [("PATH", "MACHINE", "NEEDS")] + [
        (elf.path, elf.machine, _needs(elf)) for elf in report.elf_files
    ]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    lines.extend(f"  {p:<{widths[0]}}  {m:<{widths[1]}}  {n}".rstrip() for p, m, n in table)
    others = [native for native in report.native_files if native.format != "elf"]
    if others:
        lines.append(f"other native files ({len(others)})")
        table = [("PATH", "FORMAT", "MACHINE")] + [
            (n.path, f"{n.format} ({n.os})", n.machine) for n in others
        ]
        widths = [max(len(row[i]) for row in table) for i in range(2)]
        lines.extend(f"  {p:<{widths[0]}}  {f:<{widths[1]}}  {m}" for p, f, m in table)
    return "\n".join(lines)


def _rows(items: Iterable[tuple[str, object]]) -> list[str]:
    return [f"  {key:<13} {'-' if value is None else value}" for key, value in items]


def _needs(elf: ElfFile) -> str:
    newest: dict[str, str] = {}
    for versions in elf.version_needs.values():
        for name in versions:
            split = split_version_name(name)
            if split is None or not is_numeric(split[1]):
                continue
            prefix, version = split
            if prefix not in newest or parse_dotted(version) > parse_dotted(newest[prefix]):
                newest[prefix] = version
    notes = [f"{prefix}_{version}" for prefix, version in sorted(newest.items())]
    if elf.execstack:
        notes.append("execstack")
    if elf.x86_isa_needed:
        notes.append(f"x86-64-v{elf.x86_isa_needed}")
    if elf.gpu_sms:
        notes.append("sm " + "/".join(elf.gpu_sms))
    return " ".join(notes) or "-"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"
