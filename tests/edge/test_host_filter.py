"""Host-aware pages: profiles from URL, header and User-Agent; variants; sdists; views."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import (
    NEEDS_GLIBC_2_34,
    WheelSpec,
    build_sdist,
    build_wheel,
    extension_wheel,
)

MakeProxy = Callable[..., ProxyThread]
CP = "cp311-cp311"
HOST = "python=3.11,impl=cp,arch=x86_64"


def pip_agent(libc: str = "2.36", user_data: str | None = None) -> str:
    data = {
        "installer": {"name": "pip", "version": "24.0"},
        "python": "3.11.7",
        "implementation": {"name": "CPython", "version": "3.11.7"},
        "distro": {"name": "Debian GNU/Linux", "libc": {"lib": "glibc", "version": libc}},
        "system": {"name": "Linux", "release": "6.1"},
        "cpu": "x86_64",
    }
    if user_data is not None:
        data["user_data"] = user_data
    return "pip/24.0 " + json.dumps(data)


def uv_agent(*subcommand: str) -> str:
    data = {
        "installer": {"name": "uv", "version": "0.5.0", "subcommand": list(subcommand)},
        "python": "3.11.7",
        "implementation": {"name": "CPython", "version": "3.11.7"},
        "distro": {"name": "Debian GNU/Linux", "version": "12", "id": "bookworm",
                   "libc": {"lib": "glibc", "version": "2.36"}},
        "system": {"name": "Linux", "release": "6.1"},
        "cpu": "x86_64",
    }  # fmt: skip
    return "uv/0.5.0 " + json.dumps(data)


@pytest.fixture
def fitpkg(upstream: Upstream, wheel_dir: Path) -> dict[str, str]:
    names = {}
    for version, platform in [
        ("1.0", "manylinux_2_17_x86_64"),
        ("1.0", "manylinux_2_34_x86_64"),
        ("1.0", "musllinux_1_2_x86_64"),
        ("2.0", "manylinux_2_34_x86_64"),
    ]:
        wheel = build_wheel(WheelSpec("fitpkg", version, tag=f"{CP}-{platform}"), wheel_dir)
        upstream.add("fitpkg", wheel)
        names[f"{version}-{platform}"] = wheel.name
    for version in ("1.0", "2.0"):
        sdist = build_sdist("fitpkg", version, wheel_dir)
        upstream.add("fitpkg", sdist)
        names[f"{version}-sdist"] = sdist.name
    return names


def listed(proxy: ProxyThread, path: str, **headers: str) -> set[str]:
    response = httpx.get(proxy.url + path, headers={"Accept": JSON_V1, **headers})
    assert response.status_code == 200, response.text
    return {f["filename"] for f in response.json()["files"]}


def test_profile_in_url_filters(
    upstream: Upstream, make_proxy: MakeProxy, fitpkg: dict[str, str]
) -> None:
    proxy = make_proxy(upstream)
    old = listed(proxy, f"p/{HOST},libc=glibc-2.28/simple/fitpkg/")
    assert old == {fitpkg["1.0-manylinux_2_17_x86_64"], fitpkg["1.0-sdist"]}
    new = listed(proxy, f"p/{HOST},libc=glibc-2.36/simple/fitpkg/")
    assert new == {
        fitpkg["1.0-manylinux_2_17_x86_64"], fitpkg["1.0-manylinux_2_34_x86_64"],
        fitpkg["2.0-manylinux_2_34_x86_64"], fitpkg["1.0-sdist"], fitpkg["2.0-sdist"],
    }  # fmt: skip
    musl = listed(proxy, f"p/{HOST},libc=musl-1.2/simple/fitpkg/")
    assert musl == {fitpkg["1.0-musllinux_1_2_x86_64"], fitpkg["1.0-sdist"]}
    everything = listed(proxy, "universal/simple/fitpkg/")
    assert everything == set(fitpkg.values())


def test_sdist_of_a_version_without_fitting_wheel_is_hidden(
    upstream: Upstream, make_proxy: MakeProxy, fitpkg: dict[str, str]
) -> None:
    proxy = make_proxy(upstream)
    old = listed(proxy, f"p/{HOST},libc=glibc-2.28/simple/fitpkg/")
    assert fitpkg["2.0-sdist"] not in old and fitpkg["1.0-sdist"] in old
    keeps = make_proxy(upstream, hide_sdists_without_wheels=False)
    assert fitpkg["2.0-sdist"] in listed(keeps, f"p/{HOST},libc=glibc-2.28/simple/fitpkg/")


def test_precedence_url_header_user_data_user_agent_default(
    upstream: Upstream, make_proxy: MakeProxy, fitpkg: dict[str, str]
) -> None:
    proxy = make_proxy(upstream, default_profile="libc=musl-1.2")
    old_wheel, new_wheel = fitpkg["1.0-manylinux_2_17_x86_64"], fitpkg["2.0-manylinux_2_34_x86_64"]
    musl_wheel = fitpkg["1.0-musllinux_1_2_x86_64"]
    # Nothing told: the configured default decides.
    assert musl_wheel in listed(proxy, "simple/fitpkg/")
    # The User-Agent beats the default.
    assert new_wheel in listed(proxy, "simple/fitpkg/", **{"User-Agent": pip_agent("2.36")})
    # user_data beats the User-Agent.
    agent = pip_agent("2.36", user_data="libc=glibc-2.28")
    assert new_wheel not in listed(proxy, "simple/fitpkg/", **{"User-Agent": agent})
    # The header beats user_data.
    header = {"User-Agent": agent, "X-Hostfit-Profile": "libc=glibc-2.36"}
    assert new_wheel in listed(proxy, "simple/fitpkg/", **header)
    # The URL beats everything, and under /p/ headers do not count at all.
    in_url = listed(proxy, f"p/{HOST},libc=glibc-2.28/simple/fitpkg/", **header)
    assert old_wheel in in_url and new_wheel not in in_url


ALPINE_PIP = "pip/24.0 " + json.dumps(
    {
        "installer": {"name": "pip", "version": "24.0"},
        "python": "3.11.7",
        "implementation": {"name": "CPython", "version": "3.11.7"},
        "distro": {"name": "Alpine Linux", "version": "3.20.3", "id": "alpine"},
        "system": {"name": "Linux", "release": "6.1"},
        "cpu": "x86_64",
    }
)


def test_the_default_fills_no_platform_fact_an_installer_leaves_open(
    upstream: Upstream, make_proxy: MakeProxy, fitpkg: dict[str, str]
) -> None:
    """pip on musl sends no libc at all: the default's glibc is not its libc."""
    proxy = make_proxy(upstream, default_profile="arch=x86_64,libc=glibc-2.28")
    musl_wheel = fitpkg["1.0-musllinux_1_2_x86_64"]
    assert musl_wheel not in listed(proxy, "simple/fitpkg/")  # nothing told: the default
    assert musl_wheel in listed(proxy, "simple/fitpkg/", **{"User-Agent": ALPINE_PIP})
    got = httpx.get(
        proxy.url + f"files/fitpkg/{musl_wheel}", headers={"User-Agent": ALPINE_PIP}, timeout=60
    )
    assert got.status_code == 200


