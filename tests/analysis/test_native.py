"""Native binaries of every format: PE and Mach-O recognised by their headers, ELF named."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.analysis.native import HEAD, MAX_OPTIONAL_READ, MAX_PE_OFFSET, elf_native, identify
from proxy.analysis.wheel import analyze_wheel
from proxy.cli import main
from proxy.core.report import NativeFile, NativeFormat, Report
from tests.analysis.hostile import zip_bytes
from tests.support.wheels import WheelSpec, build_wheel

PE_I386, PE_X86_64, PE_AARCH64, PE_ARM = 0x14C, 0x8664, 0xAA64, 0x1C4
PE32, PE32_PLUS = 0x10B, 0x20B
CPU_I386, CPU_X86_64, CPU_ARM64 = 7, 0x01000007, 0x0100000C
MH_BUNDLE = 8  # what a Python extension module is on macOS


def pe(
    machine: int = PE_X86_64,
    lfanew: int = 0x80,
    size: int | None = None,
    *,
    optional: bytes = b"",
    optional_size: int | None = None,
) -> bytes:
    """A minimal PE image: what a loader (and identify) checks first, nothing more.

    DOS header: "MZ", zeros, and at 0x3C e_lfanew, the offset of the PE header. From
    there: the signature "PE\\0\\0" and the 20-byte COFF header (Machine, section
    count, timestamp, symbol table offset and count, optional header size,
    characteristics: 0x2022 = executable image, large addresses, DLL), then the
    ``optional`` header (see `optional_header`), whose size the COFF header gives as
    ``optional_size`` (by default its length).
    """
    dos = bytearray(max(lfanew, 64))
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, lfanew)
    declared = len(optional) if optional_size is None else optional_size
    coff = struct.pack("<HHIIIHH", machine, 0, 0, 0, 0, declared, 0x2022)
    data = bytes(dos[:lfanew]) + b"PE\0\0" + coff + optional + b"\0" * 64
    return data if size is None else data[:size]


def optional_header(
    magic: int = PE32_PLUS, *, clr: tuple[int, int] = (0, 0), directories: int = 16
) -> bytes:
    """An optional header: its magic (0x10b PE32, 0x20b PE32+), zeros up to
    NumberOfRvaAndSizes (at 92 in PE32, 108 in PE32+), then that many data directories
    (RVA, size), all zero but the CLR runtime header's (entry 14), which is ``clr``."""
    count_at = 92 if magic == PE32 else 108
    header = bytearray(count_at + 4 + 8 * directories)
    struct.pack_into("<H", header, 0, magic)
    struct.pack_into("<I", header, count_at, directories)
    if directories > 14:
        struct.pack_into("<II", header, count_at + 4 + 8 * 14, *clr)
    return bytes(header)


def dotnet(machine: int = PE_I386, magic: int = PE32, **kwargs: int) -> bytes:
    """A .NET assembly: a PE whose CLR runtime header directory is set (an AnyCPU
    assembly is PE32 with machine i386)."""
    return pe(machine, optional=optional_header(magic, clr=(0x2008, 0x48)), **kwargs)


def macho(cputype: int = CPU_ARM64, *, bits: int = 64, order: str = "<") -> bytes:
    """A thin Mach-O header (mach_header / mach_header_64), in the file's byte order:
    magic, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags (+ reserved)."""
    magic = 0xFEEDFACF if bits == 64 else 0xFEEDFACE
    fields = [magic, cputype, 0, MH_BUNDLE, 0, 0, 0] + ([0] if bits == 64 else [])
    return struct.pack(f"{order}{len(fields)}I", *fields)


def fat(*cputypes: int, wide: bool = False) -> bytes:
    """A universal file: big-endian fat_header (magic, count), one fat_arch per slice
    (cputype, cpusubtype, offset, size, align; 64-bit offset and size with 0xcafebabf),
    then the slices, each a thin header."""
    magic = 0xCAFEBABF if wide else 0xCAFEBABE
    entry = struct.Struct(">IIQQII" if wide else ">IIIII")
    offset = 8 + entry.size * len(cputypes)
    table = b"".join(
        entry.pack(cpu, 0, offset + 32 * i, 32, 0, *([0] if wide else []))
        for i, cpu in enumerate(cputypes)
    )
    slices = b"".join(macho(cpu) for cpu in cputypes)
    return struct.pack(">II", magic, len(cputypes)) + table + slices


