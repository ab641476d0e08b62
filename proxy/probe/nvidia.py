"""This machine's NVIDIA driver and GPUs, for `hostfit probe`: the ``cuda`` and ``sm`` facts.

Each GPU has its own compute capability; the profile lists each one found (``sm=6.1+9.0``).
The sources, best first, and what each misses:

- **NVML** (``libnvidia-ml.so.1``, installed with the driver): the driver version, the
  newest CUDA version the driver supports as the driver itself says it
  (``nvmlSystemGetCudaDriverVersion_v2``, e.g. 12.8) and every GPU's compute capability.
  Misses nothing hostfit needs; absent where the driver's user-space libraries are not
  installed or mounted (a container started without the NVIDIA container runtime).
- **nvidia-smi** (``--query-gpu=driver_version,compute_cap``): the driver version and
  every GPU's compute capability. ``compute_cap`` exists from driver R510 on: older drivers
  give no GPUs. It has no field for the CUDA version, so that comes from NVIDIA's table of
  minimum drivers (`proxy.core.cuda`): exact for the drivers the table lists, the table's
  newest CUDA for a driver newer than the table.
- **libcuda** (``libcuda.so.1``): the CUDA version from ``cuDriverGetVersion``, exact, and
  the GPUs after ``cuInit``, which initialises the driver (slower, and fails without a
  usable device). No driver version.
- **/proc/driver/nvidia/version**: the kernel module's driver version only; no GPUs, and
  the CUDA version from the table.

NVML is asked first; when it answers for the driver, the CUDA version and every GPU, the
others are not run. Otherwise each fact comes from the best source that has it. No
trace of an NVIDIA driver in any source means ``cuda=none``; a trace without a version
(a broken nvidia-smi, an NVML that cannot start) leaves ``cuda`` unknown.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from proxy.core.cuda import cuda_table, parse_driver_version
from proxy.core.dotted import dotted

Sm = tuple[int, int]

# cuDeviceGetAttribute: CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR.
_CC_MAJOR, _CC_MINOR = 75, 76
MAX_GPUS = 64
_NVML_BUFFER = 96  # NVML_DEVICE_NAME_V2_BUFFER_SIZE; the driver version needs 80


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    sm: Sm
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Nvidia:
    cuda_known: bool
    cuda: Sm | None  # None with cuda_known: no NVIDIA driver
    cuda_how: str
    sms: tuple[Sm, ...]
    sms_how: str
    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None


@dataclass
class _Nvml:
    driver: str | None = None
    cuda: Sm | None = None
    gpus: list[Gpu] = field(default_factory=list)
    complete: bool = False  # every GPU it counted was read
    how: str = ""


def detect(
    root: Path,
    *,
    nvml: str | None,
    nvidia_smi: str | None,
    libcuda: str | None,
    timeout: float,
) -> Nvidia:
    found = _nvml(nvml) if nvml else None
    if found is not None and found.complete and found.driver and found.cuda:
        read = tuple(found.gpus)
        sms = tuple(sorted({g.sm for g in read}))
        how = f"{nvml}: nvmlSystemGetCudaDriverVersion (driver {found.driver})"
        return Nvidia(True, found.cuda, how, sms, _gpus_how(nvml, read), read, found.driver)
    proc_driver, proc_how = _proc_driver_version(root)
    smi_driver, smi_gpus, smi_how = _nvidia_smi(nvidia_smi, timeout)
    cuda_api, cuda_gpus, cuda_how = _libcuda(libcuda)
    nvml_how = found.how if found is not None else ""
    evidence = [how for how in (nvml_how, proc_how, smi_how, cuda_how) if how]
    driver = (found.driver if found else None) or smi_driver or proc_driver
    cuda: Sm | None
    if found is not None and found.cuda is not None:
        cuda_known, cuda, how = True, found.cuda, f"{nvml}: nvmlSystemGetCudaDriverVersion"
    elif cuda_api is not None:
        cuda_known, cuda, how = True, cuda_api, f"{libcuda}: cuDriverGetVersion"
    elif driver is not None:
        newest = cuda_table().newest_cuda(parse_driver_version(driver))
        cuda_known, cuda = newest is not None, newest
        source = (
            str(nvml)
            if found and found.driver
            else ("nvidia-smi" if smi_driver else "/proc/driver/nvidia/version")
        )
        how = f"driver {driver} ({source}), CUDA from NVIDIA's driver table"
    elif evidence:
        cuda_known, cuda, how = False, None, "; ".join(evidence)
    else:
        cuda_known, cuda, how = True, None, "no NVIDIA driver (NVML, nvidia-smi, libcuda, /proc)"
    gpus: tuple[Gpu, ...] = ()
    gpus_how = ""
    for candidates, source in (
        (tuple(found.gpus) if found and found.complete else (), str(nvml)),
        (smi_gpus, "nvidia-smi compute_cap"),
        (cuda_gpus, f"{libcuda}: cuDeviceGetAttribute"),
        (tuple(found.gpus) if found else (), f"{nvml} (not every GPU answered)"),
    ):
        if candidates:
            gpus, gpus_how = candidates, _gpus_how(source, candidates)
            break
    sms = tuple(sorted({g.sm for g in gpus}))
    return Nvidia(cuda_known, cuda, how, sms, gpus_how, gpus, driver)


def _gpus_how(source: str | None, gpus: tuple[Gpu, ...]) -> str:
    shown = "; ".join(
        f"GPU {g.index}: {g.name + ' ' if g.name else ''}{dotted(g.sm)}" for g in gpus
    )
    return f"{source}: {shown}"


def _nvml(name: str) -> _Nvml | None:
    """None where the library does not load: no evidence of a driver either way."""
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    found = _Nvml()
    try:
        init = lib.nvmlInit_v2
    except AttributeError:
        found.how = f"{name}: no nvmlInit_v2"
        return found
    status = init()
    if status != 0:
        found.how = f"{name}: nvmlInit_v2: {_nvml_error(lib, status)}"
        return found
    try:
        _nvml_read(lib, name, found)
    finally:
        lib.nvmlShutdown()
    return found


def _nvml_read(lib: ctypes.CDLL, name: str, found: _Nvml) -> None:
    text = ctypes.create_string_buffer(_NVML_BUFFER)
    if lib.nvmlSystemGetDriverVersion(text, _NVML_BUFFER) == 0:
        found.driver = text.value.decode("ascii", "replace")
    version = ctypes.c_int()
    # _v2 answers for the driver as installed; v1 (older NVML) for the same, less exactly
    # on some compatibility-package setups.
    for symbol in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        call = getattr(lib, symbol, None)
        if call is not None and call(ctypes.byref(version)) == 0 and version.value > 0:
            found.cuda = (version.value // 1000, version.value % 1000 // 10)
            break
    count = ctypes.c_uint()
    status = lib.nvmlDeviceGetCount_v2(ctypes.byref(count))
    if status != 0:
        found.how = f"{name}: nvmlDeviceGetCount_v2: {_nvml_error(lib, status)}"
        return
    missed = []
    for index in range(min(count.value, MAX_GPUS)):
        handle = ctypes.c_void_p()
        major, minor = ctypes.c_int(), ctypes.c_int()
        status = lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle))
        if status == 0:
            status = lib.nvmlDeviceGetCudaComputeCapability(
                handle, ctypes.byref(major), ctypes.byref(minor)
            )
        if status != 0:
            missed.append(f"GPU {index}: {_nvml_error(lib, status)}")
            continue
        label = ctypes.create_string_buffer(_NVML_BUFFER)
        got_name = lib.nvmlDeviceGetName(handle, label, _NVML_BUFFER) == 0
        gpu_name = label.value.decode("utf-8", "replace") if got_name else None
        found.gpus.append(Gpu(index, (major.value, minor.value), gpu_name))
    found.complete = not missed
    if missed:
        found.how = f"{name}: {'; '.join(missed)}"


def _nvml_error(lib: ctypes.CDLL, status: int) -> str:
    describe = getattr(lib, "nvmlErrorString", None)
    if describe is None:
        return f"error {status}"
    describe.restype = ctypes.c_char_p
    text = describe(status)
    return f"{text.decode('ascii', 'replace')} ({status})" if text else f"error {status}"


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


def _nvidia_smi(name: str | None, timeout: float) -> tuple[str | None, tuple[Gpu, ...], str]:
    exe = shutil.which(name) if name else None
    if exe is None:
        return None, (), ""
    lines = _run_csv(exe, "driver_version,compute_cap", timeout)
    if lines is None:  # drivers before R510 cannot report compute_cap
        lines = _run_csv(exe, "driver_version", timeout)
    if lines is None:
        return None, (), f"{exe} failed"
    drivers: set[str] = set()
    gpus: list[Gpu] = []
    for index, line in enumerate(lines):
        cells = [c.strip() for c in line.split(",")]
        with contextlib.suppress(ValueError):
            parse_driver_version(cells[0])
            drivers.add(cells[0])
        if len(cells) > 1 and (m := re.fullmatch(r"(\d+)\.(\d+)", cells[1])):
            gpus.append(Gpu(index, (int(m[1]), int(m[2]))))
    if len(drivers) != 1:
        return None, tuple(gpus), f"{exe}: no single driver version"
    return drivers.pop(), tuple(gpus), f"{exe}: driver"


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


def _libcuda(name: str | None) -> tuple[Sm | None, tuple[Gpu, ...], str]:
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
    return cuda, _libcuda_gpus(lib), f"{name}: CUDA {cuda[0]}.{cuda[1]}"


def _libcuda_gpus(lib: ctypes.CDLL) -> tuple[Gpu, ...]:
    count, device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    try:
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return ()
        gpus = []
        for i in range(min(count.value, MAX_GPUS)):
            if (
                lib.cuDeviceGet(ctypes.byref(device), i) == 0
                and lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device) == 0
                and lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device) == 0
            ):
                gpus.append(Gpu(i, (major.value, minor.value)))
    except AttributeError:
        return ()
    return tuple(gpus)
