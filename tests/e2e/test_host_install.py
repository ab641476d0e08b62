"""Two hosts install the same requirement through hostfit and get different, right wheels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import clean_env, new_venv, pip_install, python_output, uv_install
from tests.support.cuda_wheels import CudaBuild, cudart_stub, kernels_library
from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream
from tests.support.wheels import build_sdist, extension_wheel

pytestmark = pytest.mark.e2e
CP = "cp311-cp311"
ON_THIS_HOST = "python=3.11,impl=cp,arch=x86_64"
MANYLINUX = f"{CP}-manylinux_2_17_x86_64"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    work = tmp_path_factory.mktemp("hosts")
    with Upstream() as upstream:
        for version, platform in [
            ("1.0", "manylinux_2_17_x86_64"),
            ("1.0", "manylinux_2_34_x86_64"),
            ("2.0", "manylinux_2_34_x86_64"),
        ]:
            wheel = extension_wheel(
                "fitpkg", version, work, value=f"{version}-{platform}", tag=f"{CP}-{platform}"
            )
            upstream.add("fitpkg", wheel)
        upstream.add("fitpkg", build_sdist("fitpkg", "2.0", work))
        for label in ("cu118", "cu121", "cpu"):
            wheel = extension_wheel(
                "gpukit", f"3.1+{label}", work, value=label, tag=f"{CP}-manylinux_2_17_x86_64"
            )
            upstream.add("gpukit", wheel)
        # torch's newest is a CUDA 12 build only, which installs NVIDIA's CUDA runtime (as
        # on the public index); 1.0 needs no CUDA.
        library = kernels_library(CudaBuild("cu126", cuda_major=12), work / "k" / "libkernels.so")
        upstream.add("torch", extension_wheel(
            "torch", "2.2", work, value="cu126", tag=MANYLINUX,
            files={"torch_kernels/libkernels.so": library.read_bytes()},
            requires_dist=["nvidia-cuda-runtime-cu12"],
        ))  # fmt: skip
        upstream.add("torch", extension_wheel("torch", "1.0", work, value="1.0", tag=MANYLINUX))
        runtime = cudart_stub(12, work / "cudart")  # what NVIDIA's package ships
        upstream.add("nvidia-cuda-runtime-cu12", extension_wheel(
            "nvidia-cuda-runtime-cu12", "12.6", work, tag=MANYLINUX,
            files={"nvidia/cuda_runtime/lib/libcudart.so.12": runtime.read_bytes()},
        ))  # fmt: skip
        with ProxyProcess("--upstream", upstream.url, cache_dir=work / "cache") as proxy:
            yield proxy


def install(tool: str, proxy: ProxyProcess, tmp_path: Path, profile: str, *reqs: str) -> Path:
    python = new_venv(tmp_path / "venv")
    env = clean_env(tmp_path)
    if tool == "pip":
        # pip carries the profile in its User-Agent, through PIP_USER_AGENT_USER_DATA.
        env["PIP_USER_AGENT_USER_DATA"] = profile
        result = pip_install(python, proxy.url + "simple/", *reqs, env=env)
    else:
        index = proxy.url + f"p/{profile}/simple/"
        result = uv_install(python, index, *reqs, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return python


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_old_glibc_host_gets_the_old_glibc_build_and_no_source_build(
    served: ProxyProcess, tmp_path: Path, tool: str
) -> None:
    old = install(tool, served, tmp_path / "old", f"{ON_THIS_HOST},libc=glibc-2.28", "fitpkg")
    answer = "import fitpkg; print(fitpkg.answer())"
    # 2.0 has only a glibc 2.34 wheel: the old host gets 1.0's wheel, not 2.0's sdist.
    assert python_output(old, answer) == "1.0-manylinux_2_17_x86_64"
    new = install(tool, served, tmp_path / "new", f"{ON_THIS_HOST},libc=glibc-2.36", "fitpkg")
    assert python_output(new, answer) == "2.0-manylinux_2_34_x86_64"


@pytest.mark.parametrize("tool", ["pip", "uv"])
@pytest.mark.parametrize(("cuda", "expected"), [("12.4", "cu121"), ("none", "cpu")])
def test_cuda_host_gets_cuda_build_and_cpu_host_the_cpu_build(
    served: ProxyProcess, tmp_path: Path, tool: str, cuda: str, expected: str
) -> None:
    python = install(tool, served, tmp_path, f"cuda={cuda}", "gpukit==3.1")
    assert python_output(python, "import gpukit; print(gpukit.answer())") == expected


@pytest.mark.parametrize("tool", ["pip", "uv"])
@pytest.mark.parametrize(("cuda", "expected"), [("none", "cu126"), ("11.8", "1.0")])
def test_a_host_without_a_driver_gets_torchs_cuda_build_an_old_driver_an_older_torch(
    served: ProxyProcess, tmp_path: Path, tool: str, cuda: str, expected: str
) -> None:
    """torch's CUDA builds and NVIDIA's CUDA runtime run on the CPU when there is no
    driver (shipped project facts): a CPU-only host installs the newest torch with the
    runtime it requires, and imports it; a driver too old for its CUDA major gets the
    newest torch that needs none, and no runtime."""
    python = install(tool, served, tmp_path, f"{ON_THIS_HOST},cuda={cuda}", "torch")
    assert python_output(python, "import torch; print(torch.answer())") == expected
    runtime = "import importlib.util as u; print(bool(u.find_spec('nvidia_cuda_runtime_cu12')))"
    assert python_output(python, runtime) == str(cuda == "none")
