from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.elf.recipes import FixtureWheel, Objects, build_objects, build_wheels


@pytest.fixture(scope="session")
def elf_objects(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    return build_objects(tmp_path_factory.mktemp("elf-objects"))


@pytest.fixture(scope="session")
def fixture_wheels(
    elf_objects: Objects, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, FixtureWheel]:
    return build_wheels(elf_objects, tmp_path_factory.mktemp("elf-wheels"))


@pytest.fixture(scope="session")
def glibc_wheel(fixture_wheels: dict[str, FixtureWheel]) -> Path:
    return fixture_wheels["glibc"].path


# Real manylinux wheels, fetched once with pip's own configuration into a cache that
# survives test runs (gitignored). Pinned, so their answers do not drift.
REAL_WHEELS = {
    "numpy": "numpy==2.2.6",  # C, with OpenBLAS bundled in numpy.libs
    "kiwisolver": "kiwisolver==1.4.8",  # a C++ extension
    "cuda-runtime": "nvidia-cuda-runtime-cu12==12.9.79",  # a CUDA library wheel, 3.5 MB
    "cuda-kernels": "nvidia-nvjpeg-cu12==12.4.0.76",  # 5 MB, with CUDA fat binaries
}
WHEEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "wheels"


@pytest.fixture(scope="session")
def real_wheels() -> dict[str, Path]:
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    found = {key: _cached(spec) for key, spec in REAL_WHEELS.items()}
    missing = [REAL_WHEELS[key] for key, path in found.items() if path is None]
    if missing:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311", "--dest", str(WHEEL_CACHE), *missing,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"pip download failed:\n{done.stdout}\n{done.stderr}"
        found = {key: _cached(spec) for key, spec in REAL_WHEELS.items()}
    assert all(found.values()), found
    return {key: path for key, path in found.items() if path is not None}


def _cached(spec: str) -> Path | None:
    name, version = spec.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"
    return next(iter(sorted(WHEEL_CACHE.glob(f"{prefix}*.whl"))), None)
