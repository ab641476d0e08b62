"""Detect this machine's host profile: what `hostfit probe` prints.

Only machine-wide facts go into the profile: libc, libstdc++, CPU level, NVIDIA
driver and GPUs, and the machine name. The Python version and implementation are
left out on purpose: a profile pinned in pip.conf outlives the interpreter that
ran the probe, and the installer's own User-Agent tells them for every venv.

Every path is injectable (`ProbeEnv`) so tests can use fake /proc trees, a fake
nvidia-smi and a fake libcuda.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from proxy.core.cuda import cuda_table, parse_driver_version
from proxy.core.profile import Fact, HostProfile, Libc
from proxy.probe import elf as probe_elf

# x86-64 micro-architecture levels (x86-64 psABI, "Micro-architecture levels"),
# in the names /proc/cpuinfo uses: SSE3 is "pni", LZCNT is "abm". The psABI also
# asks for OSXSAVE at v3, which the kernel does not list; "xsave" stands for it.
X86_64_LEVELS: tuple[tuple[int, frozenset[str]], ...] = (
    (2, frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"})),
    (3, frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})),
    (4, frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
)

# cuDeviceGetAttribute: CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR.
_CC_MAJOR, _CC_MINOR = 75, 76


def gnu_libc_version() -> str | None:
    """``"glibc 2.36"``, or None where the C library is not glibc (musl has no such confstr)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None


@dataclass(frozen=True, slots=True)
class ProbeEnv:
    root: Path = Path("/")  # /proc is read below it
    machine: str = field(default_factory=platform.machine)
    glibc: Callable[[], str | None] = gnu_libc_version
    executable: Path = field(default_factory=lambda: Path(sys.executable))
    musl_loader: Path | None = None  # default: the executable's PT_INTERP, if it is musl's
    libstdcxx: Path | None = None  # default: the libstdc++.so.6 this process loads
    nvidia_smi: str | None = "nvidia-smi"
    libcuda: str | None = "libcuda.so.1"
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Probe:
    profile: HostProfile
    found: dict[str, str]  # how each fact was found (or why it was not), for people


def probe(env: ProbeEnv | None = None) -> Probe:
    env = env or ProbeEnv()
    found: dict[str, str] = {}
    facts: dict[str, object] = {}

    def fact(key: str, value: object, how: str) -> None:
        facts["sms" if key == "sm" else key] = Fact(value, "probe")
        found[key] = how

    if re.fullmatch(r"[a-z0-9_]{1,32}", env.machine):
        fact("arch", env.machine, "platform.machine()")
    libc, how = detect_libc(env)
    if libc is not None:
        fact("libc", libc, how)
    else:
        found["libc"] = how
    glibcxx, how = detect_glibcxx(env)
    if glibcxx is not None:
        fact("glibcxx", glibcxx, how)
    else:
        found["glibcxx"] = how
    if env.machine == "x86_64":
        level, how = detect_x86_64_level(env.root)
        if level is not None:
            fact("isa", level, how)
        else:
            found["isa"] = how
    nvidia = detect_nvidia(env)
    if nvidia.cuda_known:
        fact("cuda", nvidia.cuda, nvidia.cuda_how)
    else:
        found["cuda"] = nvidia.cuda_how
    if nvidia.sms:
        fact("sm", nvidia.sms, nvidia.sms_how)
    return Probe(HostProfile(**facts), found)  # type: ignore[arg-type]


