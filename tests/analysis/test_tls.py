"""Initial-exec TLS read from real gcc-built shared objects: what `ElfFile.initial_exec_tls`
says, against what readelf shows of the same files."""

from __future__ import annotations

import io
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from proxy.analysis.elf import read_elf
from tests.support.wheels import compile_shared_object

OWN_STATIC = (
    'static __thread int counter __attribute__((tls_model("initial-exec")));\n'
    "int f(void) { return ++counter; }\n"
)
OWN_GLOBAL = (
    '__thread int counter __attribute__((tls_model("initial-exec")));\n'
    "int f(void) { return ++counter; }\n"
)
# Another library's variable: the loader resolves it wherever it is defined, which the
# file alone does not tell.
ELSEWHERE = (
    'extern __thread int counter __attribute__((tls_model("initial-exec")));\n'
    "int f(void) { return ++counter; }\n"
)
DYNAMIC = "static __thread int counter;\nint f(void) { return ++counter; }\n"


@pytest.mark.parametrize(
    ("source", "own"),
    [(OWN_STATIC, True), (OWN_GLOBAL, True), (ELSEWHERE, False), (DYNAMIC, False)],
    ids=["own-static", "own-global", "elsewhere", "global-dynamic"],
)
@pytest.mark.parametrize("bits", ["64", "32"])
def test_initial_exec_tls_of_the_files_own(
    tmp_path: Path, source: str, own: bool, bits: str
) -> None:
    # Linked against musl (64-bit), or against no libc at all (32-bit: this machine has
    # no 32-bit libc): files that do not link glibc are the ones read.
    if bits == "32":
        built = compile_shared_object(source, tmp_path / "lib.so", flags=["-m32", "-nostdlib"])
    else:
        built = compile_shared_object(source, tmp_path / "lib.so", compiler="musl-gcc")
    relocations = subprocess.run(
        ["readelf", "-r", str(built)], capture_output=True, text=True, check=True
    ).stdout
    assert ("TPOFF" in relocations) == (source != DYNAMIC)
    with built.open("rb") as stream:
        elf = read_elf(stream, "lib.so")
    assert elf is not None
    assert elf.elf_class == int(bits)
    assert elf.initial_exec_tls is own


def test_a_file_that_links_glibc_is_not_read_for_it(tmp_path: Path) -> None:
    """glibc's loader takes initial-exec TLS from its static surplus: a file linking it
    is spared reading its relocation tables."""
    source = OWN_STATIC.replace("return ++counter;", 'return ++counter + puts("");')
    built = compile_shared_object("#include <stdio.h>\n" + source, tmp_path / "lib.so")
    with built.open("rb") as stream:
        elf = read_elf(stream, "lib.so")
    assert elf is not None and "libc.so.6" in elf.needed
    assert elf.initial_exec_tls is False


def test_a_file_without_df_static_tls_is_read_all_the_same(tmp_path: Path) -> None:
    """Not every linker marks such a file DF_STATIC_TLS (pydantic-core 0.7.1's aarch64
    musllinux module has TPOFF relocations and no DT_FLAGS): the TLS block is what
    makes it read."""
    built = compile_shared_object(OWN_STATIC, tmp_path / "lib.so", compiler="musl-gcc")
    flags = struct.pack("<qQ", 30, 0x10)  # DT_FLAGS: DF_STATIC_TLS
    data = built.read_bytes()
    assert data.count(flags) == 1
    unmarked = tmp_path / "unmarked.so"
    unmarked.write_bytes(data.replace(flags, struct.pack("<qQ", 30, 0)))
    dynamic = subprocess.run(
        ["readelf", "-d", str(unmarked)], capture_output=True, text=True, check=True
    ).stdout
    assert "STATIC_TLS" not in dynamic
    with unmarked.open("rb") as stream:
        elf = read_elf(stream, "unmarked.so")
    assert elf is not None and elf.initial_exec_tls is True


@pytest.mark.parametrize(
    "tag", [7, 8], ids=["DT_RELA-beyond-the-segments", "DT_RELASZ-past-the-end"]
)
def test_a_relocation_table_that_cannot_be_read_counts_as_none(tmp_path: Path, tag: int) -> None:
    """A table the loader could not read either: the file's other facts stand (an error
    here would hide it from every host), and it is not judged on this."""
    built = compile_shared_object(OWN_STATIC, tmp_path / "lib.so", compiler="musl-gcc")
    data = bytearray(built.read_bytes())
    with built.open("rb") as stream:
        before = read_elf(stream, "lib.so")
    dynamic = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(".dynamic")
    assert dynamic is not None
    offset = dynamic["sh_offset"]
    for at in range(offset, offset + dynamic["sh_size"], 16):
        if struct.unpack_from("<q", data, at)[0] == tag:
            struct.pack_into("<Q", data, at + 8, 1 << 40)
            break
    else:
        pytest.fail(f"no dynamic tag {tag}")
    with io.BytesIO(bytes(data)) as stream:
        after = read_elf(stream, "lib.so")
    assert before is not None and before.initial_exec_tls is True
    assert after is not None and after.initial_exec_tls is False
    assert replace(after, initial_exec_tls=True) == before