@pytest.mark.parametrize(
    ("where", "value", "named"),
    [
        ("url", "libc=glibc-two", "libc"),
        ("url", "cuda=twelve", "cuda"),
        ("header", "python=three", "python"),
        ("header", "sm=8.x", "sm"),
        ("user_data", "cuda=12.x", "cuda"),
        ("user_data", "libc=glibc-two", "libc"),
    ],
)
@pytest.mark.parametrize("route", ["simple/fitpkg/", "simple/", "files/fitpkg/{wheel}.metadata"])
def test_malformed_profile_is_400_naming_it(
    upstream: Upstream, make_proxy: MakeProxy, fitpkg: dict[str, str], where: str, value: str,
    named: str, route: str,
) -> None:  # fmt: skip
    """On every route that answers for a host: the project list and a wheel's metadata
    are every host's, but a profile that says nothing sure is refused there too."""
    proxy = make_proxy(upstream)
    path = route.format(wheel=fitpkg["1.0-manylinux_2_17_x86_64"])
    if where == "url":
        response = httpx.get(proxy.url + f"p/{value}/{path}")
    elif where == "header":
        response = httpx.get(proxy.url + path, headers={"X-Hostfit-Profile": value})
    else:
        response = httpx.get(proxy.url + path, headers={"User-Agent": pip_agent(user_data=value)})
    assert response.status_code == 400
    assert named in response.text and value.split("=")[1] in response.text
    if where == "user_data":
        assert "user_data" in response.text