def detect_libc(env: ProbeEnv) -> tuple[Libc | None, str]:
    text = env.glibc()
    if text:
        m = re.fullmatch(r"glibc (\d+)\.(\d+)(?:\.\d+)?", text.strip())
        if m:
            return Libc("glibc", (int(m[1]), int(m[2]))), f"confstr CS_GNU_LIBC_VERSION: {text}"
    loader = env.musl_loader or _musl_loader(env.executable)
    if loader is None:
        return None, "neither glibc (confstr) nor a musl loader (PT_INTERP)"
    try:
        # Run with no arguments, musl's loader prints its banner and version to stderr.
        run = subprocess.run([str(loader)], capture_output=True, text=True, timeout=env.timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{loader}: {exc}"
    m = re.search(r"^Version (\d+)\.(\d+)", run.stderr, re.MULTILINE)
    if not m:
        return None, f"{loader}: no version in its output"
    return Libc("musl", (int(m[1]), int(m[2]))), f"{loader}: Version {m[1]}.{m[2]}"


def _musl_loader(executable: Path) -> Path | None:
    try:
        interp = probe_elf.interpreter(executable)
    except (OSError, ValueError):
        return None
    if interp and Path(interp).name.startswith("ld-musl-"):
        return Path(interp)
    return None


def detect_glibcxx(env: ProbeEnv) -> tuple[tuple[int, ...] | None, str]:
    path = env.libstdcxx or _loaded_library("libstdc++.so.6", env.root)
    if path is None:
        return None, "libstdc++.so.6 does not load"
    try:
        names = probe_elf.version_definitions(path)
    except (OSError, ValueError) as exc:
        return None, f"{path}: {exc}"
    versions = [
        tuple(int(p) for p in m[1].split("."))
        for name in names
        if (m := re.fullmatch(r"GLIBCXX_(\d+(?:\.\d+)*)", name))
    ]
    if not versions:
        return None, f"{path}: defines no GLIBCXX version"
    return max(versions), f"{path}: newest GLIBCXX version definition"


def _loaded_library(soname: str, root: Path) -> Path | None:
    """Load ``soname`` as an extension module would, and see which file the loader picked."""
    try:
        ctypes.CDLL(soname)
        maps = (root / "proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and Path(parts[5]).name.startswith(soname):
            return Path(parts[5])
    return None


def x86_64_level(flags: frozenset[str]) -> int:
    level = 1  # the x86-64 baseline itself
    for candidate, needed in X86_64_LEVELS:
        if not needed <= flags:
            break
        level = candidate
    return level


def detect_x86_64_level(root: Path) -> tuple[int | None, str]:
    path = root / "proc/cpuinfo"
    try:
        text = path.read_text()
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    per_cpu = [
        frozenset(line.split(":", 1)[1].split())
        for line in text.splitlines()
        if line.startswith("flags") and ":" in line
    ]
    if not per_cpu:
        return None, f"{path}: no flags line"
    # A level only counts if every CPU the scheduler may pick has it.
    return x86_64_level(frozenset.intersection(*per_cpu)), f"{path}: flags"


@dataclass(frozen=True, slots=True)
class Nvidia:
    cuda_known: bool
    cuda: tuple[int, int] | None  # None with cuda_known: no NVIDIA driver
    cuda_how: str
    sms: tuple[tuple[int, int], ...]
    sms_how: str


def detect_nvidia(env: ProbeEnv) -> Nvidia:
    proc_driver = _proc_driver_version(env.root)
    smi_driver, smi_sms, smi_how = _nvidia_smi(env)
    cuda_api, cuda_sms, cuda_how = _libcuda(env.libcuda)
    evidence = [how for how in (proc_driver[1], smi_how, cuda_how) if how]
    driver = smi_driver or proc_driver[0]
    cuda: tuple[int, int] | None
    if cuda_api is not None:
        cuda_known, cuda, how = True, cuda_api, f"{env.libcuda}: cuDriverGetVersion"
    elif driver is not None:
        newest = cuda_table().newest_cuda(parse_driver_version(driver))
        cuda_known, cuda = newest is not None, newest
        source = "nvidia-smi" if smi_driver else "/proc/driver/nvidia/version"
        how = f"driver {driver} ({source}), CUDA from NVIDIA's driver table"
    elif evidence:
        cuda_known, cuda, how = False, None, "; ".join(evidence)
    else:
        cuda_known, cuda, how = True, None, "no NVIDIA driver (kernel module, nvidia-smi, libcuda)"
    if smi_sms:
        sms, sms_how = smi_sms, "nvidia-smi compute_cap"
    elif cuda_sms:
        sms, sms_how = cuda_sms, f"{env.libcuda}: cuDeviceGetAttribute"
    else:
        sms, sms_how = (), ""
    return Nvidia(cuda_known, cuda, how, sms, sms_how)


def _proc_driver_version(root: Path) -> tuple[str | None, str]:
    path = root / "proc/driver/nvidia/version"
    try:
        text = path.read_text()
    except OSError:
        return None, ""
    # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  ..." or, for the
    # open modules, "... NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  ..."
    m = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)\s", text)
    if not m:
        return None, f"{path}: no driver version in it"
    return m[1], f"{path}: {m[1]}"


def _nvidia_smi(env: ProbeEnv) -> tuple[str | None, tuple[tuple[int, int], ...], str]:
    exe = shutil.which(env.nvidia_smi) if env.nvidia_smi else None
    if exe is None:
        return None, (), ""
    lines = _run_csv(exe, "driver_version,compute_cap", env.timeout)
    if lines is None:  # drivers before R510 cannot report compute_cap
        lines = _run_csv(exe, "driver_version", env.timeout)
    if lines is None:
        return None, (), f"{exe} failed"
    drivers: set[str] = set()
    sms: set[tuple[int, int]] = set()
    for line in lines:
        cells = [c.strip() for c in line.split(",")]
        with contextlib.suppress(ValueError):
            parse_driver_version(cells[0])
            drivers.add(cells[0])
        if len(cells) > 1 and (m := re.fullmatch(r"(\d+)\.(\d+)", cells[1])):
            sms.add((int(m[1]), int(m[2])))
    if len(drivers) != 1:
        return None, tuple(sorted(sms)), f"{exe}: no single driver version"
    return drivers.pop(), tuple(sorted(sms)), f"{exe}: driver"


def _run_csv(exe: str, fields: str, timeout: float) -> list[str] | None:
    try:
        run = subprocess.run(
            [exe, f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    return lines if run.returncode == 0 and lines else None


def _libcuda(name: str | None) -> tuple[tuple[int, int] | None, tuple[tuple[int, int], ...], str]:
    if name is None:
        return None, (), ""
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None, (), ""
    version = ctypes.c_int()
    try:
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None, (), f"{name}: cuDriverGetVersion failed"
    except AttributeError:
        return None, (), f"{name}: no cuDriverGetVersion"
    cuda = (version.value // 1000, version.value % 1000 // 10)
    return cuda, _libcuda_sms(lib), f"{name}: CUDA {cuda[0]}.{cuda[1]}"


def _libcuda_sms(lib: ctypes.CDLL) -> tuple[tuple[int, int], ...]:
    count, device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    try:
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return ()
        sms = set()
        for i in range(min(count.value, 64)):
            if (
                lib.cuDeviceGet(ctypes.byref(device), i) == 0
                and lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device) == 0
                and lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device) == 0
            ):
                sms.add((major.value, minor.value))
    except AttributeError:
        return ()
    return tuple(sorted(sms))
