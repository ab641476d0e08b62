"""hostfit probe through NVML: a fake libnvidia-ml.so.1 built from tests/fixtures/probe/fake_nvml.c
(a GTX 1080 Ti and two H100s on driver 570.124.06, CUDA 12.8), alone and beside the other
sources, and what the profile and `hostfit probe --json` say of several GPUs."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.cli.probe import render
from proxy.core.profile import parse_profile
from proxy.probe.host import ProbeEnv, probe
from proxy.probe.nvidia import Gpu

FIXTURES = Path(__file__).parents[1] / "fixtures" / "probe"
ROOTS = FIXTURES / "roots"
BIN = FIXTURES / "bin"
VARIANTS = {"gpus": [], "no-driver": ["-DNO_DRIVER"], "v1-only": ["-DV1_ONLY"],
            "bad-device": ["-DBAD_DEVICE"]}  # fmt: skip


@pytest.fixture(scope="module")
def nvml(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cc = shutil.which("cc")
    assert cc is not None, "a C compiler is needed to build the fake NVML"
    out = tmp_path_factory.mktemp("nvml")
    built = {}
    for name, flags in VARIANTS.items():
        target = out / f"libnvidia-ml-{name}.so.1"
        source = FIXTURES / "fake_nvml.c"
        subprocess.run([cc, "-shared", "-fPIC", *flags, "-o", target, source], check=True)
        built[name] = str(target)
    return built


@pytest.fixture(scope="module")
def libcuda(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("cc")
    assert cc is not None
    target = tmp_path_factory.mktemp("libcuda") / "libcuda.so.1"
    subprocess.run([cc, "-shared", "-fPIC", "-o", target, FIXTURES / "fake_libcuda.c"], check=True)
    return str(target)


def env(root: str = "bare-v2", **changes: object) -> ProbeEnv:
    base = ProbeEnv(
        root=ROOTS / root,
        machine="x86_64",
        glibc=lambda: "glibc 2.28",
        nvml=None,
        nvidia_smi=None,
        libcuda=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_nvml_gives_every_gpu_and_the_drivers_own_cuda_version(nvml: dict[str, str]) -> None:
    result = probe(env(nvml=nvml["gpus"]))
    facts = result.profile.values()
    assert facts["cuda"] == "12.8"
    assert facts["sm"] == "6.1+9.0"  # three GPUs, two kinds
    assert result.driver == "570.124.06"
    assert result.gpus == (
        Gpu(0, (6, 1), "NVIDIA GeForce GTX 1080 Ti"),
        Gpu(1, (9, 0), "NVIDIA H100 80GB HBM3"),
        Gpu(2, (9, 0), "NVIDIA H100 80GB HBM3"),
    )
    assert "nvmlSystemGetCudaDriverVersion" in result.found["cuda"]
    assert result.found["sm"].endswith(
        "GPU 0: NVIDIA GeForce GTX 1080 Ti 6.1; GPU 1: NVIDIA H100 80GB HBM3 9.0;"
        " GPU 2: NVIDIA H100 80GB HBM3 9.0"
    )


def test_nvml_answering_everything_is_the_only_source_asked(
    nvml: dict[str, str], libcuda: str
) -> None:
    # nvidia-smi-broken would make CUDA unknown, the fake libcuda says 12.4 and 8.6+9.0,
    # /proc (h100) driver 550: none of them is consulted.
    result = probe(
        env("h100", nvml=nvml["gpus"], nvidia_smi=str(BIN / "nvidia-smi-broken"), libcuda=libcuda)
    )
    assert result.profile.values()["cuda"] == "12.8"
    assert result.profile.values()["sm"] == "6.1+9.0"


def test_an_older_nvml_without_the_v2_call(nvml: dict[str, str]) -> None:
    assert probe(env(nvml=nvml["v1-only"])).profile.values()["cuda"] == "12.8"


def test_nvml_that_cannot_start_is_a_trace_not_a_version(nvml: dict[str, str]) -> None:
    alone = probe(env(nvml=nvml["no-driver"]))
    assert "cuda" not in alone.profile.values()  # unknown, not "none"
    assert "nvmlInit_v2" in alone.found["cuda"]
    # With the kernel module's version in /proc, the driver table gives the CUDA version.
    with_proc = probe(env("h100", nvml=nvml["no-driver"]))
    assert with_proc.profile.values()["cuda"] == "12.4"
    assert "/proc/driver/nvidia/version" in with_proc.found["cuda"]


def test_a_gpu_nvml_cannot_read_sends_the_gpus_to_the_next_source(nvml: dict[str, str]) -> None:
    with_smi = probe(env(nvml=nvml["bad-device"], nvidia_smi=str(BIN / "nvidia-smi-two-gpus")))
    facts = with_smi.profile.values()
    assert facts["cuda"] == "12.8"  # still NVML's
    assert facts["sm"] == "8.0+8.6"  # nvidia-smi's, which read every GPU
    assert with_smi.found["sm"].startswith("nvidia-smi compute_cap")
    alone = probe(env(nvml=nvml["bad-device"]))
    assert alone.profile.values()["sm"] == "6.1+9.0"
    assert "not every GPU answered" in alone.found["sm"]


def test_no_nvml_library_is_no_evidence() -> None:
    result = probe(env(nvml="libnvidia-ml-not-here.so.1"))
    assert result.profile.values()["cuda"] == "none"
    assert result.gpus == ()


def test_probe_json_lists_each_gpu(nvml: dict[str, str]) -> None:
    data = json.loads(render(probe(env(nvml=nvml["gpus"])), as_json=True))
    assert data["driver"] == "570.124.06"
    assert [g["sm"] for g in data["gpus"]] == ["6.1", "9.0", "9.0"]
    assert data["gpus"][0]["name"] == "NVIDIA GeForce GTX 1080 Ti"
    profile = parse_profile(data["profile"], "url")
    assert profile.sms is not None and profile.sms.value == ((6, 1), (9, 0))