@pytest.mark.parametrize(
    "agent",
    [
        "pip/24.0 {not json",
        "pip/24.0 " + "x" * 20000,
        "uv/0.5 []",
        'pip/24.0 {"cpu": 5, "distro": {"libc": "glibc"}}',
        "",
    ],
)
def test_malformed_user_agent_is_ignored(
    upstream: Upstream, make_proxy: MakeProxy, fitpkg: dict[str, str], agent: str
) -> None:
    proxy = make_proxy(upstream)
    assert listed(proxy, "simple/fitpkg/", **{"User-Agent": agent}) == set(fitpkg.values())


@pytest.mark.parametrize(
    ("subcommand", "universal"),
    [
        (("lock",), True),
        (("pip", "compile"), True),
        (("sync",), True),
        (("run",), True),
        (("version",), True),  # uv version --bump locks, then syncs
        (("check",), True),
        (("audit",), True),
        (("upgrade",), True),
        (("pip", "install"), False),
        (("tool", "install"), False),
        (("uvx",), False),
        (("venv",), False),
        (("build",), False),
    ],
)
def test_lockers_get_the_universal_view(
    upstream: Upstream,
    make_proxy: MakeProxy,
    fitpkg: dict[str, str],
    subcommand: tuple[str, ...],
    universal: bool,
) -> None:
    proxy = make_proxy(upstream, default_profile="libc=glibc-2.28")
    seen = listed(proxy, "simple/fitpkg/", **{"User-Agent": uv_agent(*subcommand)})
    assert (seen == set(fitpkg.values())) is universal


@pytest.mark.parametrize("subcommand", [("sync",), ("add",), ("remove",), ("run",), ("lock",)])
def test_what_lockers_download_is_judged_for_the_host(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path, subcommand: tuple[str, ...]
) -> None:
    """The universal view is for the pages a lock is made from; ``uv sync`` (and ``add``,
    ``remove``) then installs what it locked into this host's environment, so the gate
    judges each wheel it downloads for this host."""
    tag = f"{CP}-manylinux_2_17_x86_64"
    wheel = extension_wheel("lockedext", "1.0", wheel_dir, tag=tag, extra_c=NEEDS_GLIBC_2_34)
    upstream.add("lockedext", wheel)
    proxy = make_proxy(upstream)
    old = {"User-Agent": uv_agent(*subcommand), "X-Hostfit-Profile": "libc=glibc-2.17"}
    assert listed(proxy, "simple/lockedext/", **old) == {wheel.name}  # the lock's view
    url = proxy.url + f"files/lockedext/{wheel.name}"
    with pytest.raises(httpx.RemoteProtocolError):  # no report yet: judged at its end, cut
        httpx.get(url, headers=old, timeout=60)
    refused = httpx.get(url, headers=old, timeout=60)
    assert refused.status_code == 403, refused.status_code
    assert "glibc: needs 2.34, host has 2.17" in refused.headers["x-hostfit-refused"]
    new = {"User-Agent": uv_agent(*subcommand), "X-Hostfit-Profile": "libc=glibc-2.36"}
    assert httpx.get(url, headers=new, timeout=60).content == wheel.read_bytes()


