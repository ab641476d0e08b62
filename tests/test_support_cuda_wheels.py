"""The synthetic CUDA builds say what they were built to say, to analysis and on import."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from proxy.analysis.wheel import analyze_wheel
from tests.support.clients import new_venv, python_output
from tests.support.cuda_wheels import CudaBuild, build_wheel_for

CP = "cp311-cp311-manylinux_2_17_x86_64"


@pytest.mark.parametrize(
    ("build", "requires"),
    [
        (
            CudaBuild("cu118", 11, (37, 61, 86), (86,)),
            {"cuda_major": 11, "gpu_sms": ("3.7", "6.1", "8.6"), "gpu_ptx": ("8.6",)},
        ),
        (
            CudaBuild("cu128", 12, (75, 100, 120), (120,)),
            {"cuda_major": 12, "gpu_sms": ("7.5", "10.0", "12.0"), "gpu_ptx": ("12.0",)},
        ),
        (CudaBuild("cu126", 12, (90,)), {"cuda_major": 12, "gpu_sms": ("9.0",), "gpu_ptx": None}),
        (CudaBuild("cpu"), {"cuda_major": None, "gpu_sms": None, "gpu_ptx": None}),
    ],
)
def test_analysis_reads_what_the_build_was_made_with(
    tmp_path: Path, build: CudaBuild, requires: dict[str, object]
) -> None:
    wheel = build_wheel_for("torchy", "2.7.0", build, tmp_path, tag=CP)
    assert wheel.name == f"torchy-2.7.0+{build.label}-{CP}.whl"
    data = wheel.read_bytes()
    with wheel.open("rb") as fh:
        report = analyze_wheel(fh, wheel.name, hashlib.sha256(data).hexdigest())
    assert report.status == "ok", report.reason
    for key, value in requires.items():
        assert getattr(report.requires, key) == value, key
    if build.cuda_major is not None:
        (kernels,) = [e for e in report.elf_files if e.path.endswith("libkernels.so")]
        assert f"libcudart.so.{build.cuda_major}" in kernels.needed
        assert kernels.version_needs == {
            f"libcudart.so.{build.cuda_major}": (f"libcudart.so.{build.cuda_major}",)
        }


def test_a_build_without_local_version_and_its_import(tmp_path: Path) -> None:
    wheel = build_wheel_for("torchy", "2.7.0", CudaBuild("cu126", 12, (90,)), tmp_path, tag=CP,
                            local=False)  # fmt: skip
    assert wheel.name == f"torchy-2.7.0-{CP}.whl"
    python = new_venv(tmp_path / "venv")
    site = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    # The kernels library is not loaded on import: a host without a GPU imports it.
    assert python_output(python, "import torchy; print(torchy.answer())") == "cu126"
