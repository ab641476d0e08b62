"""Split debug files (``objcopy --only-keep-debug``) are no binaries: skipped, not refused.

A debug-info-only ELF file keeps the headers of the library it was split from, but its
code and dynamic sections are SHT_NOBITS: PT_DYNAMIC points at bytes that are not in
the file, past its end or at its debug sections. Only the section headers saying so,
with no dynamic array the loader could link with where PT_DYNAMIC points, make such a
file skipped; an ELF file whose dynamic segment merely lies outside it stays
unanalysable.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
from collections.abc import Callable

import pytest
from elftools.elf.elffile import ELFFile

from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import Report
from tests.analysis.hostile import FILENAME, patch, zip_bytes
from tests.fixtures.elf.recipes import FixtureWheel, Objects

SO = "pkg/_ext.so"
DEBUG = "pkg/_ext.so.debug"
SHT_PROGBITS, SHT_DYNAMIC = 1, 6
SHDR = 64  # the size of an ELF64 section header; sh_type is at +4


def analyze(data: bytes, *, far: bool = False) -> Report:
    return analyze_wheel(io.BytesIO(data), FILENAME, "0" * 64, far=far)


def dynamic_segment(data: bytes) -> tuple[int, int]:
    elf = ELFFile(io.BytesIO(data))
    (segment,) = [s for s in elf.iter_segments() if s["p_type"] == "PT_DYNAMIC"]
    return segment["p_offset"], segment["p_filesz"]


def section_type_at(data: bytes, name: str) -> int:
    """The file offset of the named section's sh_type."""
    elf = ELFFile(io.BytesIO(data))
    index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == name)
    return int(elf["e_shoff"]) + index * SHDR + 4


# -- the fixture wheel ----------------------------------------------------------


def test_the_fixtures_are_what_a_debug_file_is(elf_objects: Objects) -> None:
    """Both layouts a debug file's PT_DYNAMIC comes in: past the end (pyrealsense2's
    case, which made the wheel unanalysable) and inside the file, at no bytes of its own."""
    paged = elf_objects.getrandom_paged_debug.read_bytes()
    offset, _ = dynamic_segment(paged)
    assert offset > len(paged)
    plain = elf_objects.getrandom_debug.read_bytes()
    offset, _ = dynamic_segment(plain)
    assert offset < len(plain)
    for data in (paged, plain):
        elf = ELFFile(io.BytesIO(data))
        for name in (".dynamic", ".text"):
            section = elf.get_section_by_name(name)
            assert section is not None and section["sh_type"] == "SHT_NOBITS"


def test_a_wheel_with_debug_files_is_analysed(fixture_wheels: dict[str, FixtureWheel]) -> None:
    fixture = fixture_wheels["debug"]
    with fixture.path.open("rb") as source:
        report = analyze_wheel(source, fixture.path.name, "0" * 64)
    assert report.status == "ok", report.reason
    assert report.requires.glibc == "2.25"
    assert [elf.path for elf in report.elf_files] == ["fx_debug/_other.so", "fx_debug/_random.so"]
    assert [n.path for n in report.native_files] == ["fx_debug/_other.so", "fx_debug/_random.so"]
    with zipfile.ZipFile(fixture.path) as archive:
        assert "fx_debug/_random.so.debug" in archive.namelist()


@pytest.mark.parametrize("which", ["getrandom_debug", "getrandom_paged_debug"])
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_debug_file_alone_is_no_binary(
    which: str, compression: int, elf_objects: Objects
) -> None:
    data = getattr(elf_objects, which).read_bytes()
    report = analyze(zip_bytes({DEBUG: data}, compression))
    assert report.status == "ok", report.reason
    assert report.elf_files == ()
    assert report.native_files == ()
    assert report.requires.glibc is None


def test_a_module_whose_section_headers_claim_debug_information_is_read(
    elf_objects: Objects,
) -> None:
    """The loader never reads section headers: a module that marks its code and dynamic
    sections SHT_NOBITS still loads, with its needs (here glibc 2.25's getrandom)."""
    library = bytearray(elf_objects.getrandom.read_bytes())
    elf = ELFFile(io.BytesIO(bytes(library)))
    SHF_ALLOC_EXEC = 0x6
    for index, section in enumerate(elf.iter_sections()):
        code = section["sh_flags"] & SHF_ALLOC_EXEC == SHF_ALLOC_EXEC
        if code or section["sh_type"] == "SHT_DYNAMIC":
            struct.pack_into("<I", library, int(elf["e_shoff"]) + index * SHDR + 4, 8)
    report = analyze(zip_bytes({SO: bytes(library)}))
    assert report.status == "ok", report.reason
    assert [e.path for e in report.elf_files] == [SO]
    assert report.requires.glibc == "2.25"


