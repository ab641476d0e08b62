"""Agreement with GNU readelf on every ELF file of the fixtures and of real wheels."""

from __future__ import annotations

import re
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import ElfFile
from tests.fixtures.elf.recipes import FixtureWheel

ISA_LEVELS = {"x86-64-baseline": 1, "x86-64-v2": 2, "x86-64-v3": 3, "x86-64-v4": 4}
# glibc's default stack permissions where PT_GNU_STACK is missing
NO_EXEC_STACK_BY_DEFAULT = {"aarch64", "riscv64", "loongarch64"}


@dataclass
class ReadelfFacts:
    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    version_needs: dict[str, tuple[str, ...]]
    stack_flags: str | None
    isa_level: int | None


def readelf(path: Path) -> ReadelfFacts:
    done = subprocess.run(
        ["readelf", "-d", "-V", "-l", "-n", "--wide", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout

    def tag(name: str) -> list[str]:
        return re.findall(rf"\({name}\)\s+[^\[]*\[(.*)\]", text)

    needs: dict[str, list[str]] = {}
    block = text.split("Version needs section", 1)[1] if "Version needs section" in text else ""
    current: list[str] = []
    for line in block.split("\n\n", 1)[0].splitlines()[1:]:
        file_match = re.search(r"File: (\S+)\s+Cnt:", line)
        name_match = re.search(r"Name: (\S+)\s+Flags:", line)
        if file_match:
            current = needs.setdefault(file_match.group(1), [])
        elif name_match:
            current.append(name_match.group(1))
    stack = re.search(r"^\s*GNU_STACK(?:\s+0x[0-9a-f]+){5}\s+(\w+)\s", text, re.MULTILINE)
    isa = re.findall(r"x86 ISA needed: ([^\n]*)", text)
    levels = [ISA_LEVELS[n.strip()] for line in isa for n in line.split(",") if n.strip()]
    sonames = tag("SONAME")
    return ReadelfFacts(
        soname=sonames[0] if sonames else None,
        needed=tuple(tag("NEEDED")),
        rpath=tuple(p for v in tag("RPATH") for p in v.split(":") if p),
        runpath=tuple(p for v in tag("RUNPATH") for p in v.split(":") if p),
        version_needs={lib: tuple(v) for lib, v in needs.items()},
        stack_flags=stack.group(1) if stack else None,
        isa_level=max(levels) if levels else None,
    )


def assert_agrees(elf: ElfFile, facts: ReadelfFacts) -> None:
    assert elf.soname == facts.soname
    assert elf.needed == facts.needed
    assert elf.rpath == facts.rpath
    assert elf.runpath == facts.runpath
    assert dict(elf.version_needs) == facts.version_needs
    if facts.stack_flags is None:
        assert elf.execstack is (elf.machine not in NO_EXEC_STACK_BY_DEFAULT)
    else:
        assert elf.execstack is ("E" in facts.stack_flags)
    assert elf.x86_isa_needed == facts.isa_level


def check_wheel(wheel: Path, scratch: Path) -> int:
    with wheel.open("rb") as source:
        report = analyze_wheel(source, wheel.name, "0" * 64)
    assert report.status == "ok", report.reason
    with zipfile.ZipFile(wheel) as archive:
        for elf in report.elf_files:
            target = scratch / elf.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(elf.path))
            assert_agrees(elf, readelf(target))
    return len(report.elf_files)


@pytest.mark.parametrize(
    "name", ["glibc", "debug", "cxx", "execstack", "isa", "bundled", "cuda", "fatbin", "musl"]
)
def test_fixture_agrees_with_readelf(
    name: str, fixture_wheels: dict[str, FixtureWheel], tmp_path: Path
) -> None:
    assert check_wheel(fixture_wheels[name].path, tmp_path) >= 1


@pytest.mark.parametrize("name", ["numpy", "kiwisolver", "cuda-runtime", "cuda-kernels"])
def test_real_wheel_agrees_with_readelf(
    name: str, real_wheels: dict[str, Path], tmp_path: Path
) -> None:
    assert check_wheel(real_wheels[name], tmp_path) >= 1


def test_readelf_parser_sees_what_it_compares(
    fixture_wheels: dict[str, FixtureWheel], tmp_path: Path
) -> None:
    """Guard against an agreement test that passes because the parser found nothing."""
    with zipfile.ZipFile(fixture_wheels["bundled"].path) as archive:
        target = tmp_path / "rpath.so"
        target.write_bytes(archive.read("fx_bundled/_rpath.so"))
    facts = readelf(target)
    assert facts.needed == ("libdep.so.1",)
    assert facts.rpath == ("$ORIGIN/../fx_bundled.libs",)
    assert facts.stack_flags == "RW"
    with zipfile.ZipFile(fixture_wheels["isa"].path) as archive:
        target = tmp_path / "isa.so"
        target.write_bytes(archive.read("fx_isa/_v3.so"))
    assert readelf(target).isa_level == 3
    with zipfile.ZipFile(fixture_wheels["glibc"].path) as archive:
        target = tmp_path / "glibc.so"
        target.write_bytes(archive.read("fx_glibc/_random.so"))
    assert "GLIBC_2.25" in readelf(target).version_needs["libc.so.6"]
