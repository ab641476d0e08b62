"""Mutated ELF and zip bytes: always a report, never an exception, a hang or a memory blow-up."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import Report
from tests.analysis.hostile import FILENAME, zip_bytes
from tests.fixtures.elf.recipes import FixtureWheel, Objects

MAX_SECONDS = 5.0
MAX_TRACED_BYTES = 64 * 1024 * 1024
FUZZ = settings(
    max_examples=250,
    deadline=None,  # measured below, with a wider margin than hypothesis' default
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, (1 << 64) - 1]


def hot_regions(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges a parser trusts: headers, tables and the data they point at."""
    elf = ELFFile(io.BytesIO(data))
    regions = [(0, 64), (elf["e_phoff"], elf["e_phoff"] + 56 * elf["e_phnum"])]
    regions.append((elf["e_shoff"], elf["e_shoff"] + 64 * elf["e_shnum"]))
    for segment in elf.iter_segments():
        if segment["p_type"] in ("PT_DYNAMIC", "PT_NOTE", "PT_GNU_PROPERTY"):
            regions.append((segment["p_offset"], segment["p_offset"] + segment["p_filesz"]))
    for name in (".gnu.version_r", ".dynstr", ".nv_fatbin"):
        section = elf.get_section_by_name(name)
        if section is not None:
            start = section["sh_offset"]
            regions.append((start, start + min(section["sh_size"], 512)))
    return [(a, b) for a, b in regions if 0 <= a < b <= len(data)]


@st.composite
def mutations(draw: st.DrawFn, data: bytes, regions: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        start, end = draw(st.sampled_from(regions))
        width = draw(st.sampled_from([1, 2, 4, 8]))
        at = draw(st.integers(start, max(start, end - width)))
        value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, (1 << 64) - 1)))
        buffer[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    if draw(st.booleans()):
        del buffer[draw(st.integers(0, len(buffer))) :]
    return bytes(buffer)


def analyze_bounded(data: bytes) -> Report:
    tracemalloc.start()
    started = time.monotonic()
    try:
        report = analyze_wheel(io.BytesIO(data), FILENAME, "0" * 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < MAX_SECONDS
    assert peak < MAX_TRACED_BYTES
    assert report.status in ("ok", "unanalysable")
    if report.status == "unanalysable":
        assert report.reason
    return report


@pytest.mark.parametrize(
    "which", ["getrandom", "uses_dep_rpath", "fatbin", "isa_v3", "getrandom_paged_debug"]
)
def test_mutated_elf(which: str, elf_objects: Objects) -> None:
    data = getattr(elf_objects, which).read_bytes()
    regions = hot_regions(data)

    @FUZZ
    @given(st.data())
    def run(drawn: st.DataObject) -> None:
        mutated = drawn.draw(mutations(data, regions))
        method = drawn.draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]))
        analyze_bounded(zip_bytes({"pkg/_ext.so": mutated}, compression=method))

    run()


def test_mutated_zip(fixture_wheels: dict[str, FixtureWheel]) -> None:
    data = fixture_wheels["bundled"].path.read_bytes()
    directory = data.find(b"PK\x01\x02")
    regions = [(0, 64), (directory, len(data))]  # a local header and the whole directory
    regions += [
        (at, at + 46) for at in range(directory, len(data)) if data[at : at + 4] == b"PK\x01\x02"
    ]
    regions += [(at, at + 30) for at in range(0, directory) if data[at : at + 4] == b"PK\x03\x04"]

    @FUZZ
    @given(st.data())
    def run(drawn: st.DataObject) -> None:
        analyze_bounded(drawn.draw(mutations(data, regions)))

    run()


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    analyze_bounded(data)
