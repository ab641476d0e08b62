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
from proxy.core.cuda import (
    CUDA_DATA_FILE,
    cuda_table,
    driver_text,
    parse_cuda_table,
    parse_driver_version,
)
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


def test_minor_version_compatibility_holds_from_the_first_cuda_past_the_floor() -> None:
    # Drivers that report 11.0 begin at 450.36.06 (11.0.1 RC), below 450.80.02.
    assert {f.cuda_major: f.from_cuda for f in cuda_table().minor_version_compatibility} == {
        11: (11, 1),
        12: (12, 0),
        13: (13, 0),
    }


@pytest.mark.parametrize(
    ("toolkit", "host", "how", "why"),
    [
        ((12, 6), (12, 8), "native", "12.6 <= 12.8"),
        ((12, 8), (12, 8), "native", "12.8 <= 12.8"),
        ((11, 8), (12, 4), "native", "11.8 <= 12.4"),
        ((12, 8), (12, 4), "minor", "CUDA 12.8 on a driver for 12.4"),
        ((11, 8), (11, 4), "minor", "CUDA 11.8 on a driver for 11.4"),
        ((11, 8), (11, 1), "minor", "CUDA 11.8 on a driver for 11.1"),
        ((13, 2), (13, 0), "minor", "CUDA 13.2 on a driver for 13.0"),
        ((12, 9), (12, 7), "minor", "CUDA 12.9 on a driver for 12.7"),  # no 12.7 toolkit
        (
            (11, 8),
            (11, 0),
            "unsure",
            "needs CUDA 11.8; the host's driver supports CUDA 11.0; minor version"
            " compatibility needs driver 450.80.02, and a driver that supports CUDA 11.0 may"
            " be older",
        ),
        ((12, 0), (11, 8), "newer", "needs CUDA 12.0; the host's driver supports CUDA 11.8"),
        (
            (10, 2),
            (10, 1),
            "newer",
            "needs CUDA 10.2; the host's driver supports CUDA 10.1, and CUDA 10 has no minor"
            " version compatibility",
        ),
    ],
)
def test_how_a_driver_runs_a_toolkit(
    toolkit: tuple[int, int], host: tuple[int, int], how: str, why: str
) -> None:
    support = cuda_table().support(toolkit, host)
    assert (support.how, support.why) == (how, why)


@pytest.mark.parametrize("text", ["", "550.54.14.1", "v550.54", "550.x", "5.1", "550."])
def test_bad_driver_versions(text: str) -> None:
    with pytest.raises(ValueError):
        parse_driver_version(text)


def test_driver_versions() -> None:
    assert parse_driver_version("550") == (550,)
    assert parse_driver_version("570.124.06") == (570, 124, 6)
    for text in ("450.80.02", "570.124.06", "455.23", "580"):
        assert driver_text(parse_driver_version(text)) == text


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
        ("minor_version_compatibility.1.cuda_major", 13, "CUDA 13 is listed twice"),
        ("minor_version_compatibility.0.min_driver", "600", "no CUDA 13 host is known"),
        ("minor_version_compatibility.0.cuda_major", 14, "no toolkit of CUDA 14"),
        ("minor_version_compatibility.0.min_driver", "5.8", "not a driver version"),
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
