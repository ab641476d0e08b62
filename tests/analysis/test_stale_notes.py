"""Note segments that hold no well-formed notes: the loader stops reading them and loads
the file, so analysis does too (libcusparse's PT_NOTE points into its program header
table, which a patching tool grew over it)."""

from __future__ import annotations

import io
from typing import IO, cast

import pytest

from proxy.analysis.elf import read_elf
from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import ElfFile
from tests.analysis.hostile import FILENAME, Elf64, patch, zip_bytes
from tests.fixtures.elf.recipes import Objects

SO = "pkg/_ext.so"
P_OFFSET, P_FILESZ = 8, 32  # in an ELF64 program header


def elf_of(data: bytes, doubts: list[str] | None = None) -> ElfFile:
    elf = read_elf(cast(IO[bytes], io.BytesIO(data)), SO, doubts)
    assert elf is not None
    return elf


@pytest.fixture(scope="module")
def plain(elf_objects: Objects) -> Elf64:
    return Elf64(elf_objects.getrandom.read_bytes())


@pytest.fixture(scope="module")
def isa_v3(elf_objects: Objects) -> Elf64:
    return Elf64(elf_objects.isa_v3.read_bytes())


def test_a_note_segment_over_the_program_headers_is_read_as_the_loader_reads_it(
    plain: Elf64,
) -> None:
    note = plain.segment("PT_NOTE")
    # As in libcusparse.so.12: PT_NOTE at the program header table's tail, 36 bytes.
    stale = patch(plain.data, note + P_OFFSET, "<Q", plain.phdr(len(plain.segments) - 1))
    doubts: list[str] = []
    assert elf_of(stale, doubts) == elf_of(plain.data)
    assert doubts == ["a note runs past its segment"]
    report = analyze_wheel(io.BytesIO(zip_bytes({SO: stale})), FILENAME, "0" * 64)
    assert report.status == "ok", report.reason
    assert report.elf_files == (elf_of(plain.data),)


def test_garbage_after_a_property_note_keeps_what_came_before(isa_v3: Elf64) -> None:
    assert elf_of(isa_v3.data).x86_isa_needed == 3
    segment = isa_v3.segment("PT_GNU_PROPERTY")
    start = int.from_bytes(isa_v3.data[segment + P_OFFSET : segment + P_OFFSET + 8], "little")
    size = int.from_bytes(isa_v3.data[segment + P_FILESZ : segment + P_FILESZ + 8], "little")
    # The segment grown over the build-id note that follows it, whose descriptor size
    # is made to run past the segment: the property note before it still counts.
    grown = patch(isa_v3.data, segment + P_FILESZ, "<Q", size + 36)
    grown = patch(grown, start + size + 4, "<I", 0xFFFF)
    doubts: list[str] = []
    assert elf_of(grown, doubts).x86_isa_needed == 3
    assert doubts


def test_a_property_running_past_its_note_ends_that_note(isa_v3: Elf64) -> None:
    segment = isa_v3.segment("PT_GNU_PROPERTY")
    start = int.from_bytes(isa_v3.data[segment + P_OFFSET : segment + P_OFFSET + 8], "little")
    # The first property's size (after the 16-byte note header and name) made too big.
    lying = patch(isa_v3.data, start + 16 + 4, "<I", 4096)
    doubts: list[str] = []
    assert elf_of(lying, doubts).x86_isa_needed is None
    assert doubts == ["a GNU property runs past its note"]
