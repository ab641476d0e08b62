"""Which native binary format, OS and machine a zip member is, from its first bytes.

Pure: bytes in, a `NativeFile` (or None) out. ELF files are read by
`proxy.analysis.elf`; here only their OS is named, from ``EI_OSABI``. PE (Windows)
and Mach-O (macOS) files are only recognised, never parsed past their first header:
a Linux host loads neither, so the format, OS and machine are all analysis needs.
The one exception is a .NET (CLI) assembly: a PE file whose optional header names a
CLR runtime header. A .NET runtime (Mono, .NET) loads it on Linux too, so it is
recorded with os "dotnet", not "windows".

Headers are checked whole before they count: a member that merely starts with "MZ"
(a DOS program, or data) or whose header runs past its end is not a native binary.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from proxy.core.report import NativeFile

# Enough for an ELF identification, a Mach-O header and the DOS header, whose last
# field points at the PE header.
HEAD = 64

# The PE header is looked for at most this far in: linkers put it right after the
# DOS stub (0x80 to a few hundred bytes), and reading further would mean inflating a
# member's middle on the word of 4 bytes that may be anything.
MAX_PE_OFFSET = 64 * 1024

DOS_MAGIC = b"MZ"
DOS_LFANEW = struct.Struct("<I")  # e_lfanew: where the PE signature is
DOS_LFANEW_AT = 0x3C
PE_SIGNATURE = b"PE\0\0"
COFF_HEADER = struct.Struct("<HHIIIHH")  # Machine, ..., SizeOfOptionalHeader, Characteristics
PE_HEADER = len(PE_SIGNATURE) + COFF_HEADER.size
# The optional header's magic -> where NumberOfRvaAndSizes and the data directories are.
PE32, PE32_PLUS = 0x10B, 0x20B
OPTIONAL_LAYOUT = {PE32: (92, 96), PE32_PLUS: (108, 112)}
DATA_DIRECTORY = struct.Struct("<II")  # VirtualAddress, Size
CLR_DIRECTORY = 14  # IMAGE_DIRECTORY_ENTRY_COM_DESCRIPTOR: the CLR runtime header
# The optional header is read up to the end of the CLR directory entry, no further:
# with the PE header, at most this many bytes from e_lfanew (which MAX_PE_OFFSET bounds).
MAX_OPTIONAL_READ = max(dirs for _, dirs in OPTIONAL_LAYOUT.values()) + DATA_DIRECTORY.size * (
    CLR_DIRECTORY + 1
)

# Fat (universal) Mach-O headers are big-endian on every host (0xbebafeca is the same
# bytes read little-endian); 0xcafebabf has 64-bit offsets. Java class files also begin
# with 0xcafebabe, followed by their version (major >= 45): as a fat header's arch
# count that is at least 45, so, like file(1), a count from 1 to 19 is taken for
# Mach-O and anything else for not native.
FAT_MAGICS = {b"\xca\xfe\xba\xbe": 20, b"\xca\xfe\xba\xbf": 32}  # -> size of one arch entry
MAX_FAT_ARCHES = 19
# Thin Mach-O: the magic in the file's own byte order. -> byte order, header size
THIN_MAGICS = {
    b"\xfe\xed\xfa\xce": (">", 28),
    b"\xfe\xed\xfa\xcf": (">", 32),
    b"\xce\xfa\xed\xfe": ("<", 28),
    b"\xcf\xfa\xed\xfe": ("<", 32),
}

PE_MACHINES = {0x14C: "i386", 0x8664: "x86_64", 0xAA64: "aarch64", 0x1C4: "arm"}
MACHO_MACHINES = {
    7: "i386",
    0x01000007: "x86_64",
    12: "arm",
    0x0100000C: "arm64",
    0x0200000C: "arm64_32",
    18: "ppc",
    0x01000012: "ppc64",
}
# EI_OSABI values glibc's loader accepts on Linux: 0 (System V, what gcc writes) and 3
# (GNU, for binaries with IFUNC or unique symbols). It refuses every other value on every
# machine, "ELF file OS ABI invalid"; those are named here (the gABI's list), or by number.
LINUX_OSABI = frozenset({0, 3})
# ...and, on 32-bit ARM, ELFOSABI_ARM_AEABI (64), which its glibc port accepts as well.
MACHINE_OSABI = {"armv7l": 64}
# Device code no host loader maps, whose EI_OSABI names the GPU runtime's ABI (a CUDA
# cubin says 51, an AMD code object 64-66): it tells nothing of a system.
DEVICE_MACHINES = frozenset({"cuda", "amdgpu", "bpf"})
ELF_OSABI = {
    1: "hp-ux",
    2: "netbsd",
    4: "hurd",
    6: "solaris",
    7: "aix",
    8: "irix",
    9: "freebsd",
    10: "tru64",
    11: "modesto",
    12: "openbsd",
    13: "openvms",
    14: "nsk",
    15: "aros",
    16: "fenixos",
    17: "cloudabi",
    18: "openvos",
    64: "arm-aeabi",
    97: "arm",
    255: "standalone",
}

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, length)``: bytes of the member, fewer (or none) past its end."""


