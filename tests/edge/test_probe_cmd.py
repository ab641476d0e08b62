from __future__ import annotations

import configparser
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.cli.probe import pip_conf, profile_url, render, trusted_host
from proxy.core.profile import parse_profile
from proxy.probe.host import ProbeEnv, probe

FIXTURES = Path(__file__).parents[1] / "fixtures" / "probe"
H100 = ProbeEnv(
    root=FIXTURES / "roots" / "h100",
    machine="x86_64",
    glibc=lambda: "glibc 2.28",
    nvml=None,
    nvidia_smi=str(FIXTURES / "bin" / "nvidia-smi-h100"),
    libcuda=None,
)


def test_prints_the_profile_string(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe"]) == 0
    out = capsys.readouterr().out
    assert out == probe().profile.to_string() + "\n"
    assert parse_profile(out.strip(), "url").to_string() == out.strip()


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"] == probe().profile.to_string()
    assert ",".join(f"{k}={v}" for k, v in data["facts"].items()) == data["profile"]
    assert set(data["found"]) >= set(data["facts"])
    assert "index_url" not in data


def test_index_url_snippets_are_valid_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--json", "--index-url", "http://hostfit.internal:8080/"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = f"http://hostfit.internal:8080/p/{data['profile']}/simple/"
    assert data["index_url"] == expected
    pip_conf = configparser.ConfigParser()
    pip_conf.read_string(data["pip_conf"])
    assert pip_conf["global"]["index-url"] == expected
    assert pip_conf["global"]["trusted-host"] == "hostfit.internal"  # else pip ignores it
    uv = tomllib.loads(data["uv_toml"])
    assert uv == {"index": [{"url": expected, "default": True}]}


def test_plain_output_with_index_url() -> None:
    # libstdc++ is looked up in <root>/proc/self/maps, absent from the fake root
    text = render(probe(H100), index_url="https://hostfit.example/")
    profile = "arch=x86_64,cuda=12.4,isa=x86-64-v4,libc=glibc-2.28,sm=9.0"
    url = f"https://hostfit.example/p/{profile}/simple/"
    lines = text.splitlines()
    assert lines[0] == profile
    assert lines[1] == url
    assert f"index-url = {url}" in lines
    assert f'url = "{url}"' in lines
    assert "default = true" in lines


@pytest.mark.parametrize(
    ("index_url", "expected"),
    [
        ("http://h:8080", "http://h:8080/p/cuda=none/simple/"),
        ("http://h:8080/", "http://h:8080/p/cuda=none/simple/"),
        ("http://h:8080/simple/", "http://h:8080/p/cuda=none/simple/"),
        ("http://h:8080/simple", "http://h:8080/p/cuda=none/simple/"),
        ("https://h/mirror/", "https://h/mirror/p/cuda=none/simple/"),
        ("http://h:8080/universal/simple/", "http://h:8080/p/cuda=none/simple/"),
        ("http://h:8080/p/cuda=12.4/simple/", "http://h:8080/p/cuda=none/simple/"),
        ("http://universal/simple/", "http://universal/p/cuda=none/simple/"),
    ],
)
def test_profile_url(index_url: str, expected: str) -> None:
    assert profile_url(index_url, "cuda=none") == expected


def test_empty_profile_uses_the_plain_index() -> None:
    assert profile_url("http://h:8080/", "") == "http://h:8080/simple/"


@pytest.mark.parametrize("bad", ["ftp://h/", "h:8080", "http://h/?x=1", "not a url"])
def test_bad_index_url_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["probe", "--index-url", bad])
    assert info.value.code == 2
    assert "--index-url" in capsys.readouterr().err


def test_console_entry_point() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "proxy", "probe"], capture_output=True, text=True, check=True
    )
    assert run.stdout == probe().profile.to_string() + "\n"


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("http://hostfit.internal:8080/simple/", "hostfit.internal"),
        ("http://10.1.2.3/simple/", "10.1.2.3"),
        ("http://[fd00::5]:8080/simple/", "[fd00::5]"),
        ("https://hostfit.internal/simple/", None),  # a secure origin
        ("http://localhost:8080/simple/", None),
        ("http://127.0.0.1:8080/simple/", None),
        ("http://127.3.4.5/simple/", None),
        ("http://[::1]:8080/simple/", None),
    ],
)
def test_trusted_host_only_where_pip_needs_it(url: str, trusted: str | None) -> None:
    assert trusted_host(url) == trusted
    conf = configparser.ConfigParser()
    conf.read_string(pip_conf(url))
    assert conf["global"].get("trusted-host") == trusted
