"""The shipped manylinux/musllinux policy table: lookups and validation at load."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from proxy.core import datafiles
from proxy.core.policy import (
    POLICY_DATA_FILE,
    GlibcPolicy,
    MuslPolicy,
    PolicyError,
    PolicyTable,
    policy_table,
)
from proxy.errors import ConfigError


@pytest.mark.parametrize(
    ("arch", "needs", "tag"),
    [
        ("x86_64", [], "manylinux_2_5"),
        ("x86_64", ["GLIBC_2.2.5", "GLIBC_2.5"], "manylinux_2_5"),
        ("x86_64", ["GLIBC_2.17"], "manylinux_2_17"),
        ("x86_64", ["GLIBC_2.25"], "manylinux_2_26"),  # no 2_25 policy: the next one up
        ("x86_64", ["GLIBC_2.17", "GLIBCXX_3.4.26"], "manylinux_2_31"),
        ("x86_64", ["CXXABI_1.3.7", "GCC_4.8.0"], "manylinux_2_17"),
        ("x86_64", ["GCC_7.0.0"], "manylinux_2_27"),
        ("x86_64", ["CXXABI_TM_1"], "manylinux_2_17"),  # a named version, not a number
        ("x86_64", ["GLIBC_ABI_DT_RELR"], "manylinux_2_36"),
        ("x86_64", ["ZLIB_1.2.9", "OPENSSL_3.0.0", "libcudart.so.12"], "manylinux_2_5"),
        ("aarch64", [], "manylinux_2_17"),  # aarch64 starts at manylinux2014
        ("aarch64", ["GLIBC_2.18"], "manylinux_2_17"),  # CentOS 7 aarch64 defines 2.18
        ("ppc64le", ["GLIBC_2.18"], "manylinux_2_24"),
        ("riscv64", [], "manylinux_2_31"),
        ("i686", ["GLIBC_2.12"], "manylinux_2_12"),
        ("x86_64", ["GLIBC_PRIVATE"], None),
        ("x86_64", ["GLIBC_2.99"], None),
        ("x86_64", ["GLIBC_ABI_GNU2_TLS"], None),  # newer than every policy
        ("sparc", [], None),
    ],
)
def test_lowest_policy_covering_every_version(arch: str, needs: list[str], tag: str | None) -> None:
    policy = policy_table().glibc_tag(arch, needs)
    assert (policy.tag if policy else None) == tag


@pytest.mark.parametrize(
    ("arch", "tag"),
    [("x86_64", "musllinux_1_1"), ("loongarch64", "musllinux_1_2"), ("sparc", None)],
)
def test_musl_policy(arch: str, tag: str | None) -> None:
    policy = policy_table().musl_tag(arch)
    assert (policy.tag if policy else None) == tag


@pytest.mark.parametrize(
    ("alias", "glibc"),
    [("manylinux1", (2, 5)), ("manylinux2010", (2, 12)), ("manylinux2014", (2, 17)), ("x", None)],
)
def test_legacy_aliases(alias: str, glibc: tuple[int, int] | None) -> None:
    assert policy_table().glibc_of_alias(alias) == glibc


@pytest.mark.parametrize(
    ("name", "glibc"),
    [
        ("GLIBC_ABI_DT_RELR", (2, 36)),  # from the policies
        ("GLIBC_ABI_GNU2_TLS", (2, 43)),  # from glibc_named
        ("GLIBC_ABI_GNU_TLS", (2, 43)),
        ("GLIBC_ABI_DT_X86_64_PLT", (2, 43)),
        ("GLIBC_ABI_NOT_YET", None),
        ("GLIBC_PRIVATE", None),
    ],
)
def test_the_release_that_first_defines_a_named_glibc_version(
    name: str, glibc: tuple[int, int] | None
) -> None:
    assert policy_table().glibc_naming(name) == glibc


def test_the_release_past_every_known_one() -> None:
    assert policy_table().glibc_after_known() == (2, 44)
    data = copy.deepcopy(datafiles.read_json(POLICY_DATA_FILE))
    del data["glibc_named"]
    assert PolicyTable.from_json(data).glibc_after_known() == (2, 42)


def test_every_policy_cites_a_defined_source() -> None:
    data = datafiles.read_json(POLICY_DATA_FILE)
    table = policy_table()
    policies: list[GlibcPolicy | MuslPolicy] = [*table.manylinux, *table.musllinux]
    for policy in policies:
        assert data["sources"][policy.source]


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _swap_first_two(data: dict[str, Any]) -> None:
    data["manylinux"][0], data["manylinux"][1] = data["manylinux"][1], data["manylinux"][0]


def _lower_glibcxx(data: dict[str, Any]) -> None:
    data["manylinux"][3]["arches"]["x86_64"]["ceilings"]["GLIBCXX"] = "3.4.1"


X86 = ["manylinux", 0, "arches", "x86_64"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set(["manylinux", 0, "tag"], "manylinux1"), "manylinux[0].tag: 'manylinux1' is not"),
        (
            _set([*X86, "ceilings", "GLIBC"], "2.x"),
            "manylinux[0].arches.x86_64.ceilings.GLIBC: '2.x' is not a dotted version",
        ),
        (
            _set([*X86, "ceilings", "GLIBC"], "3.0"),
            "manylinux[0].arches.x86_64.ceilings.GLIBC: must be a 2.x version",
        ),
        (_set([*X86, "ceilings", "ZLIB"], "1.2"), "ceilings.ZLIB: unknown prefix"),
        (_set(["manylinux", 0, "arches", "sparc"], {}), "arches.sparc: unknown architecture"),
        (_set([*X86, "named"], ["GLIBC_2.3"]), "'GLIBC_2.3' is not a non-numeric version name"),
        (_set(["manylinux", 0, "source"], "nowhere"), "manylinux[0] cites no known source"),
        (_set(["manylinux", 0, "arches"], []), "manylinux[0].arches: expected an object"),
        (_swap_first_two, "manylinux[1]: policies must be in ascending order"),
        (_lower_glibcxx, "manylinux[3].arches.x86_64.ceilings.GLIBCXX: older than in"),
        (_set(["musllinux", 0, "arches"], ["sparc"]), "musllinux[0].arches: unknown"),
        (_set(["musllinux", 0, "tag"], "musl_1_1"), "musllinux[0].tag: 'musl_1_1' is not"),
        (_set(["sources"], "auditwheel"), "'sources' must map names to citations"),
        (
            _set(["glibc_named", 0, "name"], "GLIBC_2.43"),
            "glibc_named[0].name: 'GLIBC_2.43' is not a named GLIBC version",
        ),
        (
            _set(["glibc_named", 0, "name"], "CXXABI_TM_2"),
            "glibc_named[0].name: 'CXXABI_TM_2' is not a named GLIBC version",
        ),
        (
            _set(["glibc_named", 0, "name"], "GLIBC_ABI_DT_RELR"),
            "glibc_named[0].name: 'GLIBC_ABI_DT_RELR' is listed already",
        ),
        (
            _set(["glibc_named", 1, "name"], "GLIBC_ABI_GNU2_TLS"),
            "glibc_named[1].name: 'GLIBC_ABI_GNU2_TLS' is listed already",
        ),
        (_set(["glibc_named", 0, "glibc"], "2.43.1"), "'2.43.1' is not a 2.N glibc release"),
        (_set(["glibc_named", 0, "glibc"], 2.43), "glibc_named[0].glibc: expected a string"),
        (_set(["glibc_named", 0, "source"], "nowhere"), "glibc_named[0] cites no known source"),
        (_set(["glibc_named"], []), "'glibc_named' must be a non-empty list"),
    ],
)
def test_validation_names_the_fault(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    data = copy.deepcopy(datafiles.read_json(POLICY_DATA_FILE))
    PolicyTable.from_json(copy.deepcopy(data))  # the unmodified table is valid
    mutate(data)
    with pytest.raises(ConfigError) as raised:
        PolicyTable.from_json(data)
    assert message in str(raised.value)


def test_policy_error_is_a_config_error() -> None:
    assert issubclass(PolicyError, ConfigError)