def test_what_uv_installs_from_a_lock_made_on_the_universal_view_is_judged_for_the_host(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path
) -> None:
    """A lock made against ``/universal/simple/`` holds ``/universal/files/`` URLs, and
    ``uv sync`` installs from them on every host: uv names the subcommand, so those are
    judged, as is every uv download but ``uv pip install``'s and ``uv pip sync``'s (which
    may be for another platform), pip's (which may be too) and mirrors' that tell
    nothing: those get the file as it is."""
    tag = f"{CP}-manylinux_2_17_x86_64"
    wheel = extension_wheel("ulocked", "1.0", wheel_dir, tag=tag, extra_c=NEEDS_GLIBC_2_34)
    upstream.add("ulocked", wheel)
    proxy = make_proxy(upstream)
    url = proxy.url + f"universal/files/ulocked/{wheel.name}"
    old = {"X-Hostfit-Profile": "libc=glibc-2.17"}
    # Each of these installs onto the machine uv runs on, as uv 0.13 names them: uvx,
    # uv venv --seed (pip, setuptools), uv build (the build requirements), uv version
    # --bump and uv check (which sync the project); any subcommand uv adds later; and the
    # lockers, which install an sdist's build requirements to read its metadata.
    installing = [("sync",), ("tool", "install"), ("tool", "run"), ("uvx",), ("venv",)]
    installing += [("build",), ("version",), ("check",), ("self", "someday")]
    installing += [("lock",), ("tree",), ("export",), ("audit",), ("pip", "compile")]
    for subcommand in installing:
        sync = {**old, "User-Agent": uv_agent(*subcommand)}
        if subcommand == ("sync",):
            with pytest.raises(httpx.RemoteProtocolError):  # no report yet: cut at its end
                httpx.get(url, headers=sync, timeout=60)
        refused = httpx.get(url, headers=sync, timeout=60)
        assert refused.status_code == 403, (subcommand, refused.status_code)
        assert "glibc: needs 2.34, host has 2.17" in refused.headers["x-hostfit-refused"]
    # uv pip install may be installing for another platform (--python-platform --target);
    # a uv that names no subcommand tells nothing.
    others = [uv_agent(*s) for s in ((), ("pip", "install"), ("pip", "sync"))]
    for agent in (*others, pip_agent(), "curl/8"):
        got = httpx.get(url, headers={**old, "User-Agent": agent}, timeout=60)
        assert got.status_code == 200 and got.content == wheel.read_bytes(), agent
    new = {"User-Agent": uv_agent("sync"), "X-Hostfit-Profile": "libc=glibc-2.36"}
    fits = httpx.get(url, headers=new, timeout=60)
    assert fits.content == wheel.read_bytes()
    assert fits.headers["vary"] == "User-Agent, X-Hostfit-Profile"  # not for every host


def test_vary_and_etags_per_host_class(
    upstream: Upstream, make_proxy: MakeProxy, fitpkg: dict[str, str]
) -> None:
    proxy = make_proxy(upstream)
    plain = httpx.get(proxy.url + "simple/fitpkg/")
    assert plain.headers["vary"] == "Accept, Accept-Encoding, User-Agent, X-Hostfit-Profile"
    in_url = httpx.get(proxy.url + f"p/{HOST},libc=glibc-2.28/simple/fitpkg/")
    assert in_url.headers["vary"] == "Accept, Accept-Encoding"
    assert httpx.get(proxy.url + "universal/simple/fitpkg/").headers["vary"] == (
        "Accept, Accept-Encoding"
    )
    other = httpx.get(proxy.url + f"p/{HOST},libc=glibc-2.36/simple/fitpkg/")
    assert in_url.headers["etag"] != other.headers["etag"]
    # Hosts that keep the same files share one rendering, hence one ETag.
    same = httpx.get(proxy.url + f"p/{HOST},libc=glibc-2.29/simple/fitpkg/")
    assert same.headers["etag"] == in_url.headers["etag"]


def variant_wheels(upstream: Upstream, wheel_dir: Path) -> dict[str, str]:
    names = {}
    for label in ("cu118", "cu121", "cu126", "cpu"):
        spec = WheelSpec("torchy", f"2.5.1+{label}", tag=f"{CP}-manylinux_2_17_x86_64")
        wheel = build_wheel(spec, wheel_dir)
        upstream.add("torchy", wheel)
        names[label] = wheel.name
    return names


@pytest.mark.parametrize(
    ("cuda", "expected"),
    [("12.4", "cu121"), ("12.6", "cu126"), ("13.0", "cu126"), ("11.8", "cu118"),
     ("none", "cpu"), ("11.2", "cpu")],
)  # fmt: skip
def test_best_variant_for_the_driver(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path, cuda: str, expected: str
) -> None:
    names = variant_wheels(upstream, wheel_dir)
    proxy = make_proxy(upstream)
    assert listed(proxy, f"p/cuda={cuda}/simple/torchy/") == {names[expected]}


def test_variants_untouched_when_cuda_unknown(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path
) -> None:
    names = variant_wheels(upstream, wheel_dir)
    proxy = make_proxy(upstream)
    assert listed(proxy, f"p/{HOST},libc=glibc-2.36/simple/torchy/") == set(names.values())