def java_class(major: int = 52) -> bytes:
    """A Java class file's start: the same 0xcafebabe, then minor and major version."""
    return struct.pack(">IHHH", 0xCAFEBABE, 0, major, 1) + b"\0" * 64


def identified(data: bytes) -> NativeFile | None:
    def read_at(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    return identify("x", data[:HEAD], read_at)


@pytest.mark.parametrize(
    ("data", "format_", "os", "machine"),
    [
        (pe(PE_X86_64), "pe", "windows", "x86_64"),
        (pe(PE_I386), "pe", "windows", "i386"),
        (pe(PE_AARCH64), "pe", "windows", "aarch64"),
        (pe(PE_ARM), "pe", "windows", "arm"),
        (pe(0x5064), "pe", "windows", "0x5064"),  # an unnamed machine is kept, in hex
        (pe(lfanew=0x40), "pe", "windows", "x86_64"),  # the PE header within the head
        (pe(lfanew=0x2000), "pe", "windows", "x86_64"),  # beyond it: read separately
        (dotnet(), "pe", "dotnet", "i386"),  # AnyCPU, like pythonnet's Python.Runtime.dll
        (dotnet(PE_X86_64, PE32_PLUS), "pe", "dotnet", "x86_64"),  # x64 or mixed-mode C++/CLI
        (dotnet(PE_AARCH64, PE32_PLUS), "pe", "dotnet", "aarch64"),
        (dotnet(lfanew=0x40), "pe", "dotnet", "i386"),  # the PE header within the head
        (dotnet(lfanew=0x2000), "pe", "dotnet", "i386"),  # beyond it: read separately
        (dotnet(lfanew=MAX_PE_OFFSET), "pe", "dotnet", "i386"),  # as far in as is looked
        (pe(optional=optional_header(PE32)), "pe", "windows", "x86_64"),  # no CLR header
        (pe(optional=optional_header()), "pe", "windows", "x86_64"),
        # A CLR entry that is half there, or beyond what the header declares, is none.
        (pe(optional=optional_header(clr=(0x2008, 0))), "pe", "windows", "x86_64"),
        (pe(optional=optional_header(clr=(0, 0x48))), "pe", "windows", "x86_64"),
        (
            pe(optional=optional_header(clr=(0x2008, 0x48), directories=14)),
            "pe",
            "windows",
            "x86_64",
        ),
        (
            pe(optional=optional_header(clr=(0x2008, 0x48)), optional_size=224),
            "pe",
            "windows",
            "x86_64",
        ),
        (pe(optional=optional_header(0x107, clr=(0x2008, 0x48))), "pe", "windows", "x86_64"),
        # The optional header cut off by the member's end: still a PE, not .NET.
        (dotnet(size=0x80 + 24 + 200), "pe", "windows", "i386"),
        (dotnet(size=0x80 + 24 + 1), "pe", "windows", "i386"),
        (macho(CPU_ARM64), "macho", "macos", "arm64"),
        (macho(CPU_X86_64, order=">"), "macho", "macos", "x86_64"),
        (macho(CPU_I386, bits=32), "macho", "macos", "i386"),
        (fat(CPU_X86_64, CPU_ARM64), "macho", "macos", "x86_64+arm64"),
        (fat(CPU_X86_64, CPU_X86_64), "macho", "macos", "x86_64"),
        (fat(CPU_ARM64, CPU_X86_64, wide=True), "macho", "macos", "arm64+x86_64"),
        (fat(*[CPU_ARM64] * 19), "macho", "macos", "arm64"),  # arch table past the head
    ],
)
def test_identified(data: bytes, format_: NativeFormat, os: str, machine: str) -> None:
    assert identified(data) == NativeFile("x", format_, os, machine)


@pytest.mark.parametrize(
    "data",
    [
        java_class(45),  # the oldest class file version
        java_class(52),
        java_class(65),
        struct.pack(">II", 0xCAFEBABE, 0) + b"\0" * 64,  # a fat header with no slices
        fat(CPU_ARM64)[:20],  # its arch table cut off
        macho()[:20],  # a thin header cut off
        b"MZ" + b"\0" * 100,  # a DOS program: e_lfanew 0 points at "MZ", not "PE"
        pe(size=0x90),  # PE header cut off by the member's end
        pe(lfanew=0x2000, size=0x2002),
        pe(lfanew=MAX_PE_OFFSET + 8),  # further in than anything is looked for
        pe()[:40],  # no room for e_lfanew
        b"\x7fELF" + b"\0" * 60,  # ELF is elf.py's
        b"",
        b"hello, world\n" * 8,
    ],
)
def test_not_identified(data: bytes) -> None:
    assert identified(data) is None


def test_a_huge_e_lfanew_reads_nothing() -> None:
    data = bytearray(pe())
    struct.pack_into("<I", data, 0x3C, 0xFFFFFFFF)

    def read_at(offset: int, length: int) -> bytes:
        raise AssertionError("read past the bound")

    assert identify("x", bytes(data[:HEAD]), read_at) is None


# -- wheels ---------------------------------------------------------------------


def analyze(path: Path) -> Report:
    with path.open("rb") as source:
        return analyze_wheel(source, path.name, "0" * 64)


@pytest.fixture
def windows_wheel(tmp_path: Path) -> Path:
    """A py3-none-any wheel whose only native files are for Windows and macOS."""
    files = {
        "winpkg/_speedups.pyd": pe(PE_X86_64),
        "winpkg/bin/helper.EXE": pe(PE_I386, lfanew=0x1000),  # suffixes are caseless
        "winpkg/libs/tiny.dylib": macho(CPU_ARM64),  # 32 bytes: peeked all the same
        "winpkg/libs/universal.dylib": fat(CPU_X86_64, CPU_ARM64),
        "winpkg/_mac.cpython-311-darwin.so": macho(CPU_X86_64),  # a Mach-O named .so
        "winpkg/Util.class": java_class(),  # 0xcafebabe, but not Mach-O
        "winpkg/broken.dll": pe(lfanew=0x400, size=0x200),  # e_lfanew past the end
        "winpkg/readme.dll": b"not a DLL\n",  # no error: nothing loads it on Linux
    }
    return build_wheel(WheelSpec("winpkg", "1.0", files=files), tmp_path)


def test_a_wheel_for_other_platforms(windows_wheel: Path) -> None:
    report = analyze(windows_wheel)
    assert report.status == "ok", report.reason
    assert report.elf_files == ()
    assert report.derived_platform_tag is None
    assert not report.overclaims
    assert report.native_files == (
        NativeFile("winpkg/_mac.cpython-311-darwin.so", "macho", "macos", "x86_64"),
        NativeFile("winpkg/_speedups.pyd", "pe", "windows", "x86_64"),
        NativeFile("winpkg/bin/helper.EXE", "pe", "windows", "i386"),
        NativeFile("winpkg/libs/tiny.dylib", "macho", "macos", "arm64"),
        NativeFile("winpkg/libs/universal.dylib", "macho", "macos", "x86_64+arm64"),
    )
    assert report.native_platforms() == {
        ("macos", "x86_64"),
        ("macos", "arm64"),
        ("windows", "x86_64"),
        ("windows", "i386"),
    }


def test_a_truncated_pe_is_skipped_whether_stored_or_deflated() -> None:
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        members = {
            "pkg/cut.dll": pe(lfanew=0x400, size=0x100),
            "pkg/cut_far.dll": pe(lfanew=0x4000, size=0x3000),
            "pkg/ok.pyd": pe(PE_AARCH64),
        }
        data = zip_bytes(members, compression)
        report = analyze_wheel(io.BytesIO(data), "pkg-1.0-py3-none-any.whl", "0" * 64)
        assert report.status == "ok", report.reason
        assert report.native_files == (NativeFile("pkg/ok.pyd", "pe", "windows", "aarch64"),)


def test_a_shared_object_that_is_no_binary_is_skipped_with_a_note() -> None:
    data = zip_bytes({"pkg/_ext.so": java_class()})
    report = analyze_wheel(io.BytesIO(data), "pkg-1.0-py3-none-any.whl", "0" * 64)
    assert report.status == "ok"
    assert report.notes == ("pkg/_ext.so: named like a shared object but not ELF; skipped",)


def test_a_pure_wheel_has_no_native_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = build_wheel(WheelSpec("purepkg", "1.0", files={"purepkg/a.py": b"x = 1\n"}), tmp_path)
    report = analyze(wheel)
    assert report.status == "ok"
    assert report.native_files == ()
    assert report.native_platforms() == frozenset()
    assert main(["inspect", str(wheel)]) == 0
    out = capsys.readouterr().out
    assert "no policy covers" not in out
    assert "  derived tag   no ELF binaries (pure or for other platforms)\n" in out
    assert "other native files" not in out


def test_inspect_lists_other_native_files(
    windows_wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(windows_wheel)]) == 0
    out = capsys.readouterr().out
    assert "no policy covers" not in out
    assert "  derived tag   no ELF binaries (pure or for other platforms)\n" in out
    assert "ELF files (0)\n" in out
    table = out[out.index("other native files (5)\n") :].splitlines()[1:]
    assert table == [
        "  PATH                               FORMAT         MACHINE",
        "  winpkg/_mac.cpython-311-darwin.so  macho (macos)  x86_64",
        "  winpkg/_speedups.pyd               pe (windows)   x86_64",
        "  winpkg/bin/helper.EXE              pe (windows)   i386",
        "  winpkg/libs/tiny.dylib             macho (macos)  arm64",
        "  winpkg/libs/universal.dylib        macho (macos)  x86_64+arm64",
    ]