def test_a_debug_file_named_like_a_shared_object_is_not_refused(elf_objects: Objects) -> None:
    report = analyze(zip_bytes({SO: elf_objects.getrandom_paged_debug.read_bytes()}))
    assert report.status == "ok", report.reason
    assert report.elf_files == ()


def test_a_large_debug_file_read_by_its_ends(elf_objects: Objects) -> None:
    """Debug information is mostly what makes a debug file large: far from its headers."""
    debug = elf_objects.getrandom_paged_debug.read_bytes()
    shoff = struct.unpack_from("<Q", debug, 0x28)[0]
    noise = random.Random(1).randbytes(1024 * 1024)  # debug sections, before the headers
    data = patch(debug[:shoff] + noise + debug[shoff:], 0x28, "<Q", shoff + len(noise))
    members = {SO: elf_objects.getrandom_paged.read_bytes(), DEBUG: data}
    report = analyze(zip_bytes(members), far=True)
    assert report.status == "ok", report.reason
    assert [elf.path for elf in report.elf_files] == [SO]
    assert report.requires.glibc == "2.25"


@pytest.mark.parametrize("seed", range(8))
def test_program_headers_kept_verbatim(seed: int, elf_objects: Objects) -> None:
    """eu-strip -f keeps the library's program headers as they were: PT_DYNAMIC then
    points into the debug file's own bytes (here: noise), which are no dynamic array."""
    library = elf_objects.getrandom.read_bytes()
    debug = bytearray(elf_objects.getrandom_debug.read_bytes())
    library_elf = ELFFile(io.BytesIO(library))
    debug_elf = ELFFile(io.BytesIO(bytes(debug)))
    assert library_elf["e_phnum"] == debug_elf["e_phnum"]
    assert library_elf["e_phoff"] == debug_elf["e_phoff"]
    start = library_elf["e_phoff"]
    end = start + library_elf["e_phnum"] * library_elf["e_phentsize"]
    debug[start:end] = library[start:end]
    offset, size = dynamic_segment(library)
    noise = random.Random(seed).randbytes(offset + size + 4096 - len(debug))
    report = analyze(zip_bytes({DEBUG: bytes(debug) + noise}))
    assert report.status == "ok", report.reason
    assert report.elf_files == ()


# -- corrupt files stay unanalysable --------------------------------------------


def paged_debug(objects: Objects) -> bytes:
    return objects.getrandom_paged_debug.read_bytes()


Corrupt = Callable[[bytes], bytes]


def with_section_type(name: str, sh_type: int) -> Corrupt:
    def make(data: bytes) -> bytes:
        return patch(data, section_type_at(data, name), "<I", sh_type)

    return make


def without_section_headers(data: bytes) -> bytes:
    # e_shoff = 0, e_shnum = 0, e_shstrndx = 0
    return patch(patch(data, 0x28, "<Q", 0), 0x3C, "<HH", 0, 0)


def truncated_before_section_headers(data: bytes) -> bytes:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    return data[: shoff + SHDR * 2]


def section_0_not_null(data: bytes) -> bytes:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    return patch(data, shoff + 4, "<I", SHT_PROGBITS)


CORRUPT: list[tuple[str, Corrupt]] = [
    ("dynamic section in the file", with_section_type(".dynamic", SHT_DYNAMIC)),
    ("dynamic section as bytes", with_section_type(".dynamic", SHT_PROGBITS)),
    ("code in the file", with_section_type(".text", SHT_PROGBITS)),
    ("no section headers", without_section_headers),
    ("section headers cut off", truncated_before_section_headers),
    ("section 0 not null", section_0_not_null),
]


@pytest.mark.parametrize(("case", "make"), CORRUPT, ids=[c[0] for c in CORRUPT])
def test_a_dynamic_segment_outside_the_file_without_nobits_sections(
    case: str, make: Corrupt, elf_objects: Objects
) -> None:
    data = make(paged_debug(elf_objects))
    report = analyze(zip_bytes({DEBUG: data}))
    assert report.status == "unanalysable", case
    assert report.reason is not None
    assert "lies outside the file" in report.reason
    assert DEBUG in report.reason
    assert report.elf_files == ()


def test_a_library_whose_empty_dynamic_segment_lies_past_its_end(elf_objects: Objects) -> None:
    data = elf_objects.getrandom.read_bytes()
    elf = ELFFile(io.BytesIO(data))
    index = next(i for i, s in enumerate(elf.iter_segments()) if s["p_type"] == "PT_DYNAMIC")
    phdr = elf["e_phoff"] + index * elf["e_phentsize"]
    data = patch(patch(data, phdr + 8, "<Q", len(data) + 4096), phdr + 32, "<Q", 0)
    report = analyze(zip_bytes({SO: data}))
    assert report.status == "unanalysable"
    assert "dynamic segment lies outside the file" in (report.reason or "")
