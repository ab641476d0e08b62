"""Routes and build families through a running hostfit, against real local upstreams."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from proxy.edge.upstreams_config import UpstreamTable
from tests.support.cuda_wheels import CudaBuild, build_wheel_for
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

MakeProxy = Callable[..., ProxyThread]
CP = "cp311-cp311-manylinux_2_17_x86_64"
HOST = "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.36"
TORCH = ["torch", "nvidia-*"]
BUILDS = (
    CudaBuild("cu126", 12, (50, 60, 70, 75, 80, 86, 90), (90,)),
    CudaBuild("cu128", 12, (75, 80, 86, 90, 100, 120), (120,)),
    CudaBuild("cu118", 11, (37, 50, 60, 61, 70, 75, 80, 86, 90), (90,)),
    CudaBuild("cpu"),
)


def files_of(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {f["filename"] for f in response.json()["files"]}


def get(proxy: ProxyThread, path: str) -> httpx.Response:
    return httpx.get(proxy.url + path, headers={"Accept": JSON_V1}, timeout=120)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Upstream, Upstream, dict[str, str]]]:
    """A CUDA index that also lists numpy, and a default index that also lists torch."""
    names = {}
    with Upstream() as cuda, Upstream() as default:
        for where, up in (("cuda", cuda), ("default", default)):
            spec = WheelSpec("numpy", "2.0", files={"numpy/__init__.py": f"W='{where}'\n".encode()})
            up.add("numpy", build_wheel(spec, tmp_path / where))
            names[f"numpy-{where}"] = spec.filename
        torch = build_wheel(WheelSpec("torch", "2.7.0+cu126", tag=CP), tmp_path / "cuda")
        cuda.add("torch", torch)
        names["torch-cuda"] = torch.name
        impostor = build_wheel(WheelSpec("torch", "99.0"), tmp_path / "default")
        default.add("torch", impostor)
        names["torch-default"] = impostor.name
        default.add("requests", build_wheel(WheelSpec("requests", "2.0"), tmp_path / "default"))
        yield cuda, default, names


def routed(make_proxy: MakeProxy, cuda: Upstream, default: Upstream) -> ProxyThread:
    return make_proxy(
        cuda,
        default,
        upstream_tables=(UpstreamTable(cuda.url, projects=tuple(TORCH)),),
    )


def test_a_routed_project_comes_only_from_its_upstream(
    two: tuple[Upstream, Upstream, dict[str, str]], make_proxy: MakeProxy
) -> None:
    cuda, default, names = two
    proxy = routed(make_proxy, cuda, default)
    numpy = get(proxy, "simple/numpy/")
    # numpy from the default index, though the CUDA index, listed first, has it too.
    assert files_of(numpy) == {names["numpy-default"]}
    assert numpy.headers["x-hostfit-upstream"] == default.url
    assert cuda.count("GET", "/simple/numpy/") == 0
    torch = get(proxy, "universal/simple/torch/")
    assert files_of(torch) == {names["torch-cuda"]}
    assert torch.headers["x-hostfit-upstream"] == cuda.url
    assert files_of(get(proxy, f"p/{HOST}/simple/torch/")) == {names["torch-cuda"]}
    assert default.count("GET", "/simple/torch/") == 0
    root = httpx.get(proxy.url + "simple/", headers={"Accept": JSON_V1}).json()
    assert sorted(p["name"] for p in root["projects"]) == ["numpy", "requests", "torch"]
    # explain says where the page came from
    explained = httpx.get(
        proxy.url + "explain/numpy/", params={"profile": HOST, "format": "json"}
    ).json()
    assert explained["upstream"] == default.url


def test_routes_hold_while_the_other_upstream_fails(
    two: tuple[Upstream, Upstream, dict[str, str]], make_proxy: MakeProxy
) -> None:
    cuda, default, names = two
    default.down = True
    proxy = routed(make_proxy, cuda, default)
    assert files_of(get(proxy, "simple/torch/")) == {names["torch-cuda"]}
    assert get(proxy, "simple/numpy/").status_code == 502
    default.down, cuda.down = False, True
    proxy = routed(make_proxy, cuda, default)
    assert files_of(get(proxy, "simple/numpy/")) == {names["numpy-default"]}
    failed = get(proxy, "simple/torch/")
    # The owner failing is the answer: the default index's torch is never asked for.
    assert failed.status_code == 502, failed.text
    assert cuda.url in failed.text
    assert default.count("GET", "/simple/torch/") == 0
    # The root list is short of the failing upstream's names, not a 502 for everyone.
    root = httpx.get(proxy.url + "simple/", headers={"Accept": JSON_V1})
    assert root.status_code == 200
    assert sorted(p["name"] for p in root.json()["projects"]) == ["numpy", "requests"]
    default.down = True
    kept = httpx.get(proxy.url + "simple/", headers={"Accept": JSON_V1})  # the list it had
    assert sorted(p["name"] for p in kept.json()["projects"]) == ["numpy", "requests"]
    fresh = routed(make_proxy, cuda, default)
    assert httpx.get(fresh.url + "simple/").status_code == 502  # none answers, none kept


def test_a_routed_project_its_upstream_lacks_is_not_found_elsewhere(
    two: tuple[Upstream, Upstream, dict[str, str]], make_proxy: MakeProxy, tmp_path: Path
) -> None:
    cuda, default, _ = two
    cudnn = build_wheel(WheelSpec("nvidia-cudnn-cu12", "9.0"), tmp_path / "cudnn")
    default.add("nvidia-cudnn-cu12", cudnn)
    proxy = routed(make_proxy, cuda, default)
    missing = get(proxy, "simple/nvidia-cudnn-cu12/")
    assert missing.status_code == 404
    assert "routed to" in missing.text and "nvidia-*" in missing.text
    assert default.count("GET", "/simple/nvidia-cudnn-cu12/") == 0


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    """One index per build (cu126 listed first: the family's default), and a default index."""
    out = tmp_path_factory.mktemp("family")
    ups = {b.label: Upstream() for b in BUILDS}
    ups["default"] = Upstream()
    for up in ups.values():
        up.start()
    try:
        for build in BUILDS:
            ups[build.label].add("torch", build_wheel_for("torch", "2.7.0", build, out, tag=CP))
        # the same dependency, byte for byte, on every index of the family
        shared = build_wheel(WheelSpec("nvidia-nccl-cu12", "2.21.5"), out / "shared")
        for label in ("cu126", "cu128"):
            ups[label].add("nvidia-nccl-cu12", shared)
        ups["default"].add("torch", build_wheel(WheelSpec("torch", "99.0"), out / "default"))
        yield ups
    finally:
        for up in ups.values():
            up.stop()


def family_tables(ups: dict[str, Upstream]) -> tuple[UpstreamTable, ...]:
    return tuple(
        UpstreamTable(ups[b.label].url, projects=tuple(TORCH), family="torch") for b in BUILDS
    )


def family_proxy(make_proxy: MakeProxy, ups: dict[str, Upstream]) -> ProxyThread:
    urls = [ups[b.label] for b in BUILDS] + [ups["default"]]
    return make_proxy(*urls, upstream_tables=family_tables(ups), analysis_budget=60.0)


def build_of(files: set[str]) -> set[str]:
    return {name.split("+")[1].split("-")[0] for name in files}


@pytest.mark.parametrize(
    ("profile", "build"),
    [
        ("cuda=12.4,sm=6.1", "cu118"),
        ("cuda=12.8,sm=6.1", "cu126"),  # cu128 starts at 7.5
        ("cuda=12.8,sm=9.0", "cu128"),
        ("cuda=none", "cpu"),
        ("cuda=11.8,sm=8.6", "cu118"),
        ("cuda=11.4,sm=8.6", "cu118"),  # minor version compatibility, from SASS 8.6
        ("cuda=11.0,sm=8.6", "cpu"),  # a driver for 11.0 may predate 11's floor (450.80.02)
        ("cuda=12.8", "cu128"),  # GPUs unknown: by CUDA alone
        ("sm=9.0", "cu126"),  # CUDA unknown: the family's first build
    ],
)
def test_a_family_serves_each_host_its_build(
    family: dict[str, Upstream], make_proxy: MakeProxy, profile: str, build: str
) -> None:
    proxy = family_proxy(make_proxy, family)
    page = get(proxy, f"p/{HOST},{profile}/simple/torch/")
    assert build_of(files_of(page)) == {build}
    assert page.headers["x-hostfit-upstream"] == "family torch: " + ", ".join(
        family[b.label].url for b in BUILDS
    )
    explained = httpx.get(
        proxy.url + "explain/torch/",
        params={"profile": f"{HOST},{profile}", "format": "json"},
        timeout=120,
    ).json()
    builds = {b["build"]: b for b in explained["builds"]}
    assert set(builds) == {b.label for b in BUILDS}
    assert [b for b, v in builds.items() if v["status"] == "chosen"] == [build]
    assert all(v["why"] for v in builds.values())
    assert builds[build]["upstreams"] == [family[build].url]
    assert explained["upstream"].startswith("family torch: ")


def test_the_universal_view_lists_every_build_and_shared_files_once(
    family: dict[str, Upstream], make_proxy: MakeProxy
) -> None:
    proxy = family_proxy(make_proxy, family)
    universal = get(proxy, "universal/simple/torch/")
    assert build_of(files_of(universal)) == {b.label for b in BUILDS}
    # PEP 700's versions: every member's, not only the first's
    assert universal.json()["versions"] == [
        "2.7.0+cpu", "2.7.0+cu118", "2.7.0+cu126", "2.7.0+cu128"
    ]  # fmt: skip
    assert files_of(get(proxy, "universal/simple/nvidia-nccl-cu12/")) == {
        "nvidia_nccl_cu12-2.21.5-py3-none-any.whl"
    }
    assert family["default"].count("GET", "/simple/torch/") == 0


def test_why_each_build_was_or_was_not_chosen(
    family: dict[str, Upstream], make_proxy: MakeProxy
) -> None:
    proxy = family_proxy(make_proxy, family)
    # A GTX 1080 Ti beside an H100: cu128 runs on the H100 only, cu126 on both.
    profile = f"{HOST},cuda=12.8,sm=6.1+9.0"
    # The page waits for the host's walk; explain tells where it stands.
    assert build_of(files_of(get(proxy, f"p/{profile}/simple/torch/"))) == {"cu126"}
    explained = httpx.get(
        proxy.url + "explain/torch/", params={"profile": profile, "format": "json"}, timeout=120
    ).json()
    builds = {b["build"]: b for b in explained["builds"]}
    assert builds["cu128"]["status"] == "set aside"
    assert builds["cu128"]["why"] == (
        "its GPU code (SASS 7.5, 8.0, 8.6, 9.0, 10.0, 12.0; PTX 12.0)"
        " does not run on the host's 6.1"
    )
    assert builds["cu126"]["why"] == (
        "newest build for a CUDA the driver supports (12.6 <= 12.8); its GPU code"
        " (SASS 5.0, 6.0, 7.0, 7.5, 8.0, 8.6, 9.0; PTX 9.0) runs on the host's 6.1, 9.0"
    )
    assert builds["cu118"]["why"] == "a newer build, +cu126, is chosen"
    assert builds["cpu"]["why"] == "a CUDA build, +cu126, runs on this host"
    hidden = [f for f in explained["files"] if f["verdict"] == "hide"]
    assert {r["kind"] for f in hidden for r in f["reasons"]} == {"build"}
    # A build the host's GPUs cannot run at all is hidden by its own sm check.
    explained = httpx.get(
        proxy.url + "explain/torch/",
        params={"profile": f"{HOST},cuda=12.8,sm=6.1", "format": "json"},
        timeout=120,
    ).json()
    cu128 = next(b for b in explained["builds"] if b["build"] == "cu128")
    assert cu128["status"] == "not offered"
    assert cu128["why"].startswith("hidden by its own checks: sm: kernels for 7.5")
    html = httpx.get(proxy.url + "explain/torch/", params={"profile": profile}).text
    assert "<h2>Builds</h2>" in html and "does not run on the host&#x27;s 6.1" in html


def test_a_failing_member_fails_the_family_page(
    family: dict[str, Upstream], make_proxy: MakeProxy
) -> None:
    proxy = family_proxy(make_proxy, family)
    family["cu128"].down = True
    try:
        failed = get(proxy, "p/cuda=12.8,sm=9.0/simple/torch/")
    finally:
        family["cu128"].down = False
    assert failed.status_code == 502
    assert family["cu128"].url in failed.text


def test_a_member_build_key_labels_files_without_a_local_version(
    tmp_path: Path, make_proxy: MakeProxy
) -> None:
    with Upstream() as cu126, Upstream() as cpu:
        cu126.add(
            "torch",
            build_wheel_for("torch", "2.7.0", BUILDS[0], tmp_path, tag=CP, local=False),
        )
        cpu.add("torch", build_wheel_for("torch", "2.7.0", BUILDS[3], tmp_path, tag=CP))
        tables = (
            UpstreamTable(cu126.url, projects=("torch",), family="torch", build="cu126"),
            UpstreamTable(cpu.url, projects=("torch",), family="torch"),
        )
        proxy = make_proxy(cu126, cpu, upstream_tables=tables, analysis_budget=60.0)
        gpu = files_of(get(proxy, f"p/{HOST},cuda=12.6,sm=8.0/simple/torch/"))
        assert gpu == {f"torch-2.7.0-{CP}.whl"}
        assert files_of(get(proxy, f"p/{HOST},cuda=none/simple/torch/")) == {
            f"torch-2.7.0+cpu-{CP}.whl"
        }


def test_a_member_build_key_reaches_the_gate(tmp_path: Path, make_proxy: MakeProxy) -> None:
    """A wheel whose version carries no label is judged by its member's ``build`` at the
    gate too: on a 12.4 driver, a cu128 build reaching a 9.0 GPU only through PTX."""
    kernels = CudaBuild("cu128", 12, (80,), (80,))
    with Upstream() as cu128, Upstream() as cpu:
        wheel = build_wheel_for("kernels", "1.0", kernels, tmp_path, tag=CP, local=False)
        cu128.add("kernels", wheel)
        cpu.add("kernels", build_wheel_for("kernels", "1.0", BUILDS[3], tmp_path, tag=CP))
        tables = (
            UpstreamTable(cu128.url, projects=("kernels",), family="k", build="cu128"),
            UpstreamTable(cpu.url, projects=("kernels",), family="k"),
        )
        proxy = make_proxy(cu128, cpu, upstream_tables=tables, analysis_budget=60.0)
        jit = f"{HOST},cuda=12.4,sm=9.0"
        assert files_of(get(proxy, f"p/{jit}/simple/kernels/")) == {f"kernels-1.0+cpu-{CP}.whl"}
        # The page's walk made the wheel's report, so the gate answers before any byte.
        refused = httpx.get(proxy.url + f"p/{jit}/files/kernels/{wheel.name}", timeout=60)
        assert refused.status_code == 403, refused.text
        assert "built with CUDA 12.8" in refused.headers["x-hostfit-refused"]
        fit = f"{HOST},cuda=12.8,sm=9.0"
        served = httpx.get(proxy.url + f"p/{fit}/files/kernels/{wheel.name}", timeout=60)
        assert served.status_code == 200 and served.content == wheel.read_bytes()


def test_admin_purges_reach_routed_upstreams(
    family: dict[str, Upstream], make_proxy: MakeProxy
) -> None:
    proxy = family_proxy(make_proxy, family)
    # One page cache per upstream, routed or not, found under the routes for purges.
    assert len(proxy.services.page_caches) == len(BUILDS) + 1