def test_inspect_json_carries_native_files(
    windows_wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--json", str(windows_wheel)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["native_files"][1] == {
        "path": "winpkg/_speedups.pyd",
        "format": "pe",
        "os": "windows",
        "machine": "x86_64",
    }
    assert Report.from_json(data) == replace(analyze(windows_wheel), sha256=data["sha256"])


def test_old_json_without_native_files_is_read() -> None:
    report = Report("w-1.0-py3-none-any.whl", "0" * 64, analyzer_version=1)
    data = report.to_json()
    del data["native_files"]
    assert Report.from_json(data) == report


@pytest.mark.parametrize(
    ("osabi", "machine", "os"),
    [
        (0, "x86_64", "linux"),
        (3, "aarch64", "linux"),
        (9, "x86_64", "freebsd"),
        (97, "armv7l", "arm"),
        (64, "armv7l", "linux"),  # ARM's glibc port accepts ELFOSABI_ARM_AEABI
        (64, "aarch64", "arm-aeabi"),
        (51, "x86_64", "EI_OSABI 51"),
        # device code: a CUDA cubin says 51, an AMD code object 64; no host loader maps them
        (51, "cuda", "linux"),
        (64, "amdgpu", "linux"),
    ],
)
def test_elf_os_from_ei_osabi(osabi: int, machine: str, os: str) -> None:
    head = b"\x7fELF\x02\x01\x01" + bytes([osabi]) + b"\0" * 56
    assert elf_native("x", head, machine) == NativeFile("x", "elf", os, machine)


