"""Rules in the serving path: policies on every view, facts, explain, defaults, reloads."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_sdist, build_wheel

MakeProxy = Callable[..., ProxyThread]
CP = "cp311-cp311"


def listed(proxy: ProxyThread, path: str, **headers: str) -> set[str]:
    response = httpx.get(proxy.url + path, headers={"Accept": JSON_V1, **headers})
    assert response.status_code == 200, response.text
    return {f["filename"] for f in response.json()["files"]}


def explained(proxy: ProxyThread, project: str, profile: str) -> dict[str, list[dict[str, str]]]:
    response = httpx.get(
        proxy.url + f"explain/{project}/", params={"profile": profile, "format": "json"}
    )
    assert response.status_code == 200, response.text
    return {f["filename"]: f["reasons"] for f in response.json()["files"]}


def stamp(age: timedelta) -> str:
    return (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def project(upstream: Upstream, wheel_dir: Path) -> dict[str, str]:
    names = {}
    for version, age in [("1.0", timedelta(days=60)), ("2.0", timedelta(hours=3))]:
        wheel = build_wheel(WheelSpec("relpkg", version), wheel_dir)
        upstream.add("relpkg", wheel, upload_time=stamp(age))
        names[f"{version}-wheel"] = wheel.name
        sdist = build_sdist("relpkg", version, wheel_dir)
        upstream.add("relpkg", sdist, upload_time=stamp(age))
        names[f"{version}-sdist"] = sdist.name
    upstream.add("other", build_wheel(WheelSpec("other", "1.0"), wheel_dir))
    return names


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules"
    path.mkdir(exist_ok=True)
    (path / "policy.toml").write_text(text)
    return path


def test_quarantine_hides_fresh_uploads_on_every_view_and_explain_names_the_rule(
    upstream: Upstream, make_proxy: MakeProxy, project: dict[str, str], tmp_path: Path
) -> None:
    rules = rules_file(tmp_path, "[quarantine]\nmin_age = '2d'\n")
    proxy = make_proxy(upstream, rules=rules)
    old = {project["1.0-wheel"], project["1.0-sdist"]}
    assert listed(proxy, "simple/relpkg/") == old
    assert listed(proxy, "universal/simple/relpkg/") == old
    assert listed(proxy, "p/python=3.11/simple/relpkg/") == old
    reasons = explained(proxy, "relpkg", "python=3.11")
    message = f"rule {rules / 'policy.toml'}: quarantine: uploaded 3h ago, quarantined until 2d old"
    assert reasons[project["2.0-wheel"]] == [{"kind": "rule", "message": message}]
    assert reasons[project["1.0-wheel"]] == []
    # A hidden file cannot be fetched by name through the proxy either.
    response = httpx.get(proxy.url + f"files/relpkg/{project['2.0-wheel']}")
    assert response.status_code == 404


def test_quarantine_exemptions(
    upstream: Upstream, make_proxy: MakeProxy, project: dict[str, str], tmp_path: Path
) -> None:
    rules = rules_file(tmp_path, "[quarantine]\nmin_age = '2d'\nexempt = ['RelPkg']\n")
    proxy = make_proxy(upstream, rules=rules)
    assert listed(proxy, "simple/relpkg/") == set(project.values())


def test_deny_and_pins(
    upstream: Upstream, make_proxy: MakeProxy, project: dict[str, str], tmp_path: Path
) -> None:
    text = (
        "[[deny]]\nproject = 'other'\nreason = 'not for this fleet'\n"
        "[[pin]]\nproject = 'relpkg'\nversion = '<2'\n"
    )
    rules = rules_file(tmp_path, text)
    proxy = make_proxy(upstream, rules=rules)
    assert listed(proxy, "simple/relpkg/") == {project["1.0-wheel"], project["1.0-sdist"]}
    assert listed(proxy, "simple/other/") == set()
    root = httpx.get(proxy.url + "simple/", headers={"Accept": JSON_V1}).json()
    assert [p["name"] for p in root["projects"]] == ["relpkg"]
    reasons = explained(proxy, "other", "python=3.11")
    where = rules / "policy.toml"
    assert list(reasons.values()) == [
        [{"kind": "rule", "message": f"rule {where}: deny[0]: other is denied: not for this fleet"}]
    ]
    assert explained(proxy, "relpkg", "python=3.11")[project["2.0-sdist"]] == [
        {"kind": "rule", "message": f"rule {where}: pin[0]: pinned to <2: 2.0 set aside"}
    ]


def test_default_profile_from_rules_and_the_setting_wins(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path, tmp_path: Path
) -> None:
    for platform in ("manylinux_2_17_x86_64", "musllinux_1_2_x86_64"):
        upstream.add(
            "tagged", build_wheel(WheelSpec("tagged", "1.0", tag=f"{CP}-{platform}"), wheel_dir)
        )
    rules = rules_file(tmp_path, "[defaults]\nprofile = 'arch=x86_64,libc=musl-1.2'\n")
    proxy = make_proxy(upstream, rules=rules)
    assert listed(proxy, "simple/tagged/") == {f"tagged-1.0-{CP}-musllinux_1_2_x86_64.whl"}
    setting = make_proxy(upstream, rules=rules, default_profile="arch=x86_64,libc=glibc-2.28")
    assert listed(setting, "simple/tagged/") == {f"tagged-1.0-{CP}-manylinux_2_17_x86_64.whl"}


def test_shipped_facts_hide_from_hosts_that_contradict_them(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path
) -> None:
    wheel = build_wheel(
        WheelSpec("cupy-cuda12x", "13.0.0", tag=f"{CP}-manylinux2014_x86_64"), wheel_dir
    )
    upstream.add("cupy-cuda12x", wheel)
    proxy = make_proxy(upstream)
    assert listed(proxy, "p/cuda=12.4/simple/cupy-cuda12x/") == {wheel.name}
    assert listed(proxy, "simple/cupy-cuda12x/") == {wheel.name}  # told nothing
    assert listed(proxy, "p/cuda=11.8/simple/cupy-cuda12x/") == set()
    (reasons,) = explained(proxy, "cupy-cuda12x", "cuda=none").values()
    assert reasons == [
        {
            "kind": "rule",
            "message": "rule proxy/data/project-facts.toml: fact[2]: cuda: needs CUDA 12, "
            "host has no NVIDIA driver (built for CUDA 12.x; loads the CUDA libraries at run time)",
        }
    ]


def test_rules_reload_when_a_file_changes_and_a_bad_change_keeps_the_old_rules(
    upstream: Upstream, make_proxy: MakeProxy, project: dict[str, str], tmp_path: Path
) -> None:
    rules = rules_file(tmp_path, "[[pin]]\nproject = 'relpkg'\nversion = '<2'\n")
    proxy = make_proxy(upstream, rules=rules)
    assert project["2.0-wheel"] not in listed(proxy, "simple/relpkg/")
    (rules / "policy.toml").write_text("[[pin]]\nproject = 'relpkg'\nversion = '>=2'\n")
    wait_for(lambda: project["2.0-wheel"] in listed(proxy, "simple/relpkg/"))
    assert project["1.0-wheel"] not in listed(proxy, "simple/relpkg/")
    good = proxy.services.rules.current
    (rules / "policy.toml").write_text("[[pin]]\nproject = 'relpkg'\nversion = '>>2'\n")
    wait_for(lambda: not proxy.services.rules.changed_on_disk())
    assert proxy.services.rules.current is good
    assert project["1.0-wheel"] not in listed(proxy, "simple/relpkg/")


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.1)
