"""The shipped CUDA-driver and libstdc++ ABI tables: loading, validation, meaning."""

from __future__ import annotations

import copy
import ctypes
import re
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection

from proxy.core import datafiles
from proxy.core.cuda import CUDA_DATA_FILE, cuda_table, parse_cuda_table, parse_driver_version
from proxy.core.libstdcxx import LIBSTDCXX_DATA_FILE, libstdcxx_table, parse_libstdcxx_table
from proxy.errors import ConfigError


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        # rows of NVIDIA's table, at and just below a minimum
        ("550.54.14", (12, 4)),
        ("550.54.13", (12, 3)),
        ("570.124.06", (12, 8)),
        ("570.26", (12, 8)),
        ("570.25.99", (12, 6)),
        ("525.60.13", (12, 0)),
        ("520.61.05", (11, 8)),
        ("595.71.05", (13, 2)),
        ("999.99", (13, 2)),
        # minor version compatibility: R580 runs all of 13.x before 13.0 GA's own minimum
        ("580.20", (13, 0)),
        ("450.80.02", (11, 0)),
        ("346.46", (7, 0)),
        ("346.45", None),
    ],
)
def test_newest_cuda_for_driver(driver: str, cuda: tuple[int, int] | None) -> None:
    assert cuda_table().newest_cuda(parse_driver_version(driver)) == cuda


@pytest.mark.parametrize("text", ["", "550.54.14.1", "v550.54", "550.x", "5.1", "550."])
def test_bad_driver_versions(text: str) -> None:
    with pytest.raises(ValueError):
        parse_driver_version(text)


def test_driver_versions() -> None:
    assert parse_driver_version("550") == (550,)
    assert parse_driver_version("570.124.06") == (570, 124, 6)


def _library_verdefs(path: str) -> set[str]:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        section = elf.get_section_by_name(".gnu.version_d")
        assert isinstance(section, GNUVerDefSection)
        return {next(aux).name for _, aux in section.iter_versions()}


def _loaded_libstdcxx() -> str:
    ctypes.CDLL("libstdc++.so.6")
    for line in Path("/proc/self/maps").read_text().splitlines():
        if "libstdc++.so.6" in line:
            return line.split()[-1]
    raise AssertionError("libstdc++ not mapped")


def _newest(names: set[str], prefix: str) -> tuple[int, ...]:
    pattern = re.compile(re.escape(prefix) + r"(\d+(?:\.\d+)*)$")
    return max(tuple(int(p) for p in m[1].split(".")) for n in names if (m := pattern.match(n)))


def test_cxxabi_table_agrees_with_the_libstdcxx_on_this_machine() -> None:
    names = _library_verdefs(_loaded_libstdcxx())
    glibcxx, cxxabi = _newest(names, "GLIBCXX_"), _newest(names, "CXXABI_")
    assert libstdcxx_table().cxxabi_for(glibcxx) == (cxxabi, True)


@pytest.mark.parametrize(
    ("glibcxx", "expected"),
    [
        ((3, 4, 25), ((1, 3, 11), True)),  # GCC 8
        ((3, 4, 28), ((1, 3, 12), True)),  # GCC 9.3 and 10.1 share it
        ((3, 4, 33), ((1, 3, 15), True)),  # GCC 14, the newest listed
        ((3, 4, 34), ((1, 3, 15), False)),  # newer than the table: a lower bound
        ((3, 4), ((1, 3), True)),
        ((3, 3), None),
    ],
)
def test_cxxabi_for(glibcxx: tuple[int, ...], expected: object) -> None:
    assert libstdcxx_table().cxxabi_for(glibcxx) == expected


def _broken(name: str, change: Any) -> Any:
    data = copy.deepcopy(datafiles.read_json(name))
    change(data)
    return data


def _set(path: str, value: object) -> Any:
    def change(data: Any) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[int(key)] if key.isdigit() else data[key]
        if value is _DELETE:
            del data[last]
        else:
            data[int(last) if last.isdigit() else last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("toolkits.0.source", "nowhere", "cites no known source"),
        ("toolkits.0.source", _DELETE, "cites no known source"),
        ("toolkits.0.min_driver", "latest", "not a driver version"),
        ("toolkits.0.cuda", "13", "MAJOR.MINOR"),
        ("toolkits.0.release", "", "release name"),
        ("toolkits.3", "row", "not an object"),
        ("toolkits", [], "non-empty list"),
        ("sources", {"nvidia-release-notes": ""}, "map names to citations"),
        ("minor_version_compatibility.0.cuda_major", "13", "integer"),
        ("minor_version_compatibility.0.cuda_major", True, "integer"),
        ("toolkits.0.min_driver", "100.1", "needs an older driver"),
    ],
)
def test_cuda_table_is_validated(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_cuda_table(_broken(CUDA_DATA_FILE, _set(path, value)))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("releases.5.source", "blog", "cites no known source"),
        ("releases.5.glibcxx", "3.4.x", "not a dotted version"),
        ("releases.5.cxxabi", 1.3, "not a dotted version"),
        ("releases.5.cxxabi", "1.2", "not newer"),
        ("releases.5.gcc", "3.0.0", "not newer"),
    ],
)
def test_libstdcxx_table_is_validated(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_libstdcxx_table(_broken(LIBSTDCXX_DATA_FILE, _set(path, value)))


def test_not_an_object() -> None:
    with pytest.raises(ConfigError, match="not a JSON object"):
        parse_cuda_table([])


def test_missing_data_file() -> None:
    with pytest.raises(ConfigError, match=r"no-such-table\.json"):
        datafiles.read_json("no-such-table.json")
