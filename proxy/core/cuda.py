"""Which CUDA version an NVIDIA driver supports, and whether it runs a given toolkit's
build (data: ``proxy/data/cuda-drivers.json``).

Two facts from NVIDIA's release notes: the minimum driver of each toolkit release, and
the driver floor of minor version compatibility per CUDA major (11, 12, 13), from which
a driver runs code built with any toolkit of its major, also a newer minor, with two
limits NVIDIA documents (CUDA Compatibility guide, "Application Considerations for
Minor Version Compatibility"): PTX from a newer toolkit cannot be JIT-compiled by the
older driver, and APIs that need the newer driver fail (cudaErrorCallRequiresNewerDriver).
Before CUDA 11 every minor needed its own driver.

A host tells the newest CUDA version its driver supports (``cuda=12.4``), not the
driver, so `MajorFloor.from_cuda` is derived at load: the first CUDA version of that
major whose every driver is at or past the floor (11.1 for CUDA 11, since drivers that
report 11.0 begin at 450.36.06 and the floor is 450.80.02).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from proxy.core import datafiles
from proxy.core.dotted import dotted, parse_dotted
from proxy.errors import ConfigError

CUDA_DATA_FILE = "cuda-drivers.json"
CPU = "cpu"
_CUDA_LABEL = re.compile(r"cu(\d)(\d{1,2})")


@dataclass(frozen=True, slots=True)
class Build:
    """What a build label (a local version such as ``+cu126``) says it was built with."""

    label: str  # "cu126", "cpu"
    cuda: tuple[int, int] | None  # None: a CPU build


def parse_build(label: str) -> Build | None:
    """``cu126`` -> CUDA 12.6, ``cu92`` -> 9.2, ``cpu``; None for any other label.

    The last digit is the minor (PyTorch's spelling: cu118 is 11.8, cu130 is 13.0).
    """
    if label == CPU:
        return Build(label, None)
    m = _CUDA_LABEL.fullmatch(label)
    if m is None:
        return None
    digits = m[1] + m[2]
    return Build(label, (int(digits[:-1]), int(digits[-1])))


@dataclass(frozen=True, slots=True)
class Toolkit:
    cuda: tuple[int, int]
    release: str
    min_driver: tuple[int, ...]
    source: str


@dataclass(frozen=True, slots=True)
class MajorFloor:
    cuda_major: int
    min_driver: tuple[int, ...]
    source: str
    # Derived at load: the first CUDA version of this major that only drivers at or past
    # ``min_driver`` report.
    from_cuda: tuple[int, int]


# How a driver runs code built with a toolkit: "native" (the toolkit is not newer),
# "minor" (a newer minor of the driver's major, under minor version compatibility: SASS
# only), "newer" (it does not), "unsure" (a driver reporting that CUDA version may be
# below the major's floor: the host's CUDA version alone cannot tell).
Support = Literal["native", "minor", "newer", "unsure"]


@dataclass(frozen=True, slots=True)
class ToolkitSupport:
    how: Support
    why: str  # for people: "12.6 <= 12.8", "needs CUDA 12.8; ..."


@dataclass(frozen=True, slots=True)
class CudaDriverTable:
    toolkits: tuple[Toolkit, ...]
    minor_version_compatibility: tuple[MajorFloor, ...]

    def newest_cuda(self, driver: tuple[int, ...]) -> tuple[int, int] | None:
        """Newest CUDA version this driver runs; ``None`` if older than every toolkit."""
        native = [t.cuda for t in self.toolkits if t.min_driver <= driver]
        compatible = [
            (f.cuda_major, 0) for f in self.minor_version_compatibility if f.min_driver <= driver
        ]
        return max(native + compatible, default=None)

    def floor(self, major: int) -> MajorFloor | None:
        return next((f for f in self.minor_version_compatibility if f.cuda_major == major), None)

    def support(self, toolkit: tuple[int, int], host: tuple[int, int]) -> ToolkitSupport:
        """How a driver supporting CUDA ``host`` runs code built with CUDA ``toolkit``."""
        built, driver = dotted(toolkit), dotted(host)
        if toolkit <= host:
            return ToolkitSupport("native", f"{built} <= {driver}")
        needs = f"needs CUDA {built}; the host's driver supports CUDA {driver}"
        if toolkit[0] != host[0]:
            return ToolkitSupport("newer", needs)
        floor = self.floor(host[0])
        if floor is None:
            return ToolkitSupport(
                "newer", f"{needs}, and CUDA {host[0]} has no minor version compatibility"
            )
        if host < floor.from_cuda:
            least = driver_text(floor.min_driver)
            return ToolkitSupport(
                "unsure",
                f"{needs}; minor version compatibility needs driver {least},"
                f" and a driver that supports CUDA {driver} may be older",
            )
        return ToolkitSupport("minor", f"CUDA {built} on a driver for {driver}")


def parse_driver_version(text: str) -> tuple[int, ...]:
    """``"550.54.14"`` -> ``(550, 54, 14)``; drivers are numbered NNN.NN(.NN)."""
    if not re.fullmatch(r"\d{2,4}(?:\.\d{1,4}){0,2}", text):
        raise ValueError(f"not an NVIDIA driver version: {text!r}")
    return parse_dotted(text)


def driver_text(driver: tuple[int, ...]) -> str:
    """``(450, 80, 2)`` -> ``"450.80.02"``, as NVIDIA writes its drivers."""
    return ".".join([str(driver[0]), *(f"{part:02d}" for part in driver[1:])])


def parse_cuda_table(data: Any) -> CudaDriverTable:
    toolkits: list[Toolkit] = []
    for i, item in enumerate(datafiles.entries(data, CUDA_DATA_FILE, "toolkits")):
        where = f"{CUDA_DATA_FILE}: toolkits[{i}]"
        cuda = datafiles.version(item, "cuda", where)
        release = item.get("release")
        if len(cuda) != 2 or not isinstance(release, str) or not release:
            raise ConfigError(f"{where}: needs cuda as MAJOR.MINOR and a release name")
        toolkits.append(Toolkit((cuda[0], cuda[1]), release, _driver(item, where), item["source"]))
    # The first driver to report each CUDA version: its oldest release's minimum.
    first: dict[tuple[int, int], tuple[int, ...]] = {}
    for t in toolkits:
        first[t.cuda] = min(first.get(t.cuda, t.min_driver), t.min_driver)
    # Newer toolkits never need an older driver; a table saying so was mistyped.
    for older, newer in itertools.pairwise(sorted(first)):
        if first[newer] < first[older]:
            raise ConfigError(f"{CUDA_DATA_FILE}: CUDA {newer} needs an older driver than {older}")
    floors: list[MajorFloor] = []
    for i, item in enumerate(
        datafiles.entries(data, CUDA_DATA_FILE, "minor_version_compatibility")
    ):
        where = f"{CUDA_DATA_FILE}: minor_version_compatibility[{i}]"
        major = item.get("cuda_major")
        if not isinstance(major, int) or isinstance(major, bool):
            raise ConfigError(f"{where}: cuda_major must be an integer")
        if any(f.cuda_major == major for f in floors):
            raise ConfigError(f"{where}: CUDA {major} is listed twice")
        driver = _driver(item, where)
        # ``first`` rises with the version (checked above), so every later minor is past it too.
        past = [cuda for cuda in sorted(first) if cuda[0] == major and first[cuda] >= driver]
        if not past:
            raise ConfigError(
                f"{where}: no toolkit of CUDA {major} in the table needs driver"
                f" {driver_text(driver)} or newer, so no CUDA {major} host is known to be past it"
            )
        floors.append(MajorFloor(major, driver, item["source"], past[0]))
    return CudaDriverTable(tuple(toolkits), tuple(floors))


def _driver(item: Any, where: str) -> tuple[int, ...]:
    value = item.get("min_driver")
    try:
        return parse_driver_version(value if isinstance(value, str) else "")
    except ValueError:
        raise ConfigError(f"{where}: min_driver {value!r} is not a driver version") from None


@cache
def cuda_table() -> CudaDriverTable:
    return parse_cuda_table(datafiles.read_json(CUDA_DATA_FILE))
