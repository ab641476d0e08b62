"""Hostile wheels: each gives an unanalysable report with a reason, quickly and bounded."""

from __future__ import annotations

import io
import os
import struct
import time
import zipfile
from collections.abc import Callable

import pytest

from proxy.analysis.bounds import Limits
from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import Report
from tests.analysis.hostile import FILENAME, Elf64, central_entries, patch, zip_bytes
from tests.fixtures.elf.recipes import Objects

SO = "pkg/_ext.so"


def analyze(data: bytes, limits: Limits | None = None) -> Report:
    started = time.monotonic()
    report = analyze_wheel(io.BytesIO(data), FILENAME, "0" * 64, limits=limits)
    assert time.monotonic() - started < 10
    return report


def assert_unanalysable(report: Report, reason: str) -> None:
    assert report.status == "unanalysable"
    assert report.reason is not None
    assert reason in report.reason, report.reason
    assert report.elf_files == ()


@pytest.fixture(scope="module")
def elf(elf_objects: Objects) -> Elf64:
    # getrandom.so has program headers, a dynamic segment, DT_NEEDED and version needs
    return Elf64(elf_objects.getrandom.read_bytes())


def test_the_unmodified_fixture_is_fine(elf: Elf64) -> None:
    assert analyze(zip_bytes({SO: elf.data})).status == "ok"


ElfCase = Callable[[Elf64], bytes]

ELF_CASES: list[tuple[str, ElfCase, str]] = [
    ("truncated header", lambda e: e.data[:40], "malformed ELF"),
    ("bad class", lambda e: patch(e.data, 4, "B", 7), "Invalid EI_CLASS"),
    ("truncated before dynamic", lambda e: e.data[:1200], "lies outside the file"),
    ("phdrs beyond end", lambda e: patch(e.data, 0x20, "<Q", 1 << 40), "program header table"),
    ("absurd phnum", lambda e: patch(e.data, 0x38, "<H", 0xFFFF), "absurd program header count"),
    ("wrong phentsize", lambda e: patch(e.data, 0x36, "<H", 10), "program header size 10"),
    ("shdrs beyond end", lambda e: patch(e.data, 0x3C, "<H", 60000), "section header table"),
    (
        "absurd extended section count",
        lambda e: patch(patch(e.data, 0x3C, "<H", 0), e.shoff + 32, "<Q", 10**9),
        "absurd section count",
    ),
    (
        "huge dynamic segment",
        lambda e: patch(e.data, e.segment("PT_DYNAMIC") + 32, "<Q", 1 << 31),
        "dynamic segment of",
    ),
    (
        "needed string past the table",
        lambda e: patch(e.data, e.tag("DT_NEEDED") + 8, "<Q", 1 << 30),
        "outside DT_STRTAB",
    ),
    (
        "string table at an unmapped address",
        lambda e: patch(e.data, e.tag("DT_STRTAB") + 8, "<Q", 1 << 45),
        "in no loaded segment",
    ),
    (
        "absurd verneed count",
        lambda e: patch(e.data, e.tag("DT_VERNEEDNUM") + 8, "<Q", 10**7),
        "absurd DT_VERNEEDNUM",
    ),
    (
        "unknown verneed version",
        lambda e: patch(e.data, e.verneed or 0, "<H", 2),
        "version need of version 2",
    ),
]


@pytest.mark.parametrize(("case", "make", "reason"), ELF_CASES, ids=[c[0] for c in ELF_CASES])
def test_lying_elf(elf: Elf64, case: str, make: ElfCase, reason: str) -> None:
    report = analyze(zip_bytes({SO: make(elf)}))
    assert_unanalysable(report, reason)
    assert SO in (report.reason or "")


@pytest.mark.parametrize("data", [b"not a shared object\n", b"\x7fEL", b""])
def test_a_non_elf_shared_object(data: bytes) -> None:
    report = analyze(zip_bytes({"pkg/libfoo.so.1": data}))
    assert report.status == "ok", report.reason
    assert report.notes == ("pkg/libfoo.so.1: named like a shared object but not ELF; skipped",)
    assert report.elf_files == () and report.native_files == ()


