"""A wheel's report, read from any seekable binary source (a file, or ranges of a URL).

Reads the zip central directory, then for each member that may be a binary its
local header and first bytes; only members whose bytes start with the ELF magic
are read further, and only as far as ``proxy.analysis.elf`` asks: first every ELF
member without its CUDA fat binaries, then the fat binaries (the bulk of a CUDA wheel),
so that an early answer (`proxy.analysis.early`) can be given in between. PE and Mach-O
members are recognised from their first header (``proxy.analysis.native``) and
recorded with the ELF ones in ``native_files``. ELF files no loader maps
(relocatable objects, split debug files such as ``*.so.debug``) are left out of both.
A member named like a shared object (``.so``, ``.so.1``) that is no native binary at
all (text, empty, truncated) is skipped with a note in the report: no loader maps it.
Every member so named that no loader maps (those, PE or Mach-O files, and ELF files of
a type no loader maps, such as a relocatable object) is passed to
`proxy.core.aggregate`, which says whether a Linux import would load it, and fail; so
are the ELF executables (``ET_EXEC``), which glibc's loader refuses to load as libraries.
Hostile archives (zip bombs, overlapping members, ``..`` names, lying sizes) become an
``unanalysable`` report whose reason says what was wrong.
"""

from __future__ import annotations

import posixpath
import re
import stat
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import IO, cast

from proxy.analysis.bounds import Budget, Limits, Unanalysable
from proxy.analysis.deflate_cursors import MAX_INPUT, SEQUENTIAL_INPUT
from proxy.analysis.early import EarlyReport
from proxy.analysis.elf import (
    ET_DYN,
    ET_EXEC,
    FatBinary,
    elf_type,
    is_elf,
    read_elf,
    read_fat_binaries,
)
from proxy.analysis.member import MemberReader
from proxy.analysis.native import HEAD, elf_native, identify
from proxy.core.aggregate import summarize
from proxy.core.policy import PolicyTable, policy_table
from proxy.core.report import ElfFile, NativeFile, Report

LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra length
LOCAL_SIGNATURE = b"PK\x03\x04"
EOCD = struct.Struct("<4s4x2xHII2x")  # signature, entries, directory size, directory offset
EOCD_SIGNATURE = b"PK\x05\x06"
ZIP64_LOCATOR = struct.Struct("<4s4xQ4x")
ZIP64_EOCD = struct.Struct("<4s8x2x2x4x4x8xQQQ")  # ..., entries, directory size, offset
MAX_COMMENT = 0xFFFF
# Smaller than any loadable binary (an ELF32 header alone is 52 bytes, a PE's DOS and
# PE headers 88, a Mach-O's header and the load commands it needs more): not peeked.
MIN_BINARY_SIZE = 52
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
# Windows and macOS binaries by their usual names: always peeked, whatever their size,
# so that none escapes the record by a size or suffix rule. Not being PE or Mach-O is
# no error for them (unlike a shared object that is not ELF): nothing loads them here.
NATIVE_SUFFIXES = frozenset({".dll", ".pyd", ".exe", ".dylib"})

MAX_NOTES = 100  # a hostile wheel cannot make its report huge with them

# Members never read: text, Python, media and model files, by their suffix. Everything
# else is checked by its magic. (A loader maps a library by the name something asks for;
# nothing asks for "mesh.obj", and a member named like a shared object is always read.)

