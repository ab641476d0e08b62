"""Real manylinux wheels: answers that follow from how they were built."""

from __future__ import annotations

from pathlib import Path

from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import Report


def analyze(path: Path) -> Report:
    with path.open("rb") as source:
        return analyze_wheel(source, path.name, "0" * 64)


def test_numpy_bundles_openblas_and_keeps_its_manylinux2014_promise(
    real_wheels: dict[str, Path],
) -> None:
    report = analyze(real_wheels["numpy"])
    assert report.status == "ok"
    assert report.derived_platform_tag == "manylinux_2_17_x86_64"
    assert report.overclaims is False
    assert any(lib.startswith("libscipy_openblas") for lib in report.bundled_libraries)
    assert "libc.so.6" in report.external_libraries
    # auditwheel grafted the libraries into numpy.libs and pointed RPATH at them
    assert all(not lib.startswith("libscipy_openblas") for lib in report.external_libraries)
    assert report.requires.libc == "glibc"
    assert report.requires.cuda_major is None


def test_a_cxx_extension_needs_libstdcxx_versions(real_wheels: dict[str, Path]) -> None:
    report = analyze(real_wheels["kiwisolver"])
    assert report.requires.glibcxx is not None
    assert report.requires.cxxabi is not None
    assert "libstdc++.so.6" in report.external_libraries
    assert report.overclaims is False


def test_the_cuda_runtime_wheel_is_cuda_12(real_wheels: dict[str, Path]) -> None:
    report = analyze(real_wheels["cuda-runtime"])
    assert report.requires.cuda_major == 12
    (elf,) = report.elf_files
    assert elf.soname == "libcudart.so.12"
    assert report.derived_platform_tag == "manylinux_2_17_x86_64"
    assert report.overclaims is False
