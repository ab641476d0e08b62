"""Facts known without opening a wheel's binaries: read from its core metadata.

A wheel that declares ``Requires-Dist: nvidia-cuda-runtime-cu12`` will load a CUDA 12
runtime, whatever its binaries say, because installing it pulls that runtime in; a
host whose driver predates CUDA 12 cannot use it. Such a fact lets the host filter
hide the wheel before its report exists, so the frontier walk passes it by without
analysing a gigabyte. The report stays the authority: once it exists, it decides,
and the download gate always waits for it.

NVIDIA's wheels name the CUDA major in a ``-cuNN`` suffix (nvidia-cublas-cu12,
nvidia-cudnn-cu11, ...). Requirements behind an extra are optional and ignored;
other markers are evaluated for Linux on the wheel's own machine.
"""

from __future__ import annotations

import re

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from proxy.core.report import Requires
from proxy.core.variants import split_label

_NVIDIA_CUDA_PACKAGE = re.compile(r"^nvidia-[a-z0-9-]+-cu(\d{2})$")
_MACHINES = ("x86_64", "aarch64", "ppc64le", "s390x", "i686", "armv7l")


def cheap_requires(metadata: bytes, filename: str) -> tuple[Requires, str] | None:
    """What the metadata says the wheel needs, and where that comes from; None if nothing."""
    try:
        raw, _ = parse_email(metadata)
    except (ValueError, UnicodeDecodeError):
        return None
    environment = _linux_environment(filename)
    for text in raw.get("requires_dist") or []:
        requirement = _requirement(text)  # one bad entry does not hide the others
        if requirement is None:
            continue
        match = _NVIDIA_CUDA_PACKAGE.match(requirement.name.lower())
        if match is None or not _applies(requirement, environment):
            continue
        major = int(match[1])
        return Requires(cuda_major=major), f"Requires-Dist {requirement.name}"
    return None


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _applies(requirement: Requirement, environment: dict[str, str]) -> bool:
    marker = requirement.marker
    if marker is None:
        return True
    if "extra" in str(marker):
        return False
    try:
        return marker.evaluate(environment)
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return False


def _linux_environment(filename: str) -> dict[str, str]:
    """The marker variables a Linux host that takes this wheel certainly has."""
    machine = ""
    try:
        tags = parse_wheel_filename(split_label(filename)[0])[3]
    except InvalidWheelFilename:
        tags = frozenset()
    for tag in tags:
        machine = next((m for m in _MACHINES if tag.platform.endswith(m)), machine)
    return {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
    }
