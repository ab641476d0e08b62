"""User-Agent parsing, against headers captured from real pip and uv.

tests/fixtures/useragents/captured.json was recorded by capture.py next to it (pip
23.2.1 and uv 0.13.9 on Debian 12, CPython 3.11.7, glibc 2.36, x86_64). Variants for
hosts this machine is not (musl, macOS, PyPy) are derived from those real headers by
changing only the fields that differ, so the rest keeps the real clients' shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.core.profile import HostProfile, parse_profile
from proxy.core.useragent import default_for, parse_user_agent

CAPTURED: dict[str, str] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "useragents" / "captured.json").read_text()
)
THIS_HOST = "arch=x86_64,impl=cp,libc=glibc-2.36,python=3.11"


def _variant(name: str, **changes: Any) -> str:
    product, _, body = CAPTURED[name].partition(" ")
    data = json.loads(body)
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return f"{product} {json.dumps(data, separators=(',', ':'))}"


@pytest.mark.parametrize(
    ("header", "installer", "subcommand", "profile", "user_data"),
    [
        (CAPTURED["pip"], "pip", (), THIS_HOST, ""),
        (
            CAPTURED["pip_user_data"],
            "pip",
            (),
            THIS_HOST,
            "cuda=12.4,libc=glibc-2.28,python=3.11",
        ),
        (CAPTURED["uv_pip_install"], "uv", ("pip", "install"), THIS_HOST, ""),
        (CAPTURED["uv_pip_compile"], "uv", ("pip", "compile"), THIS_HOST, ""),
        (CAPTURED["uv_lock"], "uv", ("lock",), THIS_HOST, ""),
        # uv reports musl from the interpreter's platform; pip reports no libc there
        (
            _variant("uv_pip_install", distro__libc={"lib": "musl", "version": "1.2"}),
            "uv",
            ("pip", "install"),
            "arch=x86_64,impl=cp,libc=musl-1.2,python=3.11",
            "",
        ),
        (
            _variant("pip", distro__libc=None, distro__name="Alpine Linux"),
            "pip",
            (),
            "arch=x86_64,impl=cp,python=3.11",
            "",
        ),
        # not Linux: cpu and libc say nothing about Linux wheels
        (
            _variant(
                "pip",
                system__name="Darwin",
                cpu="arm64",
                distro={"name": "macOS", "version": "14.4"},
            ),
            "pip",
            (),
            "impl=cp,python=3.11",
            "",
        ),
        (
            _variant("pip", implementation={"name": "PyPy", "version": "7.3.16"}),
            "pip",
            (),
            "arch=x86_64,impl=pp,libc=glibc-2.36,python=3.11",
            "",
        ),
        # one bad field is dropped, the rest is kept
        (
            _variant("uv_lock", python="3.eleven", cpu="x86 64"),
            "uv",
            ("lock",),
            "impl=cp,libc=glibc-2.36",
            "",
        ),
        (_variant("uv_lock", installer__subcommand="lock"), "uv", (), THIS_HOST, ""),
        (_variant("uv_lock", installer__subcommand=["lock", 3]), "uv", (), THIS_HOST, ""),
        (_variant("pip", distro__libc="glibc"), "pip", (), "arch=x86_64,impl=cp,python=3.11", ""),
        (_variant("pip", system="Linux"), "pip", (), "impl=cp,python=3.11", ""),
        # not linehaul at all
        ("curl/8.5.0", "curl", (), "", ""),
        ("python-httpx/0.27.0", "python-httpx", (), "", ""),
        ("pip/24.0 not json", "pip", (), "", ""),
        ("pip/24.0 {truncated", "pip", (), "", ""),
        ("pip/24.0 [1, 2]", "pip", (), "", ""),
        ('pip/24.0 {"python": 3.11}', "pip", (), "", ""),
        ("pip/24.0 " + "[" * 100_000, None, (), "", ""),
        ('pip/24.0 {"a":' + "[" * 4000 + "]" * 4000 + "}", "pip", (), "", ""),
        ("Mozilla/5.0 (X11; Linux x86_64)", "mozilla", (), "", ""),
        ("", None, (), "", ""),
        (None, None, (), "", ""),
        ("/1.0 {}", None, (), "", ""),
    ],
)
def test_user_agent(
    header: str | None,
    installer: str | None,
    subcommand: tuple[str, ...],
    profile: str,
    user_data: str,
) -> None:
    ua = parse_user_agent(header)
    assert ua.installer == installer
    assert ua.subcommand == subcommand
    assert ua.profile.to_string() == profile
    assert ua.user_data.to_string() == user_data


def test_sources() -> None:
    ua = parse_user_agent(CAPTURED["pip_user_data"])
    assert set(ua.profile.sources().values()) == {"user-agent"}
    assert set(ua.user_data.sources().values()) == {"user_data"}
    assert ua.installer_version == "23.2.1"
    assert ua.user_data_error is None


@pytest.mark.parametrize(
    ("user_data", "error"),
    [
        ("python=three", "python='three'"),
        ("team=ml,cuda=twelve", "cuda='twelve'"),
        ({"python": "3.11"}, "not a string"),
    ],
)
def test_malformed_user_data_is_ignored_and_explained(user_data: object, error: str) -> None:
    ua = parse_user_agent(_variant("pip", user_data=user_data))
    assert ua.user_data == HostProfile()
    assert ua.user_data_error is not None and error in ua.user_data_error
    assert ua.profile.to_string() == THIS_HOST


def test_user_data_without_profile_keys_is_an_empty_profile() -> None:
    ua = parse_user_agent(_variant("pip", user_data="team=ml,build=42"))
    assert ua.user_data == HostProfile()
    assert ua.user_data_error is None


@pytest.mark.parametrize("text", ["team-ml", "build 42", ""])
def test_user_data_that_is_no_key_value_text_is_not_a_profile(text: str) -> None:
    ua = parse_user_agent(_variant("pip", user_data=text))
    assert ua.user_data == HostProfile() and ua.user_data_error is None


DEFAULT = "arch=aarch64,cuda=none,glibcxx=3.4.25,isa=x86-64-v2,libc=glibc-2.28"


@pytest.mark.parametrize(
    ("header", "left"),
    [
        # pip on musl tells no libc: the default's glibc must not stand in for it
        (
            _variant("pip", distro__libc=None, distro__name="Alpine Linux"),
            "cuda=none,glibcxx=3.4.25,isa=x86-64-v2",
        ),
        (CAPTURED["uv_pip_install"], "cuda=none,glibcxx=3.4.25,isa=x86-64-v2"),
        # another system: none of the default's Linux facts
        (
            _variant("pip", system__name="Windows", cpu="AMD64", distro=None),
            "cuda=none,isa=x86-64-v2",
        ),
        # no system named: the whole default
        ("curl/8.5.0", DEFAULT),
        (_variant("pip", system=None), DEFAULT),
    ],
)
def test_the_default_gives_only_what_the_installer_leaves_open(header: str, left: str) -> None:
    default = parse_profile(DEFAULT, "default")
    assert default_for(parse_user_agent(header), default).to_string() == left
    assert default_for(parse_user_agent(header), HostProfile()) == HostProfile()


def test_user_data_is_read_as_a_profile_string() -> None:
    text = "arch=aarch64,cuda=none,isa=x86-64-v2,sm=8.0+9.0"
    ua = parse_user_agent(_variant("pip", user_data=text))
    assert ua.user_data == parse_profile(text, "user_data")


def test_oversized_header_is_ignored() -> None:
    ua = parse_user_agent(_variant("pip", user_data="x" * 9000))
    assert ua == parse_user_agent(None)
