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


# Compute capabilities NVIDIA has shipped (CUDA C Programming Guide, "Compute Capabilities").
REAL_ARCHITECTURES = {
    "5.0", "5.2", "5.3", "6.0", "6.1", "6.2", "7.0", "7.2", "7.5", "8.0", "8.6", "8.7", "8.9",
    "9.0", "10.0", "10.1", "10.3", "11.0", "12.0", "12.1",
}  # fmt: skip


def test_fat_binaries_of_a_real_cuda_library(real_wheels: dict[str, Path]) -> None:
    report = analyze(real_wheels["cuda-kernels"])
    sms, ptx = report.requires.gpu_sms, report.requires.gpu_ptx
    assert sms is not None and ptx is not None
    # every entry header read is a real architecture: the parser walked the containers right
    assert set(sms) <= REAL_ARCHITECTURES
    assert set(ptx) <= REAL_ARCHITECTURES
    assert {"8.0", "9.0"} <= set(sms)  # a CUDA 12 library has kernels for Ampere and Hopper
    assert list(sms) == sorted(sms, key=lambda v: tuple(map(int, v.split("."))))
