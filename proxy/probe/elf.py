"""Just enough ELF for `hostfit probe`: the interpreter and the version definitions.

`proxy.analysis` owns wheel analysis (and pyelftools); probing reads two trusted
files of this machine (the Python executable and its libstdc++), so a small
reader of its own keeps `hostfit probe` free of the analysis stack. Still bounded:
a malformed file gives `ValueError`, never a huge allocation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PT_INTERP = 3
SHT_GNU_VERDEF = 0x6FFFFFFD
MAX_HEADERS = 65535
MAX_STRING = 4096


@dataclass(frozen=True, slots=True)
class _Layout:
    endian: str
    header: struct.Struct
    program: struct.Struct
    section: struct.Struct
    is64: bool


_LAYOUTS = {
    (cls, data): _Layout(
        endian,
        struct.Struct(endian + ("HHIQQQIHHHHHH" if cls == 2 else "HHIIIIIHHHHHH")),
        struct.Struct(endian + ("IIQQQQQQ" if cls == 2 else "IIIIIIII")),
        struct.Struct(endian + ("IIQQQQIIQQ" if cls == 2 else "IIIIIIIIII")),
        cls == 2,
    )
    for cls in (1, 2)
    for data, endian in ((1, "<"), (2, ">"))
}


def interpreter(path: Path) -> str | None:
    """PT_INTERP of an executable: the dynamic loader it asks for."""
    with path.open("rb") as f:
        layout, header = _header(f)
        phoff, phentsize, phnum = header[4], header[8], header[9]
        for i in range(min(phnum, MAX_HEADERS)):
            fields = layout.program.unpack(_read(f, phoff + i * phentsize, layout.program.size))
            p_type = fields[0]
            p_offset, p_filesz = (fields[2], fields[5]) if layout.is64 else (fields[1], fields[4])
            if p_type == PT_INTERP:
                raw = _read(f, p_offset, min(p_filesz, MAX_STRING))
                return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return None


def version_definitions(path: Path) -> list[str]:
    """Names in .gnu.version_d (found by section type), e.g. ``GLIBCXX_3.4.30``."""
    with path.open("rb") as f:
        layout, header = _header(f)
        shoff, shentsize, shnum = header[5], header[10], header[11]
        sections = [
            layout.section.unpack(_read(f, shoff + i * shentsize, layout.section.size))
            for i in range(min(shnum, MAX_HEADERS))
        ]
        names: list[str] = []
        for sh in sections:
            if sh[1] != SHT_GNU_VERDEF:
                continue
            offset, size, link, count = sh[4], sh[5], sh[6], sh[7]
            if link >= len(sections):
                raise ValueError(f"{path}: verdef string table index out of range")
            strtab = sections[link]
            names.extend(_verdefs(f, layout.endian, offset, size, count, strtab[4], strtab[5]))
        return names


def _verdefs(
    f: BinaryIO, endian: str, offset: int, size: int, count: int, str_off: int, str_size: int
) -> list[str]:
    verdef, verdaux = struct.Struct(endian + "HHHHIII"), struct.Struct(endian + "II")
    names, pos = [], offset
    for _ in range(min(count, MAX_HEADERS)):
        if pos + verdef.size > offset + size:
            raise ValueError("verdef entry outside its section")
        _, _, _, aux_count, _, aux, nxt = verdef.unpack(_read(f, pos, verdef.size))
        if aux_count:
            name_off, _ = verdaux.unpack(_read(f, pos + aux, verdaux.size))
            if name_off >= str_size:
                raise ValueError("verdef name outside the string table")
            raw = _read(f, str_off + name_off, min(MAX_STRING, str_size - name_off))
            names.append(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
        if nxt == 0:
            break
        pos += nxt
    return names


def _header(f: BinaryIO) -> tuple[_Layout, tuple[int, ...]]:
    ident = _read(f, 0, 16)
    if ident[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    layout = _LAYOUTS.get((ident[4], ident[5]))
    if layout is None:
        raise ValueError("unknown ELF class or byte order")
    return layout, layout.header.unpack(_read(f, 16, layout.header.size))


def _read(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise ValueError(f"truncated ELF: wanted {size} bytes at {offset}")
    return data
