"""Architecture- and family-specific GPU code (sm_90a, sm_100f, compute_90a) keeps its
letter from the fat binary to the verdict: sm_90a SASS runs on a 9.0 GPU only.

One real fat binary, built by nvcc (tests/fixtures/nvcc/README.md says how), shows the
flags nvcc writes; gcc-built libraries carry entries laid out the same way, so the
rest needs no CUDA toolkit.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import pytest

from proxy.analysis.elf import FATBIN_HEADER, FATBIN_MAGIC, read_elf
from proxy.analysis.wheel import analyze_wheel
from proxy.core.decide import decide
from proxy.core.models import File
from proxy.core.profile import parse_profile
from tests.support.wheels import WheelSpec, build_wheel, compile_shared_object

NVCC_FIXTURE = Path(__file__).parents[1] / "fixtures" / "nvcc" / "arch_variants.so"
SHA = "0" * 64
PTX, SASS = 1, 2
# kind, version, header size, padded payload, payload, 0, code minor/major, arch,
# object name offset and length, flags: the first 48 bytes of an entry header.
ENTRY = struct.Struct("<HHIQIIHHIIIQ")
# Entry header sizes and flags exactly as nvcc 13.0 wrote them into the fixture.
SM_90 = (SASS, 90, 64, 0x11)
SM_90A = (SASS, 90, 64, 0x100011)
COMPUTE_90A = (PTX, 90, 80, 0x108011)
SM_100A = (SASS, 100, 112, 0x1100011)
SM_100F = (SASS, 100, 112, 0x1200011)
COMPUTE_100F = (PTX, 100, 80, 0x208011)
SM_120F = (SASS, 120, 112, 0x1200011)

Entry = tuple[int, int, int, int]


def fat_binary(entries: Sequence[Entry]) -> bytes:
    """One container of ``entries``, each with an 8-byte payload."""
    body = b""
    for i, (kind, arch, header_size, flags) in enumerate(entries):
        payload = bytes([i + 1]) * 8
        header = ENTRY.pack(kind, 0x0101, header_size, 8, 8, 0, 8, 1, arch, 0, 0, flags)
        body += header.ljust(header_size, b"\0") + payload
    return FATBIN_HEADER.pack(FATBIN_MAGIC, 1, FATBIN_HEADER.size, len(body)) + body


def kernels_library(entries: Sequence[Entry], out: Path) -> Path:
    blob = out.with_suffix(".fatbin")
    blob.write_bytes(fat_binary(entries))
    section = f'.section .nv_fatbin, \\"a\\"\\n.balign 8\\n.incbin \\"{blob}\\"\\n.previous\\n'
    source = f'__asm__("{section}");\nint kernels(void) {{ return 0; }}\n'
    return compile_shared_object(source, out)


def gpu_code(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    with path.open("rb") as stream:
        elf = read_elf(stream, path.name)
    assert elf is not None
    return elf.gpu_sms, elf.gpu_ptx


def test_nvcc_fat_binary_keeps_the_letters() -> None:
    assert NVCC_FIXTURE.stat().st_size < 50 * 1024
    assert gpu_code(NVCC_FIXTURE) == (("9.0", "9.0a", "10.0a", "10.0f"), ("9.0a", "10.0f"))


@pytest.mark.parametrize(
    ("entries", "sass", "ptx"),
    [
        ([SM_90], ("9.0",), ()),
        ([SM_90A], ("9.0a",), ()),
        ([SM_90A, SM_90, COMPUTE_90A], ("9.0", "9.0a"), ("9.0a",)),
        ([SM_100A, SM_100F, COMPUTE_100F], ("10.0a", "10.0f"), ("10.0f",)),
        ([SM_120F], ("12.0f",), ()),
        # Both bits is no target nvcc writes: read as the narrower one.
        ([(SASS, 90, 64, 0x300011)], ("9.0a",), ()),
    ],
    ids=["plain", "a", "a-plain-ptx-a", "a-f-ptx-f", "f-12", "both-bits"],
)
def test_fabricated_entries(
    tmp_path: Path, entries: list[Entry], sass: tuple[str, ...], ptx: tuple[str, ...]
) -> None:
    assert gpu_code(kernels_library(entries, tmp_path / "libk.so")) == (sass, ptx)


def test_a_fabricated_entry_reads_as_nvccs(tmp_path: Path) -> None:
    """The fabricated layout is the real one: same entries, same answer."""
    entries = [SM_90, COMPUTE_90A, SM_90A, SM_100A, COMPUTE_100F, SM_100F]
    assert gpu_code(kernels_library(entries, tmp_path / "libk.so")) == gpu_code(NVCC_FIXTURE)


@pytest.mark.parametrize(
    ("entries", "profile", "keep"),
    [
        ([SM_90A], "sm=9.0", True),
        ([SM_90A], "sm=10.0", False),
        ([SM_90A, COMPUTE_90A], "sm=10.0", False),  # its PTX is for 9.0 alone too
        ([SM_90], "sm=9.1", True),
        ([SM_100F], "sm=10.3", True),
        ([SM_100F], "sm=12.0", False),
        ([SM_100A], "sm=10.3", False),
    ],
)
def test_wheel_with_specific_sass_is_judged_by_it(
    tmp_path: Path, entries: list[Entry], profile: str, keep: bool
) -> None:
    library = kernels_library(entries, tmp_path / "libkernels.so")
    spec = WheelSpec(
        "gpu-pkg",
        "1.0",
        tag="cp311-cp311-manylinux_2_17_x86_64",
        files={"gpu_pkg/libkernels.so": library.read_bytes()},
    )
    wheel = build_wheel(spec, tmp_path / "dist")
    with wheel.open("rb") as source:
        report = analyze_wheel(source, wheel.name, SHA)
    assert report.status == "ok", report.reason
    file = File(filename=wheel.name, url=f"https://upstream.invalid/{wheel.name}", hashes={})
    verdict = decide(file, report, parse_profile(profile, "url"))
    assert verdict.keep is keep
    assert [r.kind for r in verdict.reasons] == ([] if keep else ["sm"])