NOT_BINARY_SUFFIXES = frozenset(
    {".py", ".pyi", ".pyc", ".pyx", ".pxd", ".pxi", ".typed"}  # Python
    | {".h", ".hh", ".hpp", ".hxx", ".cuh", ".inl", ".c", ".cc", ".cpp", ".cxx", ".cu", ".f90"}
    | {".txt", ".md", ".rst", ".json", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".xml", ".csv"}
    | {".html", ".css", ".js", ".cmake", ".pc", ".proto", ".pem"}
    | {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tga", ".ico", ".svg", ".webp", ".tif", ".tiff"}
    | {".obj", ".mtl", ".stl", ".dae", ".urdf", ".sdf", ".ply", ".glb", ".gltf"}
    | {".ttf", ".otf", ".woff", ".woff2", ".wav", ".mp3", ".ogg", ".pdf", ".npy", ".npz"}
)
NOT_BINARY_NAMES = frozenset({"RECORD", "METADATA", "WHEEL", "LICENSE", "entry_points.txt"})


def analyze_wheel(
    source: IO[bytes],
    filename: str,
    sha256: str,
    *,
    limits: Limits | None = None,
    policies: PolicyTable | None = None,
    far: bool = False,
    early: Callable[[EarlyReport], None] | None = None,
) -> Report:
    """The report of the wheel in ``source``. Errors other than Unanalysable propagate.

    ``far``: reach the tail of a large deflated member without inflating its middle
    (`proxy.analysis.member`). Worth it where bytes cost a round trip (a URL read by
    ranges); a local file inflates forward faster than blocks can be searched for.

    ``early`` is given the report less its GPU code once every member but the CUDA fat
    binaries is read, if any fat binary is left to read.
    """
    table = policies or policy_table()

    def told(found: Members, unread: tuple[str, ...]) -> None:
        assert early is not None
        early(EarlyReport(_report(filename, sha256, found, table), unread))

    try:
        found = read_native_members(
            source, limits or Limits(), far=far, early=told if early is not None else None
        )
    except Unanalysable as exc:
        return Report.unanalysable(filename, sha256, str(exc))
    return _report(filename, sha256, found, table)


def _report(filename: str, sha256: str, found: Members, policies: PolicyTable) -> Report:
    elves = found.elves
    systems = {n.path: n.os for n in found.natives if n.format == "elf" and n.os != "linux"}
    summary = summarize(filename, elves, policies, found.not_elf, systems, found.executables)
    return Report(
        filename=filename,
        sha256=sha256,
        elf_files=tuple(elves),
        native_files=tuple(found.natives),
        notes=tuple(found.notes),
        requires=summary.requires,
        bundled_libraries=summary.bundled_libraries,
        external_libraries=summary.external_libraries,
        derived_platform_tag=summary.derived_platform_tag,
        overclaims=summary.overclaims,
    )


@dataclass(frozen=True, slots=True)
class Members:
    elves: list[ElfFile]  # the loadable ELF files
    natives: list[NativeFile]  # those and every PE and Mach-O file, in member order
    notes: list[str]  # members skipped, and why
    # members named like shared objects that no loader maps: no ELF file, or an ELF file
    # of a type neither glibc's nor musl's loader maps (a relocatable object, a core dump)
    not_elf: list[str]
    # the ELF executables (ET_EXEC): glibc's loader maps no second one into a process
    executables: list[str] = field(default_factory=list)


def read_native_members(
    source: IO[bytes],
    limits: Limits,
    *,
    far: bool = False,
    early: Callable[[Members, tuple[str, ...]], None] | None = None,
) -> Members:
    """The native binaries of the wheel, the ELF ones read in full.

    ``early`` is given them before any CUDA fat binary is read (their GPU code empty),
    with the names of the members that have fat binaries, if there are any.
    """
    size = source.seek(0, 2)
    _check_directory_bounds(source, size, limits)
    try:
        archive = zipfile.ZipFile(source)
        infos = archive.infolist()
        directory_start = int(getattr(archive, "start_dir", size))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        ValueError,
        EOFError,
    ) as exc:
        raise Unanalysable(f"not a readable zip archive ({exc})") from None
    if len(infos) > limits.max_members:
        raise Unanalysable(f"{len(infos)} members (limit {limits.max_members})")
    _check_names(infos)
    ends = _member_ends(infos, directory_start)
    budget = Budget(limits.max_inflated_total)
    elves: list[ElfFile] = []
    natives: list[NativeFile] = []
    notes: list[str] = []
    not_elf: list[str] = []
    executables: list[str] = []
    unread: list[tuple[int, zipfile.ZipInfo, list[FatBinary]]] = []  # index in elves
    for info in infos:
        shared = _named_shared_object(info)
        if not shared and not _may_be_binary(info):
            continue
        reader = _open_member(source, info, ends[info.header_offset], budget, far=far)
        head = reader.peek(HEAD)
        native: NativeFile | None = None
        if is_elf(head):
            if len(elves) >= limits.max_elf_members:
                raise Unanalysable(f"more than {limits.max_elf_members} ELF members")
            _check_sizes(info, limits)
            fat_binaries: list[FatBinary] = []
            end = ends[info.header_offset]
            elf = _read_elf_member(source, info, end, budget, reader, fat_binaries)
            kind = elf_type(head)
            if elf is not None:
                if fat_binaries:
                    unread.append((len(elves), info, fat_binaries))
                elves.append(elf)
                native = elf_native(info.filename, head, elf.machine)
                if kind == ET_EXEC:
                    executables.append(info.filename)
            elif shared and kind not in (ET_DYN, ET_EXEC):
                not_elf.append(info.filename)
        else:
            native = identify(info.filename, head, reader.read_at)
            # A Mach-O or PE file named like a shared object (a macOS extension module
            # is "*.cpython-311-darwin.so") is known for what it is: recorded, not refused
            # here. Whether a Linux import would load it (and fail) is the report's to say.
            if shared:
                not_elf.append(info.filename)
            if native is None and shared and len(notes) < MAX_NOTES:
                notes.append(f"{info.filename}: named like a shared object but not ELF; skipped")
        if native is not None:
            if len(natives) >= limits.max_native_members:
                raise Unanalysable(f"more than {limits.max_native_members} native binaries")
            natives.append(native)
    if early is not None and unread:
        early(
            Members(list(elves), natives, notes, not_elf, executables),
            tuple(i.filename for _, i, _ in unread),
        )
    for index, info, sections in unread:
        end = ends[info.header_offset]
        sms, ptx = _read_gpu_code(source, info, end, budget, sections, far=far)
        elves[index] = replace(elves[index], gpu_sms=sms, gpu_ptx=ptx)
    return Members(elves, natives, notes, not_elf, executables)


