"""Note segments that hold no well-formed notes: the loader stops reading them and loads
the file, so analysis does too (libcusparse's PT_NOTE points into its program header
table, which a patching tool grew over it)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import IO, cast

import pytest

from proxy.analysis.elf import MAX_NOTE_BYTES, read_elf
from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import ElfFile
from tests.analysis.hostile import FILENAME, Elf64, patch, zip_bytes
from tests.fixtures.elf.recipes import Objects
from tests.support.wheels import CompileError, compile_shared_object

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


def _with_note(tmp_path: Path, name: str, sizes: tuple[int, ...]) -> bytes:
    """A shared object whose PT_NOTE holds one note of each descriptor size (zeros:
    stored, not deflated, or they would pass for a zip bomb)."""
    notes = "".join(
        f'__asm__(".section .note.big{i},\\"a\\",@note\\n.p2align 2\\n.long 4\\n.long {size}'
        f'\\n.long 0x1234\\n.asciz \\"XYZ\\"\\n.fill {size},1,0\\n.previous\\n");\n'
        for i, size in enumerate(sizes)
    )
    source = notes + "int PyInit__ext(void) { return 0; }\n"
    try:
        built = compile_shared_object(source, tmp_path / name)
    except CompileError as exc:
        pytest.skip(str(exc))
    return built.read_bytes()


def test_one_note_segment_over_half_the_budget_is_read(tmp_path: Path) -> None:
    # 600 KiB of notes: within the 1 MiB budget, which used to be charged before the
    # segment was checked against what was left (a 512 KiB segment was refused).
    size = 600 * 1024
    assert size < MAX_NOTE_BYTES < 2 * size
    data = _with_note(tmp_path, "_ext.so", (size,))
    notes = [p for p in Elf64(data).segments if p[1] == "PT_NOTE"]
    assert len(notes) == 1 and notes[0][3] > size
    report = analyze_wheel(
        io.BytesIO(zip_bytes({SO: data}, zipfile.ZIP_STORED)), FILENAME, "0" * 64
    )
    assert report.status == "ok", report.reason
    assert report.elf_files[0].path == SO


def test_note_segments_past_the_budget_are_still_refused(tmp_path: Path) -> None:
    data = _with_note(tmp_path, "_ext.so", (MAX_NOTE_BYTES,))
    report = analyze_wheel(
        io.BytesIO(zip_bytes({SO: data}, zipfile.ZIP_STORED)), FILENAME, "0" * 64
    )
    assert report.status == "unanalysable"
    assert f"{SO}: note segment of " in (report.reason or "")