def test_non_elf_members_with_other_names_are_ignored() -> None:
    report = analyze(zip_bytes({"pkg/data.bin": os.urandom(4096), "pkg/a.py": b"x = 1\n"}))
    assert report.status == "ok"
    assert report.elf_files == ()


def test_a_symlinked_shared_object_is_not_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        link = zipfile.ZipInfo("pkg/libfoo.so")
        link.create_system = 3
        link.external_attr = (0o120777) << 16
        archive.writestr(link, "libfoo.so.1")
    assert analyze(out.getvalue()).status == "ok"


@pytest.mark.parametrize("name", ["../evil.so", "/abs/evil.so", "pkg/../../evil.so", "C:/x.so"])
def test_unsafe_names(elf: Elf64, name: str) -> None:
    assert_unanalysable(analyze(zip_bytes({name: elf.data})), "unsafe member name")


def test_a_member_without_a_name(elf: Elf64) -> None:
    """Found by the fuzz test: zipfile's own methods fail on a member whose name is empty
    (an IndexError, not an unanalysable report)."""
    data = zip_bytes({SO: elf.data, "X": b"payload"})
    second = central_entries(data)[1]
    data = patch(data, second + 28, "<H", 0)  # its name's length
    data = data[: second + 46] + data[second + 47 :]  # and its one-byte name
    end = data.rfind(b"PK\x05\x06")
    (size,) = struct.unpack_from("<I", data, end + 12)
    data = patch(data, end + 12, "<I", size - 1)  # the directory is one byte shorter
    assert_unanalysable(analyze(data), "a member without a name")


def test_duplicate_names(elf: Elf64) -> None:
    data = zip_bytes([(SO, elf.data), (SO, b"other")])
    assert_unanalysable(analyze(data), "duplicate member name")


def test_a_directory_offset_that_puts_members_before_the_file(elf: Elf64) -> None:
    """The end record says the directory starts further on than it does: zipfile takes the
    difference for data prepended to the archive, and shifts every member's offset back
    by it, below zero (found by the fuzz test: a ValueError from a negative seek)."""
    data = zip_bytes({SO: elf.data})
    record = data.rfind(b"PK\x05\x06")
    (offset,) = struct.unpack_from("<I", data, record + 16)
    data = patch(data, record + 16, "<I", offset + 30_000)
    assert_unanalysable(analyze(data), "starts before the archive")


def test_overlapping_members(elf: Elf64) -> None:
    data = zip_bytes({SO: elf.data, "pkg/_other.so": elf.data})
    second = central_entries(data)[1]
    data = patch(data, second + 42, "<I", 0)  # its local header offset: the first member's
    assert_unanalysable(analyze(data), "overlaps the next member")


def test_zip_bomb_by_compression_ratio(elf: Elf64) -> None:
    bomb = elf.data + bytes(64 * 1024 * 1024)
    data = zip_bytes({SO: bomb}, level=9)
    assert len(data) < 1024 * 1024
    assert_unanalysable(analyze(data), "zip bomb")


def test_member_larger_than_allowed(elf: Elf64) -> None:
    limits = Limits(max_member_size=len(elf.data) - 1)
    assert_unanalysable(analyze(zip_bytes({SO: elf.data}), limits), "limit")


def test_inflating_beyond_the_total_budget(elf: Elf64) -> None:
    members = {f"pkg/_ext{i}.so": elf.data for i in range(4)}
    limits = Limits(max_inflated_total=len(elf.data) * 2)
    assert_unanalysable(analyze(zip_bytes(members), limits), "inflating more than")


def test_declared_size_larger_than_the_data(elf: Elf64) -> None:
    data = zip_bytes({SO: elf.data})
    entry = central_entries(data)[0]
    data = patch(data, entry + 24, "<I", len(elf.data) * 2)  # uncompressed size
    assert_unanalysable(analyze(data), "deflate data ends before the declared size")


