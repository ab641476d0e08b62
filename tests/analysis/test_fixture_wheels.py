"""Every fixture wheel, built from C/C++ sources, gives its known answer."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import NativeFile, Report
from tests.fixtures.elf.recipes import FixtureWheel, Objects

NAMES = [
    "glibc", "debug", "cxx", "execstack", "isa", "bundled", "cuda", "driver", "driver-dlopened",
    "fatbin", "musl",
]  # fmt: skip


def field(report: Report, dotted: str) -> Any:
    value: Any = report.to_json()
    for part in dotted.split("."):
        value = value[part]
    return value


def analyze(fixture: FixtureWheel) -> Report:
    with fixture.path.open("rb") as source:
        return analyze_wheel(source, fixture.path.name, "0" * 64)


def test_musl_toolchain_is_installed(elf_objects: Objects) -> None:
    # CI installs musl-tools (apt); without it the musl fixture cannot be built.
    assert shutil.which("musl-gcc"), "musl-gcc is missing: apt-get install musl-tools"
    assert elf_objects.musl is not None


@pytest.mark.parametrize("name", NAMES)
def test_known_answer(name: str, fixture_wheels: dict[str, FixtureWheel]) -> None:
    if name not in fixture_wheels:
        pytest.fail(f"fixture {name!r} was not built (see test_musl_toolchain_is_installed)")
    fixture = fixture_wheels[name]
    report = analyze(fixture)
    assert report.status == "ok", report.reason
    assert len(report.elf_files) >= 1
    for dotted, expected in fixture.expected.items():
        assert field(report, dotted) == expected, dotted


def test_bundled_library_found_through_rpath_and_runpath(
    fixture_wheels: dict[str, FixtureWheel],
) -> None:
    report = analyze(fixture_wheels["bundled"])
    by_path = {elf.path: elf for elf in report.elf_files}
    assert by_path["fx_bundled/_rpath.so"].rpath == ("$ORIGIN/../fx_bundled.libs",)
    assert by_path["fx_bundled/_rpath.so"].runpath == ()
    assert by_path["fx_bundled/_runpath.so"].runpath == ("$ORIGIN/../fx_bundled.libs",)
    assert by_path["fx_bundled.libs/libdep.so.1"].soname == "libdep.so.1"


def test_cuda_stub_version_need_is_recorded(fixture_wheels: dict[str, FixtureWheel]) -> None:
    (elf,) = analyze(fixture_wheels["cuda"]).elf_files
    assert elf.needed == ("libcudart.so.12",)
    assert elf.version_needs["libcudart.so.12"] == ("libcudart.so.12",)


def test_report_survives_json_round_trip(fixture_wheels: dict[str, FixtureWheel]) -> None:
    for fixture in fixture_wheels.values():
        report = analyze(fixture)
        assert Report.from_json(report.to_json()) == report


@pytest.mark.parametrize("name", NAMES)
def test_every_elf_file_is_a_native_file(
    name: str, fixture_wheels: dict[str, FixtureWheel]
) -> None:
    if name not in fixture_wheels:
        pytest.fail(f"fixture {name!r} was not built (see test_musl_toolchain_is_installed)")
    report = analyze(fixture_wheels[name])
    assert report.native_files == tuple(
        NativeFile(elf.path, "elf", "linux", elf.machine) for elf in report.elf_files
    )
    assert report.native_platforms() == {("linux", elf.machine) for elf in report.elf_files}