# -- .NET assemblies --------------------------------------------------------------


@pytest.mark.parametrize("lfanew", [0x80, 0x2000, MAX_PE_OFFSET])
def test_a_dotnet_assembly_is_read_within_the_pe_bound(lfanew: int) -> None:
    data = dotnet(lfanew=lfanew) + b"\0" * 4096
    asked: list[tuple[int, int]] = []

    def read_at(offset: int, length: int) -> bytes:
        asked.append((offset, length))
        return data[offset : offset + length]

    assert identify("x", data[:HEAD], read_at) == NativeFile("x", "pe", "dotnet", "i386")
    assert all(offset + length <= lfanew + 24 + MAX_OPTIONAL_READ for offset, length in asked)
    assert MAX_OPTIONAL_READ == 112 + 15 * 8  # PE32+ directories, up to the CLR entry's end


def test_a_wheel_with_a_dotnet_assembly(tmp_path: Path) -> None:
    """pythonnet's wheel: pure, its only native file an AnyCPU .NET assembly, which a
    .NET runtime loads on Linux: recorded as "dotnet", not "windows"."""
    files = {
        "pythonnet/runtime/Python.Runtime.dll": dotnet(),
        "pythonnet/__init__.py": b"",
    }
    wheel = build_wheel(WheelSpec("pythonnet", "3.0.5", files=files), tmp_path)
    report = analyze(wheel)
    assert report.status == "ok", report.reason
    assert report.native_files == (
        NativeFile("pythonnet/runtime/Python.Runtime.dll", "pe", "dotnet", "i386"),
    )
    assert report.native_platforms() == {("dotnet", "i386")}
    assert Report.from_json(report.to_json()) == report
