"""hostfit probe on this machine, each value checked by a tool that does not share its code:
``ldd --version`` for glibc, pyelftools on the libstdc++ that ``ldconfig -p`` names, the
dynamic loader's own list of supported glibc-hwcaps levels for the CPU."""

from __future__ import annotations

import ctypes
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection
from elftools.elf.segments import InterpSegment

from proxy.probe import elf as probe_elf
from proxy.probe.host import Probe, probe


@pytest.fixture(scope="module")
def result() -> Probe:
    return probe()


def _pt_interp(path: str) -> str:
    with open(path, "rb") as f:
        for segment in ELFFile(f).iter_segments():
            if isinstance(segment, InterpSegment):
                return str(segment.get_interp_name())
    raise AssertionError(f"{path} has no PT_INTERP")


def _verdefs(path: Path) -> list[str]:
    with path.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".gnu.version_d")
        assert isinstance(section, GNUVerDefSection)
        return [next(aux).name for _, aux in section.iter_versions()]


def _ldconfig_libstdcxx() -> Path:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    # the entry for this machine's word size, e.g. "(libc6,x86-64)"
    wanted = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(platform.machine(), "")
    for line in out.splitlines():
        m = re.match(r"\s*libstdc\+\+\.so\.6 \(([^)]*)\) => (\S+)", line)
        if m and wanted in m[1]:
            return Path(m[2])
    raise AssertionError("ldconfig -p lists no libstdc++.so.6")


def test_glibc_matches_ldd(result: Probe) -> None:
    first = subprocess.run(["ldd", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)\s*$", first.splitlines()[0])
    assert m, first
    assert result.profile.values()["libc"] == f"glibc-{m[1]}.{m[2]}"


def test_glibcxx_matches_the_libstdcxx_on_disk(result: Probe) -> None:
    on_disk = _ldconfig_libstdcxx()
    found = result.found["glibcxx"].split(":", 1)[0]
    assert Path(found).resolve() == on_disk.resolve()
    versions = [
        tuple(int(p) for p in m[1].split("."))
        for name in _verdefs(on_disk)
        if (m := re.fullmatch(r"GLIBCXX_([\d.]+)", name))
    ]
    assert result.profile.values()["glibcxx"] == ".".join(str(p) for p in max(versions))


def test_cpu_level_matches_the_dynamic_loader(result: Probe) -> None:
    # glibc 2.33+ ld.so --help lists the x86-64 levels whose glibc-hwcaps it would
    # search on this CPU, marked "supported"; it reads CPUID, not /proc/cpuinfo.
    assert platform.machine() == "x86_64"
    loader = _pt_interp(sys.executable)
    help_text = subprocess.run([loader, "--help"], capture_output=True, text=True).stdout
    levels = [int(v) for v in re.findall(r"x86-64-v(\d) \(supported", help_text)]
    assert result.profile.values()["isa"] == f"x86-64-v{max(levels, default=1)}"


def test_no_nvidia_here_means_cuda_none(result: Probe) -> None:
    evidence = [
        Path("/proc/driver/nvidia/version").exists(),
        shutil.which("nvidia-smi") is not None,
    ]
    try:
        ctypes.CDLL("libcuda.so.1")
        evidence.append(True)
    except OSError:
        evidence.append(False)
    assert not any(evidence), "this test describes a machine without NVIDIA software"
    assert result.profile.values()["cuda"] == "none"
    assert "sm" not in result.profile.values()


def test_arch(result: Probe) -> None:
    assert result.profile.values()["arch"] == platform.machine()


def test_elf_reader_agrees_with_pyelftools() -> None:
    assert probe_elf.interpreter(Path(sys.executable)) == _pt_interp(sys.executable)
    for library in (_ldconfig_libstdcxx(), Path(_pt_interp(sys.executable)).resolve()):
        assert probe_elf.version_definitions(library) == _verdefs(library)


def test_nvidia_facts_match_nvidia_smi(result: Probe) -> None:
    """Where the machine has an NVIDIA driver: the driver, CUDA version and each GPU's compute
    capability as nvidia-smi prints them; elsewhere, cuda=none and no GPUs."""
    facts = result.profile.values()
    smi = shutil.which("nvidia-smi")
    if smi is None and not Path("/proc/driver/nvidia/version").exists():
        assert facts["cuda"] == "none"
        assert "sm" not in facts and result.gpus == ()
        return
    assert smi is not None, "an NVIDIA kernel module without nvidia-smi to compare with"
    query = [smi, "--query-gpu=driver_version,compute_cap", "--format=csv,noheader"]
    rows = [
        [cell.strip() for cell in line.split(",")]
        for line in subprocess.run(
            query, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        if line.strip()
    ]
    assert result.driver == rows[0][0]
    assert [f"{g.sm[0]}.{g.sm[1]}" for g in result.gpus] == [row[1] for row in rows]
    assert facts["sm"] == "+".join(
        sorted({row[1] for row in rows}, key=lambda s: tuple(map(int, s.split("."))))
    )
    banner = subprocess.run([smi], capture_output=True, text=True, check=True).stdout
    m = re.search(r"CUDA Version:\s*(\d+\.\d+)", banner)
    assert m, banner
    assert facts["cuda"] == m[1]