def test_corrupt_deflate_stream(elf: Elf64) -> None:
    data = bytearray(zip_bytes({SO: elf.data}))
    start = 30 + len(SO)
    data[start + 200 : start + 400] = b"\xff" * 200
    report = analyze(bytes(data))
    assert_unanalysable(report, SO)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (os.urandom(5000), "no end of central directory"),
        (b"", "no end of central directory"),
        (b"PK\x05\x06" + bytes(18), ""),  # an empty archive is a valid zip: handled below
    ],
)
def test_not_a_zip(data: bytes, reason: str) -> None:
    report = analyze(data)
    if reason:
        assert_unanalysable(report, reason)
    else:
        assert report.status == "ok"
        assert report.elf_files == ()


def test_truncated_zip(elf: Elf64) -> None:
    data = zip_bytes({SO: elf.data, "pkg/a.py": b"x = 1\n" * 100})
    assert_unanalysable(analyze(data[: len(data) // 2]), "not a zip archive")


def test_a_directory_claiming_too_many_members(elf: Elf64) -> None:
    data = zip_bytes({SO: elf.data})
    eocd = data.rfind(b"PK\x05\x06")
    data = patch(data, eocd + 8, "<HH", 0xFFFE, 0xFFFE)
    limits = Limits(max_members=1000)
    assert_unanalysable(analyze(data, limits), "members (limit 1000)")


def test_encrypted_member(elf: Elf64) -> None:
    data = zip_bytes({SO: elf.data})
    entry = central_entries(data)[0]
    flags = int.from_bytes(data[entry + 8 : entry + 10], "little")
    assert_unanalysable(analyze(patch(data, entry + 8, "<H", flags | 1)), "encrypted member")


def test_unsupported_compression(elf: Elf64) -> None:
    data = zip_bytes({SO: elf.data}, compression=zipfile.ZIP_BZIP2)
    assert_unanalysable(analyze(data), "compression method 12")


def test_local_header_naming_another_file(elf: Elf64) -> None:
    data = zip_bytes({SO: elf.data})
    data = data.replace(SO.encode(), b"pkg/_evl.so", 1)  # the local header only
    assert_unanalysable(analyze(data), "local header names")


@pytest.fixture(scope="module")
def many_members() -> bytes:
    """Over 65535 members: the count only fits the zip64 end-of-directory record."""
    return zip_bytes({f"pkg/m{i}.py": b"" for i in range(70_000)}, compression=zipfile.ZIP_STORED)


def test_zip64_directory_is_read(many_members: bytes) -> None:
    assert many_members.rfind(b"PK\x06\x06") > 0
    report = analyze(many_members)
    assert report.status == "ok"


def test_zip64_member_count_is_bounded(many_members: bytes) -> None:
    report = analyze(many_members, Limits(max_members=60_000))
    assert_unanalysable(report, "70000 members (limit 60000)")


def test_a_decoy_zip64_record_does_not_get_a_directory_past_the_bounds() -> None:
    """zipfile reads the zip64 record lying just before the locator, whatever offset the
    locator gives: a small decoy record at that offset passed the bounds while zipfile
    then parsed a directory of 20,000 members over a limit of 1,000."""
    count = 20_000
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, 1, 0) + b"a"
    entry = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            45,
            45,
            0,
            0,
            0,
            0x21,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + b"a"
    )

    def record(entries: int, size: int, offset: int) -> bytes:
        return struct.pack(
            "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size, offset
        )

    decoy = record(1, len(entry), len(local) + 56)
    directory = entry * count
    real = record(count, len(directory), len(local) + 56)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, len(local), 1)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 2**32 - 1, 2**32 - 1, 0)
    data = local + decoy + directory + real + locator + end
    report = analyze(data, Limits(max_members=1_000, max_central_directory=1 << 20))
    assert_unanalysable(report, "locator points elsewhere")
