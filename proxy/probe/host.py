"""Detect this machine's host profile: what `hostfit probe` prints.

Only machine-wide facts go into the profile: libc, libstdc++, CPU level, NVIDIA
driver and GPUs, and the machine name. The Python version and implementation are
left out on purpose: a profile pinned in pip.conf outlives the interpreter that
ran the probe, and the installer's own User-Agent tells them for every venv.

Every path is injectable (`ProbeEnv`) so tests can use fake /proc trees, a fake
nvidia-smi, a fake NVML and a fake libcuda. The NVIDIA facts and what each of their
sources misses: `proxy.probe.nvidia`.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from proxy.core.profile import Fact, HostProfile, Libc
from proxy.probe import elf as probe_elf
from proxy.probe.nvidia import Gpu, Nvidia
from proxy.probe.nvidia import detect as detect_gpus

# x86-64 micro-architecture levels (x86-64 psABI, "Micro-architecture levels"),
# in the names /proc/cpuinfo uses: SSE3 is "pni", LZCNT is "abm". The psABI also
# asks for OSXSAVE at v3, which the kernel does not list; "xsave" stands for it.
X86_64_LEVELS: tuple[tuple[int, frozenset[str]], ...] = (
    (2, frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"})),
    (3, frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})),
    (4, frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
)


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
    system: str = field(default_factory=platform.system)
    glibc: Callable[[], str | None] = gnu_libc_version
    executable: Path = field(default_factory=lambda: Path(sys.executable))
    musl_loader: Path | None = None  # default: the executable's PT_INTERP, if it is musl's
    libstdcxx: Path | None = None  # default: the libstdc++.so.6 this process loads
    nvml: str | None = "libnvidia-ml.so.1"
    nvidia_smi: str | None = "nvidia-smi"
    libcuda: str | None = "libcuda.so.1"
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Probe:
    profile: HostProfile
    found: dict[str, str]  # how each fact was found (or why it was not), for people
    gpus: tuple[Gpu, ...] = ()  # each GPU found, with its own compute capability
    driver: str | None = None  # the NVIDIA driver's version, where a source tells it


def probe(env: ProbeEnv | None = None) -> Probe:
    env = env or ProbeEnv()
    found: dict[str, str] = {}
    facts: dict[str, object] = {}

    def fact(key: str, value: object, how: str) -> None:
        facts["sms" if key == "sm" else key] = Fact(value, "probe")
        found[key] = how

    linux = env.system == "Linux"
    if not linux:
        # A profile's arch is a Linux machine's (arm64 is read as aarch64): on a Mac it
        # would hide the macOS wheels. hostfit filters Linux wheels only.
        found["arch"] = f"not Linux (platform.system() is {env.system!r}): not told"
    elif re.fullmatch(r"[a-z0-9_]{1,32}", env.machine):
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
    if linux and env.machine == "x86_64":
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
    profile = HostProfile(**facts)  # type: ignore[arg-type]
    return Probe(profile, found, nvidia.gpus, nvidia.driver)


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


def detect_nvidia(env: ProbeEnv) -> Nvidia:
    return detect_gpus(
        env.root,
        nvml=env.nvml,
        nvidia_smi=env.nvidia_smi,
        libcuda=env.libcuda,
        timeout=env.timeout,
    )
