from __future__ import annotations

import os
import platform
import sys

import pytest
from packaging import tags as ptags

from proxy.core.profile import parse_profile
from proxy.core.tags import client_tags, linux_platforms, wheel_supported


def _this_machine() -> str:
    glibc = os.confstr("CS_GNU_LIBC_VERSION")
    assert glibc is not None, "this test describes a glibc host"
    impl = ptags.interpreter_name()
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    libc = "glibc-" + glibc.split()[1]
    return f"python={py},impl={impl},arch={platform.machine()},libc={libc}"


def test_declared_profile_of_this_machine_gives_what_sys_tags_gives() -> None:
    # The one place where the server may look at itself: as an oracle for the client path.
    declared = client_tags(parse_profile(_this_machine(), "url"))
    assert declared.tags == tuple(ptags.sys_tags())


def _supported(profile: str, filename: str) -> bool:
    return wheel_supported(filename, client_tags(parse_profile(profile, "url")))


FULL = "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.28"
MUSL = "python=3.12,impl=cp,arch=x86_64,libc=musl-1.2"


@pytest.mark.parametrize(
    ("profile", "filename", "expected"),
    [
        # nothing told: nothing hidden
        ("", "x-1-cp310-cp310-win_amd64.whl", True),
        ("", "x-1-cp311-cp311-manylinux_2_99_aarch64.whl", True),
        # python told, platform not
        ("python=3.11", "x-1-cp311-cp311-manylinux_2_34_x86_64.whl", True),
        ("python=3.11", "x-1-cp311-cp311-macosx_11_0_arm64.whl", True),
        ("python=3.11", "x-1-cp310-cp310-manylinux_2_17_x86_64.whl", False),
        ("python=3.11", "x-1-cp312-cp312-manylinux_2_17_x86_64.whl", False),
        ("python=3.11", "x-1-cp39-abi3-manylinux_2_17_x86_64.whl", True),
        ("python=3.11", "x-1-cp312-abi3-manylinux_2_17_x86_64.whl", False),
        ("python=3.11", "x-1-py3-none-any.whl", True),
        ("python=3.11", "x-1-py2.py3-none-any.whl", True),
        ("python=3.11", "x-1-py2-none-any.whl", False),
        ("python=3.11", "x-1-cp311-none-any.whl", True),
        # impl not told: other implementations' tags are not judged, CPython's are
        ("python=3.11", "x-1-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl", True),
        ("python=3.11,impl=cp", "x-1-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl", False),
        # platform told, python not
        ("arch=x86_64,libc=glibc-2.28", "x-1-cp27-cp27mu-manylinux1_x86_64.whl", True),
        ("arch=x86_64,libc=glibc-2.28", "x-1-cp311-cp311-manylinux_2_34_x86_64.whl", False),
        ("arch=x86_64,libc=glibc-2.28", "x-1-cp311-cp311-win_amd64.whl", False),
        ("arch=x86_64,libc=glibc-2.28", "x-1-py3-none-any.whl", True),
        # only half the platform told: not judged
        ("arch=x86_64", "x-1-cp311-cp311-manylinux_2_34_aarch64.whl", True),
        ("libc=glibc-2.17", "x-1-cp311-cp311-manylinux_2_34_x86_64.whl", True),
        # glibc versions: equal is fine, newer is not
        (FULL, "x-1-cp311-cp311-manylinux_2_28_x86_64.whl", True),
        (FULL, "x-1-cp311-cp311-manylinux_2_29_x86_64.whl", False),
        (FULL, "x-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
        (FULL, "x-1-cp311-cp311-manylinux2014_x86_64.whl", True),
        (FULL, "x-1-cp311-cp311-manylinux2010_x86_64.whl", True),
        (FULL, "x-1-cp311-cp311-manylinux1_x86_64.whl", True),
        (FULL, "x-1-cp311-cp311-manylinux_2_5_x86_64.whl", True),
        (FULL, "x-1-cp311-cp311-linux_x86_64.whl", True),
        (FULL, "x-1-cp311-cp311-manylinux_2_17_aarch64.whl", False),
        (FULL, "x-1-cp311-cp311-musllinux_1_1_x86_64.whl", False),
        (FULL, "x-1-cp311-cp311-win_amd64.whl", False),
        (FULL, "x-1-cp311-cp311-macosx_11_0_x86_64.whl", False),
        (FULL, "x-1-cp311-abi3-manylinux_2_28_x86_64.whl", True),
        (FULL, "x-1-py3-none-manylinux_2_28_x86_64.whl", True),
        # one of a compressed tag set is enough
        (FULL, "x-1-cp310.cp311-cp310.cp311-manylinux_2_34_x86_64.manylinux_2_17_x86_64.whl", True),
        # musl
        (MUSL, "x-1-cp312-cp312-musllinux_1_2_x86_64.whl", True),
        (MUSL, "x-1-cp312-cp312-musllinux_1_1_x86_64.whl", True),
        (MUSL, "x-1-cp312-cp312-musllinux_1_3_x86_64.whl", False),
        (MUSL, "x-1-cp312-cp312-manylinux_2_17_x86_64.whl", False),
        (MUSL, "x-1-cp312-cp312-linux_x86_64.whl", True),
        # aarch64 starts at manylinux2014; manylinux1 never existed there
        ("arch=aarch64,libc=glibc-2.17", "x-1-py3-none-manylinux2014_aarch64.whl", True),
        ("arch=aarch64,libc=glibc-2.17", "x-1-py3-none-manylinux_2_17_aarch64.whl", True),
        ("arch=aarch64,libc=glibc-2.17", "x-1-py3-none-manylinux1_aarch64.whl", False),
        ("arch=aarch64,libc=glibc-2.17", "x-1-py3-none-manylinux_2_5_aarch64.whl", False),
        # free-threaded or not is not in the profile: both kept
        ("python=3.13,impl=cp", "x-1-cp313-cp313t-manylinux_2_17_x86_64.whl", True),
        ("python=3.13,impl=cp", "x-1-cp313-cp313-manylinux_2_17_x86_64.whl", True),
        ("python=3.13,impl=cp", "x-1-cp311-abi3-manylinux_2_17_x86_64.whl", True),
        # old CPython ABIs carry the m flag
        ("python=3.7,impl=cp", "x-1-cp37-cp37m-manylinux1_x86_64.whl", True),
        # PyPy: the ABI name depends on the PyPy release, which the profile does not tell
        ("python=3.10,impl=pp", "x-1-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl", True),
        ("python=3.10,impl=pp", "x-1-pp39-pypy39_pp73-manylinux_2_17_x86_64.whl", False),
        ("python=3.10,impl=pp", "x-1-cp310-cp310-manylinux_2_17_x86_64.whl", False),
        ("python=3.10,impl=pp", "x-1-py3-none-any.whl", True),
        ("python=3.10,impl=pp", "x-1-pp310-none-any.whl", True),
        # not a wheel name: not this check's to hide
        (FULL, "x-1.tar.gz", True),
        (FULL, "not-a-wheel.whl", True),
    ],
)
def test_wheel_supported(profile: str, filename: str, expected: bool) -> None:
    assert _supported(profile, filename) is expected


def test_tags_are_listed_only_when_everything_is_known() -> None:
    assert client_tags(parse_profile("python=3.11,arch=x86_64", "url")).tags == ()
    full = client_tags(parse_profile(FULL, "url")).tags
    assert full[0] == ptags.Tag("cp311", "cp311", "linux_x86_64")
    assert full[1] == ptags.Tag("cp311", "cp311", "manylinux_2_28_x86_64")
    assert full[-1] == ptags.Tag("py30", "none", "any")
    assert len(full) == len(set(full))


@pytest.mark.parametrize(
    ("arch", "libc", "expected"),
    [
        (
            "x86_64",
            "glibc-2.6",
            [
                "linux_x86_64",
                "manylinux_2_6_x86_64",
                "manylinux_2_5_x86_64",
                "manylinux1_x86_64",
            ],
        ),
        (
            "ppc64le",
            "glibc-2.18",
            [
                "linux_ppc64le",
                "manylinux_2_18_ppc64le",
                "manylinux_2_17_ppc64le",
                "manylinux2014_ppc64le",
            ],
        ),
        ("riscv64", "glibc-2.16", ["linux_riscv64"]),
        (
            "aarch64",
            "musl-1.1",
            ["linux_aarch64", "musllinux_1_1_aarch64", "musllinux_1_0_aarch64"],
        ),
    ],
)
def test_linux_platforms(arch: str, libc: str, expected: list[str]) -> None:
    profile = parse_profile(f"libc={libc}", "url")
    assert profile.libc is not None
    assert list(linux_platforms(arch, profile.libc.value)) == expected


def test_a_profiles_tags_are_worked_out_once() -> None:
    # Every gated download asks for them: hundreds of tags for a CPython host.
    text = "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.17"
    first = client_tags(parse_profile(text, "url"))
    assert len(first.tags) > 400
    assert client_tags(parse_profile(text, "url")) is first


@pytest.mark.parametrize("arch", ["x86_64", "i686", "aarch64", "armv7l", "armv8l", "ppc64le"])
def test_linux_platforms_are_packagings_for_a_glibc_host(
    arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """packaging's own list for that machine (as pip builds it there), the oracle: an
    armv8l userland (32-bit ARM on an ARMv8 CPU) takes armv7l wheels too, which hostfit
    hid from it."""
    import sysconfig

    from packaging import _manylinux

    monkeypatch.setattr(sysconfig, "get_platform", lambda: f"linux-{arch}")
    monkeypatch.setattr(_manylinux, "_get_glibc_version", lambda: (2, 36))
    monkeypatch.setattr(_manylinux, "_have_compatible_abi", lambda executable, archs: True)
    expected = [p for p in ptags._linux_platforms(is_32bit=False) if "musllinux" not in p]
    profile = parse_profile("libc=glibc-2.36", "url")
    assert profile.libc is not None
    assert list(linux_platforms(arch, profile.libc.value)) == expected
