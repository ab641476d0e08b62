"""Builders of hostile wheels and corrupted ELF files for the hostile-input tests."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from typing import Any

from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

FILENAME = "hostile-1.0-cp311-cp311-linux_x86_64.whl"


def zip_bytes(
    members: list[tuple[str, bytes]] | dict[str, bytes],
    compression: int = zipfile.ZIP_DEFLATED,
    level: int | None = None,
) -> bytes:
    items = members.items() if isinstance(members, dict) else members
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(out, "w", compression, compresslevel=level) as archive:
            for name, data in items:
                archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, compression)
    return out.getvalue()


def central_entries(data: bytes) -> list[int]:
    """Offsets of the central directory headers, in order."""
    offsets = []
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        offsets.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    return offsets


def patch(data: bytes, offset: int, fmt: str, *values: Any) -> bytes:
    buffer = bytearray(data)
    struct.pack_into(fmt, buffer, offset, *values)
    return bytes(buffer)


class Elf64:
    """Offsets of the structures of a little-endian ELF64 shared object, for patching."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        elf = ELFFile(io.BytesIO(data))
        self.phoff: int = elf["e_phoff"]
        self.shoff = elf["e_shoff"]
        self.segments = [
            (i, seg["p_type"], seg["p_offset"], seg["p_filesz"])
            for i, seg in enumerate(elf.iter_segments())
        ]
        dynamic = next(s for s in elf.iter_segments() if s["p_type"] == "PT_DYNAMIC")
        assert isinstance(dynamic, DynamicSegment)
        self.dynamic_offset = dynamic["p_offset"]
        self.tags = [(t.entry.d_tag, t.entry.d_val) for t in dynamic.iter_tags()]
        section = elf.get_section_by_name(".gnu.version_r")
        self.verneed = section["sh_offset"] if section is not None else None

    def phdr(self, index: int) -> int:
        return self.phoff + index * 56

    def segment(self, p_type: str) -> int:
        return next(self.phdr(i) for i, t, _, _ in self.segments if t == p_type)

    def tag(self, name: str) -> int:
        """File offset of the first dynamic entry with this tag."""
        index = next(i for i, (t, _) in enumerate(self.tags) if t == name)
        return self.dynamic_offset + index * 16
