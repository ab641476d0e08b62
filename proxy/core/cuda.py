"""Which CUDA version an NVIDIA driver supports (data: ``proxy/data/cuda-drivers.json``).

Two facts from NVIDIA's release notes: the minimum driver of each toolkit release,
and minor version compatibility, under which a driver at or past a major's floor
runs every minor release of that major. The compatibility decision compares CUDA
majors only, which is what minor version compatibility makes sound.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from proxy.core import datafiles
from proxy.core.dotted import parse_dotted
from proxy.errors import ConfigError

CUDA_DATA_FILE = "cuda-drivers.json"


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


def parse_driver_version(text: str) -> tuple[int, ...]:
    """``"550.54.14"`` -> ``(550, 54, 14)``; drivers are numbered NNN.NN(.NN)."""
    if not re.fullmatch(r"\d{2,4}(?:\.\d{1,4}){0,2}", text):
        raise ValueError(f"not an NVIDIA driver version: {text!r}")
    return parse_dotted(text)


def parse_cuda_table(data: Any) -> CudaDriverTable:
    toolkits: list[Toolkit] = []
    for i, item in enumerate(datafiles.entries(data, CUDA_DATA_FILE, "toolkits")):
        where = f"{CUDA_DATA_FILE}: toolkits[{i}]"
        cuda = datafiles.version(item, "cuda", where)
        release = item.get("release")
        if len(cuda) != 2 or not isinstance(release, str) or not release:
            raise ConfigError(f"{where}: needs cuda as MAJOR.MINOR and a release name")
        toolkits.append(Toolkit((cuda[0], cuda[1]), release, _driver(item, where), item["source"]))
    floors: list[MajorFloor] = []
    for i, item in enumerate(
        datafiles.entries(data, CUDA_DATA_FILE, "minor_version_compatibility")
    ):
        where = f"{CUDA_DATA_FILE}: minor_version_compatibility[{i}]"
        major = item.get("cuda_major")
        if not isinstance(major, int) or isinstance(major, bool):
            raise ConfigError(f"{where}: cuda_major must be an integer")
        floors.append(MajorFloor(major, _driver(item, where), item["source"]))
    # Newer toolkits never need an older driver; a table saying so was mistyped.
    first: dict[tuple[int, int], tuple[int, ...]] = {}
    for t in toolkits:
        first[t.cuda] = min(first.get(t.cuda, t.min_driver), t.min_driver)
    for older, newer in itertools.pairwise(sorted(first)):
        if first[newer] < first[older]:
            raise ConfigError(f"{CUDA_DATA_FILE}: CUDA {newer} needs an older driver than {older}")
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