def _read_elf_member(
    source: IO[bytes],
    info: zipfile.ZipInfo,
    end: int,
    budget: Budget,
    reader: MemberReader,
    fat_binaries: list[FatBinary],
) -> ElfFile | None:
    """The member's facts but its GPU code, its fat binaries into ``fat_binaries``; read
    again from its start if entries found by searching misled."""
    doubts: list[str] = []
    elf: ElfFile | None = None
    try:
        elf = read_elf(
            cast(IO[bytes], reader), info.filename, doubts, fat_binaries, reader.from_start
        )
    except Unanalysable:
        if not reader.went_far:
            raise
        doubts.append("unanalysable")
    if not reader.went_far or not doubts:
        return elf
    fat_binaries.clear()
    forward = _open_member(source, info, end, budget, far=False, max_input=SEQUENTIAL_INPUT)
    return read_elf(cast(IO[bytes], forward), info.filename, None, fat_binaries)


def _read_gpu_code(
    source: IO[bytes],
    info: zipfile.ZipInfo,
    end: int,
    budget: Budget,
    sections: list[FatBinary],
    *,
    far: bool,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The member's SASS and PTX architectures; read again from its start if entries
    found by searching misled. Fat binaries are walked in order, in long fetches."""
    reader = _open_member(source, info, end, budget, far=far, max_input=SEQUENTIAL_INPUT)
    doubts: list[str] = []
    found: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    try:
        found = read_fat_binaries(cast(IO[bytes], reader), info.filename, sections, doubts)
    except Unanalysable:
        if not reader.went_far:
            raise
        doubts.append("unanalysable")
    if not reader.went_far or not doubts:
        return found
    forward = _open_member(source, info, end, budget, far=False, max_input=SEQUENTIAL_INPUT)
    return read_fat_binaries(cast(IO[bytes], forward), info.filename, sections)


def _check_directory_bounds(source: IO[bytes], size: int, limits: Limits) -> None:
    """Refuse absurd central directories before zipfile reads them into memory."""
    tail_size = min(size, EOCD.size + MAX_COMMENT)
    source.seek(size - tail_size)
    tail = source.read(tail_size)
    at = tail.rfind(EOCD_SIGNATURE)
    if at < 0 or at + EOCD.size > len(tail):
        raise Unanalysable("not a zip archive (no end of central directory record)")
    _, entries, directory_size, _ = EOCD.unpack_from(tail, at)
    locator_at = at - ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
        (_, record_offset) = ZIP64_LOCATOR.unpack_from(tail, locator_at)
        # zipfile reads the record just before the locator, whatever the locator says:
        # the bounds are checked on that one, and a locator pointing elsewhere (a second
        # record, small, for this check to read) is refused.
        record_at = size - tail_size + locator_at - ZIP64_EOCD.size
        if record_at < 0 or record_offset != record_at:
            raise Unanalysable("zip64 end of central directory locator points elsewhere")
        source.seek(record_at)
        record = source.read(ZIP64_EOCD.size)
        if len(record) != ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
            raise Unanalysable("zip64 end of central directory record is missing")
        _, entries, directory_size, _ = ZIP64_EOCD.unpack(record)
    if entries > limits.max_members:
        raise Unanalysable(f"{entries} members (limit {limits.max_members})")
    if directory_size > limits.max_central_directory:
        raise Unanalysable(f"central directory of {directory_size} bytes")


def _check_names(infos: list[zipfile.ZipInfo]) -> None:
    seen: set[str] = set()
    for info in infos:
        name = info.orig_filename
        if not info.filename:  # zipfile's own methods fail on it (is_dir: an IndexError)
            raise Unanalysable(f"a member without a name ({name!r})")
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts or "\0" in name:
            raise Unanalysable(f"unsafe member name {name!r}")
        if name in seen:
            raise Unanalysable(f"duplicate member name {name!r}")
        seen.add(name)


def _member_ends(infos: list[zipfile.ZipInfo], directory_start: int) -> dict[int, int]:
    """For each member's header offset, where the next member (or the directory) begins.

    Members whose bytes overlap are the classic non-recursive zip bomb; a member's data
    must end before the next one starts.
    """
    ordered = sorted(infos, key=lambda i: i.header_offset)
    if ordered and ordered[0].header_offset < 0:
        # zipfile shifts every offset by what the end record's offset says was prepended:
        # a lying one puts members before the file's start.
        raise Unanalysable(f"member {ordered[0].filename!r} starts before the archive")
    ends: dict[int, int] = {}
    for index, info in enumerate(ordered):
        end = ordered[index + 1].header_offset if index + 1 < len(ordered) else directory_start
        if info.header_offset + LOCAL_HEADER.size + info.compress_size > end:
            raise Unanalysable(f"member {info.filename!r} overlaps the next member")
        ends[info.header_offset] = end
    return ends


def _named_shared_object(info: zipfile.ZipInfo) -> bool:
    symlink = info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)
    return not symlink and bool(_SHARED_OBJECT.search(info.filename))


def _may_be_binary(info: zipfile.ZipInfo) -> bool:
    if info.is_dir():
        return False
    base = posixpath.basename(info.filename)
    suffix = posixpath.splitext(base)[1].lower()
    if suffix in NATIVE_SUFFIXES:
        return True
    if info.file_size < MIN_BINARY_SIZE:
        return False
    return suffix not in NOT_BINARY_SUFFIXES and base not in NOT_BINARY_NAMES


def _open_member(
    source: IO[bytes],
    info: zipfile.ZipInfo,
    end: int,
    budget: Budget,
    *,
    far: bool,
    max_input: int = MAX_INPUT,
) -> MemberReader:
    if info.flag_bits & 0x1:
        raise Unanalysable(f"{info.filename}: encrypted member")
    source.seek(info.header_offset)
    header = source.read(LOCAL_HEADER.size)
    if len(header) != LOCAL_HEADER.size:
        raise Unanalysable(f"{info.filename}: local header is truncated")
    signature, name_length, extra_length = LOCAL_HEADER.unpack(header)
    if signature != LOCAL_SIGNATURE:
        raise Unanalysable(f"{info.filename}: bad local header signature")
    raw_name = source.read(name_length)
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if raw_name != info.orig_filename.encode(encoding, "replace"):
        raise Unanalysable(f"{info.filename}: local header names {raw_name!r}")
    data_offset = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
    if data_offset + info.compress_size > end:
        raise Unanalysable(f"member {info.filename!r} overlaps the next member")
    return MemberReader(
        source,
        name=info.filename,
        data_offset=data_offset,
        compressed_size=info.compress_size,
        size=info.file_size,
        method=info.compress_type,
        budget=budget,
        far=far,
        max_input=max_input,
    )


def _check_sizes(info: zipfile.ZipInfo, limits: Limits) -> None:
    if info.file_size > limits.max_member_size:
        raise Unanalysable(
            f"{info.filename}: {info.file_size} bytes (limit {limits.max_member_size})"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if ratio > limits.max_compression_ratio:
        raise Unanalysable(
            f"{info.filename}: compression ratio {ratio:.0f}:1 "
            f"(limit {limits.max_compression_ratio}:1, a zip bomb)"
        )
