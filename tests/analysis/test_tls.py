"""Initial-exec TLS read from real gcc-built shared objects: what `ElfFile.initial_exec_tls`
says, against what readelf shows of the same files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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
    flags = ["-m32", "-nostdlib"] if bits == "32" else []
    built = compile_shared_object(source, tmp_path / "lib.so", flags=flags)
    relocations = subprocess.run(
        ["readelf", "-r", str(built)], capture_output=True, text=True, check=True
    ).stdout
    assert ("TPOFF" in relocations) == (source != DYNAMIC)
    with built.open("rb") as stream:
        elf = read_elf(stream, "lib.so")
    assert elf is not None
    assert elf.elf_class == int(bits)
    assert elf.initial_exec_tls is own
