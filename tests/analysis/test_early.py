"""The early answer: every fact of the report but its GPU code, before fat binaries are read."""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import replace
from pathlib import Path
from typing import IO, cast

import pytest

from proxy.analysis.early import EarlyReport
from proxy.analysis.elf import FATBIN_HEADER, FATBIN_MAGIC
from proxy.analysis.pool import AnalysisPool, PoolLimits
from proxy.analysis.remote import RemoteFile
from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import Report
from tests.analysis.hostile import Elf64, patch
from tests.fixtures.elf.recipes import FixtureWheel
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel, compile_shared_object

SHA = "0" * 64
ENTRY = struct.Struct("<HHIQ12xI32x")  # kind, version, header size, padded payload, arch
SASS, PTX = 2, 1


def without_gpu_code(report: Report) -> Report:
    """The report as the early answer has it."""
    elves = tuple(replace(e, gpu_sms=(), gpu_ptx=()) for e in report.elf_files)
    requires = replace(report.requires, gpu_sms=None, gpu_ptx=None)
    return replace(report, elf_files=elves, requires=requires)


def analyzed(path: Path) -> tuple[Report, list[EarlyReport]]:
    told: list[EarlyReport] = []
    with path.open("rb") as source:
        return analyze_wheel(source, path.name, SHA, early=told.append), told


def fat_binary(containers: list[list[tuple[int, int]]], payload: int, seed: int) -> bytes:
    """``.nv_fatbin`` contents: containers of (kind, arch) entries, each followed by
    ``payload`` random bytes of 64 values: deflate codes them shorter but finds few
    repeats, as in GPU code (hex text, all repeats, keeps a far entry's bytes unknown
    for megabytes)."""
    rng = random.Random(seed)
    out = b""
    for entries in containers:
        body = b""
        for kind, arch in entries:
            data = bytes(rng.choices(range(64), k=payload))
            body += ENTRY.pack(kind, 0x0101, ENTRY.size, len(data), arch) + data
        out += FATBIN_HEADER.pack(FATBIN_MAGIC, 1, FATBIN_HEADER.size, len(body)) + body
        out += bytes(-len(out) % 8)
    return out


@pytest.fixture(scope="module")
def gpu_library_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gpu_library(tmp_path_factory.mktemp("early"))


def gpu_library(out: Path, *, stale_note: bool = False) -> Path:
    """A library laid out as NVIDIA's are: its needs at both ends, 4 MB of fat binaries
    between them, in a wheel whose other member has none. ``stale_note``: its PT_NOTE
    points into its program header table, as libcusparse's does."""
    blob = out / "kernels.fatbin"
    blob.write_bytes(
        fat_binary([[(SASS, 80), (SASS, 86)], [(SASS, 90), (PTX, 90)]], 1024 * 1024, seed=7)
    )
    source = f"""\
#include <sys/random.h>
__asm__(".section .nv_fatbin, \\"a\\"\\n.balign 8\\n.incbin \\"{blob}\\"\\n.previous\\n");
int fill(void *buffer, unsigned long size) {{ return (int)getrandom(buffer, size, 0); }}
"""
    library = compile_shared_object(source, out / "libkernels.so.1", flags=["-Wl,-soname,libk.so"])
    data = library.read_bytes()
    if stale_note:
        elf = Elf64(data)
        last = elf.phdr(len(elf.segments) - 1)
        data = patch(data, elf.segment("PT_NOTE") + 8, "<Q", last)  # p_offset
    plain = compile_shared_object("int answer(void) { return 42; }\n", out / "_plain.so")
    files = {"pkg/libkernels.so.1": data, "pkg/_plain.so": plain.read_bytes()}
    spec = WheelSpec("gpu-lib", "1.0", tag="py3-none-manylinux_2_28_x86_64", files=files)
    return build_wheel(spec, out)


def test_the_early_answer_is_the_report_less_its_gpu_code(gpu_library_wheel: Path) -> None:
    report, told = analyzed(gpu_library_wheel)
    assert report.status == "ok", report.reason
    assert report.requires.gpu_sms == ("8.0", "8.6", "9.0")
    assert report.requires.gpu_ptx == ("9.0",)
    assert report.requires.glibc == "2.25"
    assert told == [EarlyReport(without_gpu_code(report), ("pkg/libkernels.so.1",))]
    assert told[0].report.requires.glibc == "2.25"


def test_every_fixture_and_real_wheel(
    fixture_wheels: dict[str, FixtureWheel], real_wheels: dict[str, Path]
) -> None:
    """Only wheels with fat binaries answer early, and then with the report less its GPU
    code; the report is the one analysis without an early answer gives."""
    paths = [f.path for f in fixture_wheels.values()] + list(real_wheels.values())
    gpu = 0
    for path in paths:
        report, told = analyzed(path)
        with path.open("rb") as source:
            assert report == analyze_wheel(source, path.name, SHA)
        assert len(told) <= 1
        if any(e.gpu_sms or e.gpu_ptx for e in report.elf_files):
            assert told, path.name
        if told:
            assert told[0].report == without_gpu_code(report), path.name
            paths_with_gpu = {e.path for e in report.elf_files if e.gpu_sms or e.gpu_ptx}
            assert paths_with_gpu <= set(told[0].unread)
            gpu += 1
    assert gpu >= 2  # the fat binary fixtures and the real CUDA library


@pytest.mark.parametrize("stale_note", [False, True])
def test_by_url_the_early_answer_costs_the_ends(
    gpu_library_wheel: Path, tmp_path: Path, stale_note: bool
) -> None:
    # A note segment that holds no notes, read at the library's head from its start, is
    # how the file is: no reason to read the library again from its start.
    wheel = gpu_library(tmp_path, stale_note=True) if stale_note else gpu_library_wheel
    by_file, told_by_file = analyzed(wheel)
    told: list[tuple[EarlyReport, int]] = []
    with Upstream() as server:
        server.add("gpu-lib", wheel)
        with RemoteFile(server.file_url(wheel.name)) as remote:

            def early(found: EarlyReport) -> None:
                told.append((found, remote.fetched))

            report = analyze_wheel(cast(IO[bytes], remote), wheel.name, SHA, far=True, early=early)
            fetched = remote.fetched
    assert report == by_file
    assert report.status == "ok"
    assert [found for found, _ in told] == told_by_file
    size = wheel.stat().st_size
    assert told[0][1] < size * 0.2  # the library's two ends
    assert fetched > size * 0.8  # then its fat binaries


async def test_the_pool_passes_the_early_answer_on(gpu_library_wheel: Path) -> None:
    report, told_by_file = analyzed(gpu_library_wheel)
    told: list[EarlyReport] = []
    with Upstream() as server:
        server.add("gpu-lib", gpu_library_wheel)
        url = server.file_url(gpu_library_wheel.name)
        real = sha256_of(gpu_library_wheel)  # bytes checked
        async with AnalysisPool(PoolLimits(workers=1)) as pool:
            by_url = await pool.analyze_url(url, gpu_library_wheel.name, real, early=told.append)
            again = await pool.analyze_url(url, gpu_library_wheel.name, real)
            pids = pool.worker_pids()
    assert by_url == again == replace(report, sha256=real)
    assert told == [replace(e, report=replace(e.report, sha256=real)) for e in told_by_file]
    assert len(pids) == 1  # the worker that answered early was kept for the next task


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