def elf_native(path: str, head: bytes, machine: str) -> NativeFile:
    """The record of an ELF file, whose ``machine`` `proxy.analysis.elf` has named."""
    osabi = head[7] if len(head) > 7 else 0
    if osabi in LINUX_OSABI or machine in DEVICE_MACHINES or MACHINE_OSABI.get(machine) == osabi:
        system = "linux"
    else:
        system = ELF_OSABI.get(osabi, f"EI_OSABI {osabi}")
    return NativeFile(path=path, format="elf", os=system, machine=machine)


def identify(path: str, head: bytes, read_at: ReadAt) -> NativeFile | None:
    """The record of a PE or Mach-O member, or None for anything else (ELF included).

    ``head``: the member's first `HEAD` bytes (all of it, if shorter). ``read_at`` is
    asked only for a PE header beyond them, or for a fat header's arch entries.
    """
    magic = head[:4]
    if magic in THIN_MAGICS:
        return _thin_macho(path, head)
    if magic in FAT_MAGICS:
        return _fat_macho(path, head, read_at)
    if head[:2] == DOS_MAGIC:
        return _pe(path, head, read_at)
    return None


def _pe(path: str, head: bytes, read_at: ReadAt) -> NativeFile | None:
    if len(head) < DOS_LFANEW_AT + DOS_LFANEW.size:
        return None
    (offset,) = DOS_LFANEW.unpack_from(head, DOS_LFANEW_AT)
    if offset > MAX_PE_OFFSET:
        return None
    size = PE_HEADER + MAX_OPTIONAL_READ
    header = head[offset : offset + size]
    if len(header) < size:
        header = read_at(offset, size)
    if len(header) < PE_HEADER or header[:4] != PE_SIGNATURE:
        return None  # a DOS program, or a PE header cut off by the member's end
    machine, *_, optional_size, _ = COFF_HEADER.unpack_from(header, 4)
    optional = header[PE_HEADER : PE_HEADER + min(optional_size, MAX_OPTIONAL_READ)]
    os = "dotnet" if _has_clr_header(optional) else "windows"
    return NativeFile(path=path, format="pe", os=os, machine=_name(PE_MACHINES, machine))


def _has_clr_header(optional: bytes) -> bool:
    """Whether the optional header (as far as it was read) has a CLR runtime header:
    the file is a .NET assembly (IL only, or mixed-mode C++/CLI)."""
    if len(optional) < 2:
        return False
    (magic,) = struct.unpack_from("<H", optional)
    if magic not in OPTIONAL_LAYOUT:
        return False
    count_at, directories = OPTIONAL_LAYOUT[magic]
    entry = directories + CLR_DIRECTORY * DATA_DIRECTORY.size
    if len(optional) < entry + DATA_DIRECTORY.size:
        return False
    (count,) = struct.unpack_from("<I", optional, count_at)
    if count <= CLR_DIRECTORY:
        return False
    address, length = DATA_DIRECTORY.unpack_from(optional, entry)
    return bool(address and length)


def _thin_macho(path: str, head: bytes) -> NativeFile | None:
    order, header_size = THIN_MAGICS[head[:4]]
    if len(head) < header_size:
        return None
    (cputype,) = struct.unpack_from(f"{order}I", head, 4)
    machine = _name(MACHO_MACHINES, cputype)
    return NativeFile(path=path, format="macho", os="macos", machine=machine)


def _fat_macho(path: str, head: bytes, read_at: ReadAt) -> NativeFile | None:
    if len(head) < 8:
        return None
    (count,) = struct.unpack_from(">I", head, 4)
    if not 1 <= count <= MAX_FAT_ARCHES:
        return None  # a Java class file, or no slices at all
    entry = FAT_MAGICS[head[:4]]
    size = 8 + count * entry
    table = head if len(head) >= size else read_at(0, size)
    if len(table) < size:
        return None
    machines: list[str] = []
    for at in range(8, size, entry):
        # cputype is the first field of both fat_arch and fat_arch_64.
        name = _name(MACHO_MACHINES, struct.unpack_from(">I", table, at)[0])
        if name not in machines:
            machines.append(name)
    return NativeFile(path=path, format="macho", os="macos", machine="+".join(machines))


def _name(names: dict[int, str], value: int) -> str:
    return names.get(value, f"{value:#x}")
