"""pip and uv install the right CUDA build through hostfit, from a family of local indexes
standing in for a CUDA index family (cu118, cu126, cu128, cpu) beside a default index.

Each build is a real wheel (tests/support/cuda_wheels.py): a library compiled with gcc that
needs libcudart.so.N, with a .nv_fatbin of chosen SASS and PTX architectures, and a module
whose answer() names the build.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.clients import clean_env, new_venv, pip_install, python_output, uv_install
from tests.support.cuda_wheels import CudaBuild, build_wheel_for
from tests.support.proxy import ROOT, ProxyProcess
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

pytestmark = pytest.mark.e2e
CP = "cp311-cp311-manylinux_2_17_x86_64"
ON_THIS_HOST = "python=3.11,impl=cp,arch=x86_64"
ROUTED = ["torch", "torchaudio", "kernels", "nvidia-*"]
# Like PyTorch's: cu118 still has SASS for Pascal (6.1), cu126 keeps 6.0 (which runs on
# 6.1), cu128 starts at Turing (7.5).
BUILDS = (
    CudaBuild("cu126", 12, (50, 60, 70, 75, 80, 86, 90), (90,)),
    CudaBuild("cu128", 12, (75, 80, 86, 90, 100, 120), (120,)),
    CudaBuild("cu118", 11, (37, 50, 60, 61, 70, 75, 80, 86, 90), (90,)),
    CudaBuild("cpu"),
)
# A smaller project's builds, as many are compiled: SASS and PTX for 8.0 only. On a 9.0 GPU
# they run through PTX JIT, which only a driver at least as new as the toolkit does.
KERNELS = (
    CudaBuild("cu128", 12, (80,), (80,)),
    CudaBuild("cu118", 11, (80,), (80,)),
    CudaBuild("cpu"),
)


@dataclass
class World:
    work: Path
    upstreams: dict[str, Upstream]
    config: Path

    def proxy(self, name: str) -> ProxyProcess:
        return ProxyProcess("--config", str(self.config), cache_dir=self.work / name)


def _config(ups: dict[str, Upstream]) -> str:
    lines = ["[hostfit]", "analysis-budget = 120", ""]
    for build in BUILDS:
        lines += [
            "[[hostfit.upstream]]",
            f'url = "{ups[build.label].url}"',
            f"projects = {ROUTED!r}".replace("'", '"'),
            'family = "torch"',
            "",
        ]
    lines += ["[[hostfit.upstream]]", f'url = "{ups["default"].url}"', ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("cuda-family")
    with ExitStack() as stack:
        names = [*(b.label for b in BUILDS), "default"]
        ups = {name: stack.enter_context(Upstream()) for name in names}
        for build in BUILDS:
            ups[build.label].add("torch", build_wheel_for("torch", "2.7.0", build, work, tag=CP))
        for build in KERNELS:
            wheel = build_wheel_for("kernels", "1.0", build, work, tag=CP)
            ups[build.label].add("kernels", wheel)
        # CUDA builds only, of a project whose CUDA builds run on the CPU (a shipped fact).
        for build in BUILDS[:2]:
            wheel = build_wheel_for("torchaudio", "2.7.0", build, work, tag=CP)
            ups[build.label].add("torchaudio", wheel)
        # The CUDA index lists numpy too (PyTorch's indexes do), the default index torch.
        for where in ("cu126", "default"):
            files = {"numpy/__init__.py": f"WHERE = '{where}'\n".encode()}
            ups[where].add(
                "numpy", build_wheel(WheelSpec("numpy", "2.0", files=files), work / where)
            )
        impostor = {"torch/__init__.py": b"def answer(): return 'default index'\n"}
        ups["default"].add("torch", build_wheel(WheelSpec("torch", "99.0", files=impostor), work))
        config = work / "hostfit.toml"
        config.write_text(_config(ups))
        yield World(work, ups, config)


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[ProxyProcess]:
    with world.proxy("cache") as proxy:
        yield proxy


def install(tool: str, proxy: ProxyProcess, tmp_path: Path, profile: str, *reqs: str) -> Path:
    python = new_venv(tmp_path / "venv")
    env = clean_env(tmp_path)
    if tool == "pip":
        # pip carries the profile in its User-Agent, through PIP_USER_AGENT_USER_DATA.
        env["PIP_USER_AGENT_USER_DATA"] = profile
        result = pip_install(python, proxy.url + "simple/", *reqs, env=env)
    else:
        result = uv_install(python, proxy.url + f"p/{profile}/simple/", *reqs, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return python


def answer(python: Path) -> str:
    return python_output(python, "import torch; print(torch.answer())")


@pytest.mark.parametrize("tool", ["pip", "uv"])
@pytest.mark.parametrize(
    ("profile", "build"),
    [
        # A GTX 1080 Ti on a CUDA 12.4 driver: a build with SASS for 6.1 (cu126 and cu128
        # need a newer driver), never one that starts at 7.5.
        ("cuda=12.4,sm=6.1", "cu118"),
        # The same GPU on a 12.8 driver: cu126, whose SASS 6.0 runs on 6.1; not cu128
        # (uv's --torch-backend auto picks by the driver alone, and would take cu128).
        ("cuda=12.8,sm=6.1", "cu126"),
        ("cuda=12.8,sm=9.0", "cu128"),
        ("cuda=none", "cpu"),
        ("cuda=11.8,sm=8.6", "cu118"),
        # Minor version compatibility: cu118 on an 11.4 driver, from its SASS for 6.1.
        ("cuda=11.4,sm=6.1", "cu118"),
    ],
)
def test_each_host_installs_its_build(
    served: ProxyProcess, tmp_path: Path, tool: str, profile: str, build: str
) -> None:
    python = install(tool, served, tmp_path, f"{ON_THIS_HOST},{profile}", "torch")
    assert answer(python) == build


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_without_a_driver_or_a_cpu_build_a_cuda_build_that_runs_on_the_cpu(
    served: ProxyProcess, tmp_path: Path, tool: str
) -> None:
    """torchaudio's CUDA builds run on the CPU without a driver (a shipped project fact):
    a version with no CPU build still gives a host with no driver one of them, the first
    in the configuration, instead of nothing."""
    python = install(tool, served, tmp_path, f"{ON_THIS_HOST},cuda=none", "torchaudio")
    assert python_output(python, "import torchaudio; print(torchaudio.answer())") == "cu126"


@pytest.mark.parametrize("tool", ["pip", "uv"])
@pytest.mark.parametrize(
    ("profile", "build"),
    [
        # cu128's code reaches a 9.0 GPU only through its PTX, which a 12.4 driver cannot
        # JIT-compile (it is newer than the driver); cu118's PTX it can.
        ("cuda=12.4,sm=9.0", "cu118"),
        ("cuda=12.8,sm=9.0", "cu128"),
    ],
)
def test_a_build_needing_ptx_jit_from_a_newer_toolkit_is_not_offered(
    served: ProxyProcess, tmp_path: Path, tool: str, profile: str, build: str
) -> None:
    python = install(tool, served, tmp_path, f"{ON_THIS_HOST},{profile}", "kernels")
    assert python_output(python, "import kernels; print(kernels.answer())") == build


def test_a_pinned_build_needing_ptx_jit_from_a_newer_toolkit_is_refused(
    served: ProxyProcess, tmp_path: Path
) -> None:
    profile = f"{ON_THIS_HOST},cuda=12.4,sm=9.0"
    deadline = time.monotonic() + 120
    while True:
        data = httpx.get(
            served.url + "explain/kernels/", params={"profile": profile, "format": "json"}
        ).json()
        if data["frontier"]["settled"]:
            break
        assert time.monotonic() < deadline, data["frontier"]
        time.sleep(0.2)
    builds = {b["build"]: (b["status"], b["why"]) for b in data["builds"]}
    assert builds["cu128"][0] == "not offered"
    need = (
        "cuda: built with CUDA 12.8 (+cu128), host driver supports 12.4 (minor version"
        " compatibility: PTX from a newer toolkit is not JIT-compiled); kernels for 8.0,"
        " PTX 8.0: host GPUs 9.0 only through PTX"
    )
    assert builds["cu128"][1] == f"hidden by its own checks: {need}"
    filename = f"kernels-1.0+cu128-{CP}.whl"
    refused = httpx.get(served.url + f"p/{profile}/files/kernels/{filename}", timeout=60)
    assert refused.status_code == 403 and need in refused.headers["x-hostfit-refused"]
    venv = new_venv(tmp_path / "venv")
    pinned = pip_install(
        venv,
        served.url + f"p/{profile}/simple/",
        "kernels==1.0+cu128",
        env=clean_env(tmp_path),
    )
    assert pinned.returncode != 0


@pytest.mark.parametrize("tool", ["pip", "uv"])
def test_numpy_from_the_default_index_and_torch_from_the_family(
    served: ProxyProcess, world: World, tmp_path: Path, tool: str
) -> None:
    profile = f"{ON_THIS_HOST},cuda=12.8,sm=9.0"
    python = install(tool, served, tmp_path, profile, "numpy", "torch")
    assert python_output(python, "import numpy; print(numpy.WHERE)") == "default"
    assert answer(python) == "cu128"
    assert world.upstreams["cu126"].count("GET", "/simple/numpy/") == 0
    assert world.upstreams["default"].count("GET", "/simple/torch/") == 0


@pytest.mark.heavy
def test_routes_hold_while_the_other_upstream_is_down(world: World, tmp_path: Path) -> None:
    profile = f"{ON_THIS_HOST},cuda=12.8,sm=9.0"
    ups = world.upstreams
    ups["default"].down = True
    try:
        with world.proxy("cache-default-down") as proxy:
            python = install("pip", proxy, tmp_path / "torch", profile, "torch")
            assert answer(python) == "cu128"
    finally:
        ups["default"].down = False
    family = [ups[b.label] for b in BUILDS]
    for up in family:
        up.down = True
    try:
        with world.proxy("cache-family-down") as proxy:
            python = install("pip", proxy, tmp_path / "numpy", profile, "numpy")
            assert python_output(python, "import numpy; print(numpy.WHERE)") == "default"
            venv = new_venv(tmp_path / "no-torch")
            env = clean_env(tmp_path / "no-torch", PIP_USER_AGENT_USER_DATA=profile)
            failed = pip_install(venv, proxy.url + "simple/", "--retries", "0", "torch", env=env)
            # torch's index is down: torch is not installed at all, never the default's.
            assert failed.returncode != 0
    finally:
        for up in family:
            up.down = False
    assert ups["default"].count("GET", "/simple/torch/") == 0


def test_explain_lists_each_build_and_why(world: World) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "explain", "torch", "--config", str(world.config),
         "--cache-dir", str(world.work / "cache-explain"),
         "--profile", f"{ON_THIS_HOST},libc=glibc-2.36,cuda=12.8,sm=6.1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    urls = ", ".join(world.upstreams[b.label].url for b in BUILDS)
    assert f"from family torch: {urls}" in out
    assert (
        "  2.7.0+cu126: chosen: newest build for a CUDA the driver supports (12.6 <= 12.8)" in out
    )
    assert "  2.7.0+cu128: not offered: hidden by its own checks: sm: kernels for 7.5" in out
    assert "  2.7.0+cu118: set aside: a newer build, +cu126, is chosen" in out
    assert "  2.7.0+cpu: set aside: a CUDA build, +cu126, runs on this host" in out