def test_explain_route_json_and_html(
    upstream: Upstream, make_proxy: MakeProxy, fitpkg: dict[str, str]
) -> None:
    proxy = make_proxy(upstream)
    profile = f"{HOST},libc=glibc-2.28"
    data = httpx.get(
        proxy.url + "explain/fitpkg/", params={"profile": profile, "format": "json"}
    ).json()
    assert data["project"] == "fitpkg"
    assert data["sources"]["libc"] == "url"
    verdicts = {f["filename"]: f for f in data["files"]}
    assert len(verdicts) == len(fitpkg)
    hidden = verdicts[fitpkg["1.0-manylinux_2_34_x86_64"]]
    assert hidden["verdict"] == "hide"
    assert hidden["reasons"][0]["kind"] == "tags"
    assert "2.28" in hidden["reasons"][0]["message"] or "glibc" in hidden["reasons"][0]["message"]
    sdist = verdicts[fitpkg["2.0-sdist"]]
    assert sdist["verdict"] == "hide" and sdist["reasons"][0]["kind"] == "sdist"
    assert verdicts[fitpkg["1.0-manylinux_2_17_x86_64"]]["verdict"] == "keep"
    assert data["served"] == 2 and data["hidden"] == len(fitpkg) - 2

    page = httpx.get(proxy.url + "explain/fitpkg/", params={"profile": profile})
    assert page.headers["content-type"].startswith("text/html")
    assert fitpkg["2.0-sdist"] in page.text and "building from source" in page.text
    bad = httpx.get(proxy.url + "explain/fitpkg/", params={"profile": "libc=nope"})
    assert bad.status_code == 400
    # Accept is weighed by q-values, not searched for "html".
    for accept, media in (
        ("text/html;q=0, application/json", "application/json"),
        ("application/json, text/html;q=0.5", "application/json"),
        ("application/json;q=0.5, text/html", "text/html"),
        ("*/*", "text/html"),
    ):
        answer = httpx.get(
            proxy.url + "explain/fitpkg/", params={"profile": profile}, headers={"Accept": accept}
        )
        assert answer.headers["content-type"].startswith(media), accept
    # "sm=8.0+9.0" as typed in a URL: the query string makes the '+' a space.
    for path in ("explain/fitpkg/?format=json&", "ui/project/fitpkg/?"):
        typed = httpx.get(proxy.url + path + f"profile={profile},sm=8.0+9.0")
        assert typed.status_code == 200, (path, typed.text[:300])
    data = httpx.get(proxy.url + f"explain/fitpkg/?format=json&profile={profile},sm=8.0+9.0")
    assert "sm=8.0+9.0" in data.json()["profile"], data.json()["profile"]
    # Spaces around items, as a person types them and a form sends them, stay spaces.
    spaced = profile.replace(",", ", ") + ", sm=8.0+9.0"
    for path in ("explain/fitpkg/?format=json&profile=", "ui/project/fitpkg/?profile="):
        typed = httpx.get(proxy.url + path + spaced.replace(" ", "+"))
        assert typed.status_code == 200, (path, typed.text[:300])
    told = httpx.get(proxy.url + "explain/fitpkg/", params={"profile": spaced, "format": "json"})
    assert told.json()["sources"]["libc"] == "url" and "sm=8.0+9.0" in told.json()["profile"]


def test_explain_command(upstream: Upstream, fitpkg: dict[str, str], tmp_path: Path) -> None:
    import subprocess
    import sys

    command = [
        sys.executable, "-m", "proxy", "explain", "fitpkg", "--profile", f"{HOST},libc=musl-1.2",
        "--upstream", upstream.url, "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    text = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"2 served (0 not verified yet), {len(fitpkg) - 2} hidden" in text
    assert f"keep  {fitpkg['1.0-musllinux_1_2_x86_64']}" in text
    assert f"hide  {fitpkg['1.0-manylinux_2_17_x86_64']}" in text
    as_json = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    data = json.loads(as_json)
    kept = {f["filename"] for f in data["files"] if f["verdict"] == "keep"}
    assert kept == {fitpkg["1.0-musllinux_1_2_x86_64"], fitpkg["1.0-sdist"]}
