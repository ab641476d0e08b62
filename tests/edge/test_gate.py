"""The download gate and the page agree, for every kind of need: a known host is never
handed a wheel whose report says it will not load there, while a host it fits gets it.

Each case: the page (once settled) hides the wheel from the host that cannot load it,
a direct download by that host is refused with a 403 naming the need and the host
fact, and a host it fits is served the page entry and the bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from proxy.edge.config import Settings
from proxy.edge.request_profile import PROFILE_HEADER, VARY_HOST
from tests.analysis.test_native import pe
from tests.fixtures.elf.recipes import FixtureWheel, build_objects, build_wheels
from tests.support.cuda_wheels import CudaBuild, build_wheel_for
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import (
    NEEDS_GLIBC_2_34,
    WheelSpec,
    build_extension_module,
    build_wheel,
    extension_source,
    extension_wheel,
)

MakeProxy = Callable[..., ProxyThread]
HOST = "python=3.11,impl=cp,arch=x86_64"
CP = "cp311-cp311-manylinux_2_17_x86_64"


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FixtureWheel]:
    objects = build_objects(tmp_path_factory.mktemp("objects"))
    return build_wheels(objects, tmp_path_factory.mktemp("wheels"))


def settled_files(proxy: ProxyThread, project: str, profile: str) -> set[str]:
    deadline = time.monotonic() + 60
    while True:
        data = httpx.get(
            proxy.url + f"explain/{project}/", params={"profile": profile, "format": "json"}
        ).json()
        if data["frontier"]["settled"]:
            break
        assert time.monotonic() < deadline, data["frontier"]
        time.sleep(0.2)
    response = httpx.get(proxy.url + f"p/{profile}/simple/{project}/", headers={"Accept": JSON_V1})
    assert response.status_code == 200
    return {f["filename"] for f in response.json()["files"]}


def listed_files(proxy: ProxyThread, project: str, profile: str) -> set[str]:
    """The page as it is now, settled or not."""
    response = httpx.get(proxy.url + f"p/{profile}/simple/{project}/", headers={"Accept": JSON_V1})
    assert response.status_code == 200
    return {f["filename"] for f in response.json()["files"]}


def download(proxy: ProxyThread, profile: str, project: str, filename: str) -> httpx.Response:
    return httpx.get(proxy.url + f"p/{profile}/files/{project}/{filename}", timeout=60)


@pytest.mark.parametrize(
    ("key", "unfit", "fit", "need"),
    [
        (
            "cuda",
            f"{HOST},libc=glibc-2.36,cuda=11.8",
            f"{HOST},libc=glibc-2.36,cuda=12.4",
            "cuda: needs CUDA 12, host driver supports 11.8",
        ),
        (
            "cuda",
            f"{HOST},libc=glibc-2.36,cuda=none",
            f"{HOST},libc=glibc-2.36,cuda=12.0",
            "cuda: needs CUDA 12, host has no NVIDIA driver",
        ),
        (
            "execstack",
            f"{HOST},libc=glibc-2.41",
            f"{HOST},libc=glibc-2.36",
            "execstack: needs an executable stack, which glibc 2.41 and newer refuse",
        ),
        (
            "fatbin",
            f"{HOST},libc=glibc-2.36,cuda=12.4,sm=7.5",
            f"{HOST},libc=glibc-2.36,cuda=12.4,sm=8.9",
            "sm: kernels for 8.0, 8.6, 9.0, PTX 9.0; host GPUs are 7.5",
        ),
    ],
)
def test_page_and_gate_agree(
    upstream: Upstream,
    make_proxy: MakeProxy,
    fixtures: dict[str, FixtureWheel],
    key: str,
    unfit: str,
    fit: str,
    need: str,
) -> None:
    wheel = fixtures[key].path
    project = wheel.name.split("-")[0].replace("_", "-")
    upstream.add(project, wheel)
    proxy = make_proxy(upstream)
    assert settled_files(proxy, project, unfit) == set()
    refused = download(proxy, unfit, project, wheel.name)
    assert refused.status_code == 403
    assert need in refused.text and need in refused.headers["x-hostfit-refused"]
    assert wheel.name in refused.text
    assert refused.headers["cache-control"] == "no-store" and "vary" not in refused.headers
    told = httpx.get(
        proxy.url + f"files/{project}/{wheel.name}", headers={PROFILE_HEADER: unfit}, timeout=60
    )
    assert told.status_code == 403 and need in told.headers["x-hostfit-refused"]
    # The host was told by headers: a shared cache keys this answer by them, if it keeps it.
    assert told.headers["cache-control"] == "no-store" and told.headers["vary"] == VARY_HOST
    assert settled_files(proxy, project, fit) == {wheel.name}
    served = download(proxy, fit, project, wheel.name)
    assert served.status_code == 200 and served.content == wheel.read_bytes()


def test_torchs_cuda_builds_reach_a_host_without_a_driver(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """A shipped project fact says torch's CUDA builds run on the CPU when there is no
    driver: a cuda=none host is offered one and served it; a host whose driver is too
    old for its CUDA major is not, and another project's CUDA build stays hidden from a
    host without a driver."""
    cuda12 = CudaBuild("cu126", cuda_major=12)
    torch = build_wheel_for("torch", "2.2", cuda12, tmp_path / "torch", tag=CP, local=False)
    other = build_wheel_for("gpulib", "2.0", cuda12, tmp_path / "gpulib", tag=CP, local=False)
    upstream.add("torch", torch)
    upstream.add("gpulib", other)
    proxy = make_proxy(upstream)
    no_driver = f"{HOST},libc=glibc-2.36,cuda=none"
    old_driver = f"{HOST},libc=glibc-2.36,cuda=11.8"
    assert settled_files(proxy, "torch", no_driver) == {torch.name}
    served = download(proxy, no_driver, "torch", torch.name)
    assert served.status_code == 200 and served.content == torch.read_bytes()
    assert settled_files(proxy, "torch", old_driver) == set()
    refused = download(proxy, old_driver, "torch", torch.name)
    assert refused.status_code == 403
    assert "cuda: needs CUDA 12, host driver supports 11.8" in refused.text
    assert settled_files(proxy, "gpulib", no_driver) == set()
    refused = download(proxy, no_driver, "gpulib", other.name)
    assert refused.status_code == 403
    assert "cuda: needs CUDA 12, host has no NVIDIA driver" in refused.text


def test_a_wheel_a_project_fact_rules_out_is_refused_before_any_byte(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path
) -> None:
    """A shipped fact says cupy-cuda12x needs CUDA 12: a host without a driver asking for
    it by name is refused at once, with the fact, before the wheel is fetched or
    analysed (not cut short after its bytes but the last)."""
    wheel = build_wheel(
        WheelSpec("cupy_cuda12x", "14.0", files={"cupy/__init__.py": b""}, tag=CP), wheel_dir
    )
    upstream.add("cupy-cuda12x", wheel)
    proxy = make_proxy(upstream)
    for told in ({"X-Hostfit-Profile": f"{HOST},libc=glibc-2.36,cuda=none"}, {}):
        url = proxy.url + f"files/cupy-cuda12x/{wheel.name}"
        if not told:
            url = proxy.url + f"p/{HOST},libc=glibc-2.36,cuda=none/files/cupy-cuda12x/{wheel.name}"
        refused = httpx.get(url, headers=told, timeout=60)
        assert refused.status_code == 403, refused.status_code
        assert (
            "cuda: needs CUDA 12, host has no NVIDIA driver" in refused.headers["x-hostfit-refused"]
        )
        assert "fact" in refused.text
    assert upstream.count("GET", wheel.name) == 0
    served = download(proxy, f"{HOST},libc=glibc-2.36,cuda=12.4", "cupy-cuda12x", wheel.name)
    assert served.status_code == 200 and served.content == wheel.read_bytes()


def test_a_wheel_that_links_the_driver_is_kept_from_a_host_without_one(
    upstream: Upstream, make_proxy: MakeProxy, fixtures: dict[str, FixtureWheel]
) -> None:
    """An extension module linked against libcuda.so.1 fails to import where no NVIDIA
    driver is installed; a library that links it but that only dlopen opens does not."""
    driver, dlopened = fixtures["driver"].path, fixtures["driver-dlopened"].path
    upstream.add("fx-driver", driver)
    upstream.add("fx-dlopened", dlopened)
    proxy = make_proxy(upstream)
    no_driver = f"{HOST},libc=glibc-2.36,cuda=none"
    with_driver = f"{HOST},libc=glibc-2.36,cuda=12.4"
    assert settled_files(proxy, "fx-driver", no_driver) == set()
    refused = download(proxy, no_driver, "fx-driver", driver.name)
    assert refused.status_code == 403
    assert "cuda: loads libcuda.so.1, host has no NVIDIA driver" in refused.text
    assert settled_files(proxy, "fx-driver", with_driver) == {driver.name}
    assert download(proxy, with_driver, "fx-driver", driver.name).status_code == 200
    assert settled_files(proxy, "fx-dlopened", no_driver) == {dlopened.name}
    assert download(proxy, no_driver, "fx-dlopened", dlopened.name).status_code == 200


def test_a_windows_only_pure_wheel_is_no_fallback(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """2.0 ships a Linux wheel that needs glibc 2.34 and a py3-none-any wheel whose only
    native file is a Windows DLL: a glibc 2.17 host gets 1.0, not the DLL wheel."""
    linux = extension_wheel(
        "dllpkg", "2.0", tmp_path, tag="cp311-cp311-manylinux_2_17_x86_64", extra_c=NEEDS_GLIBC_2_34
    )
    files = {"dllpkg/__init__.py": b"import ctypes\n", "dllpkg/native.dll": pe()}
    dll = build_wheel(WheelSpec("dllpkg", "2.0", files=files), tmp_path)
    older = build_wheel(WheelSpec("dllpkg", "1.0", files={"dllpkg/__init__.py": b""}), tmp_path)
    for wheel in (linux, dll, older):
        upstream.add("dllpkg", wheel)
    proxy = make_proxy(upstream)
    old = f"{HOST},libc=glibc-2.17"
    assert settled_files(proxy, "dllpkg", old) == {older.name}
    data = httpx.get(
        proxy.url + "explain/dllpkg/", params={"profile": old, "format": "json"}
    ).json()
    reasons = {f["filename"]: [r["kind"] for r in f["reasons"]] for f in data["files"]}
    assert reasons[dll.name] == ["native"]
    assert data["pip_would_install"] == {"filename": older.name, "verified": True}
    refused = download(proxy, old, "dllpkg", dll.name)
    assert refused.status_code == 403
    assert "carries binaries only for windows x86_64" in refused.text
    # A host whose Linux wheel fits takes that one; the DLL wheel is still no choice.
    assert settled_files(proxy, "dllpkg", f"{HOST},libc=glibc-2.36") == {linux.name, older.name}


def test_a_pure_wheel_the_gate_refused_leaves_the_page_for_an_older_version_that_fits(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """1.0's only wheel is py3-none-any but carries an extension that needs glibc 2.34;
    no Linux wheel in that version, so no walk reads it. The gate reads it when it is
    downloaded, and refuses it: from then on the page offers 0.9, which fits, and pip
    takes it, where the page went on offering 1.0 and pip failed on its 403."""
    so = build_extension_module(
        "purebin_native", extension_source("purebin_native", "1", NEEDS_GLIBC_2_34), tmp_path
    )
    older = build_wheel(WheelSpec("purebin", "0.9", files={"purebin/__init__.py": b""}), tmp_path)
    files = {"purebin/__init__.py": b"", f"purebin/{so.name}": so.read_bytes()}
    carrier = build_wheel(WheelSpec("purebin", "1.0", files=files), tmp_path)
    for wheel in (older, carrier):
        upstream.add("purebin", wheel)
    proxy = make_proxy(upstream)
    old = f"{HOST},libc=glibc-2.28"
    assert settled_files(proxy, "purebin", old) == {older.name, carrier.name}  # not known
    with pytest.raises(httpx.HTTPError):  # judged as its bytes go: the end withheld
        download(proxy, old, "purebin", carrier.name).raise_for_status()
    refused = download(proxy, old, "purebin", carrier.name)
    assert refused.status_code == 403 and "glibc: needs 2.34" in refused.text
    assert settled_files(proxy, "purebin", old) == {older.name}
    assert settled_files(proxy, "purebin", f"{HOST},libc=glibc-2.36") == {
        older.name,
        carrier.name,
    }


def test_a_report_from_lying_ranges_is_judged_again_from_the_checked_bytes(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """An upstream answers range requests with another wheel's bytes, which say the wheel
    needs nothing. The walk reads this small wheel whole and finds they are not its bytes:
    no report, the wheel listed by its tags meanwhile. The download checks its bytes, and
    the gate judges the report made from them: the misfit never arrives whole, the true
    report is kept."""
    misfit = extension_wheel("lying", "1.0", tmp_path, tag=CP, extra_c=NEEDS_GLIBC_2_34)
    decoy_dir = tmp_path / "decoy"
    decoy_dir.mkdir()
    decoy = build_wheel(WheelSpec("lying", "1.0", tag=CP), decoy_dir)
    assert decoy.name == misfit.name
    upstream.add("lying", misfit)
    upstream.range_lies[misfit.name] = decoy.read_bytes()
    # Read by URL, as a wheel over --analysis-download-max is.
    proxy = make_proxy(upstream, analysis_download_max=0)
    old = f"{HOST},libc=glibc-2.17"
    assert listed_files(proxy, "lying", old) == {misfit.name}  # the lie, not believed
    with pytest.raises(httpx.RemoteProtocolError):  # judged from its bytes at its end, cut
        download(proxy, old, "lying", misfit.name)
    refused = download(proxy, old, "lying", misfit.name)
    assert refused.status_code == 403
    assert "glibc: needs 2.34, host has 2.17" in refused.headers["x-hostfit-refused"]
    assert settled_files(proxy, "lying", old) == set()
    assert download(proxy, f"{HOST},libc=glibc-2.36", "lying", misfit.name).status_code == 200


@pytest.mark.parametrize("lie", ["another wheel", "an error page"])
def test_no_report_is_kept_from_bytes_that_are_not_the_wheels(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, lie: str
) -> None:
    """An upstream (or a cache before it) answers the walk's range reads with other bytes:
    a misfit wheel of the same name, or an error page. The report made of them was kept
    under the wheel's sha256, and the gate refused the fitting wheel at once ever after.
    Every byte of a small wheel is read, and checked: the analysis did not run, nothing is
    kept (the wheel is held back, 503, until it is tried again), and once the upstream
    answers true bytes the wheel is served."""
    fit = extension_wheel("honest", "1.0", tmp_path, tag=CP)
    other = tmp_path / "other"
    other.mkdir()
    if lie == "another wheel":
        decoy = extension_wheel("honest", "1.0", other, tag=CP, extra_c=NEEDS_GLIBC_2_34)
        upstream.range_lies[fit.name] = decoy.read_bytes()
    else:
        upstream.range_lies[fit.name] = b"<html>temporarily unavailable</html>" * 100
    upstream.add("honest", fit)
    proxy = make_proxy(upstream)
    old = f"{HOST},libc=glibc-2.17"
    httpx.get(proxy.url + f"p/{old}/simple/honest/")  # the walk reads it by URL
    deadline = time.monotonic() + 30
    while not upstream.count("GET", f"/{fit.name}"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)  # its analysis done
    upstream.range_lies.clear()
    got = download(proxy, old, "honest", fit.name)
    while got.status_code == 503:  # held back until the analysis is tried again
        assert time.monotonic() < deadline + 30, got.text
        time.sleep(min(float(got.headers["retry-after"]), 2.0))
        got = download(proxy, old, "honest", fit.name)
    assert got.status_code == 200 and got.content == fit.read_bytes()


def test_a_wheel_the_cache_cannot_take_is_not_judged_by_a_report_made_by_url(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """Larger than --cache-max-size, its bytes never reach the cache where they are
    checked: a lie by ranges (here caught, the wheel being small; in a big one it would
    not be) would have gone through. It is refused with a 503 that says why, before any
    byte leaves; a host given no profile still gets it."""
    misfit = extension_wheel("biglie", "1.0", tmp_path, tag=CP, extra_c=NEEDS_GLIBC_2_34)
    decoy_dir = tmp_path / "decoy"
    decoy_dir.mkdir()
    decoy = build_wheel(WheelSpec("biglie", "1.0", tag=CP), decoy_dir)
    upstream.add("biglie", misfit)
    upstream.range_lies[misfit.name] = decoy.read_bytes()
    proxy = make_proxy(upstream, cache_max_size=misfit.stat().st_size - 1)
    old = f"{HOST},libc=glibc-2.17"
    assert listed_files(proxy, "biglie", old) == {misfit.name}  # by its tags
    refused = download(proxy, old, "biglie", misfit.name)
    assert refused.status_code == 503
    assert "more than the file cache's budget (--cache-max-size" in refused.text
    plain = httpx.get(proxy.url + f"files/biglie/{misfit.name}", timeout=60)
    assert plain.content == misfit.read_bytes()
    # An HTML index gives no size: the cache says no as the download starts, and the
    # 503 comes all the same before any byte, not as a transfer cut at its end.
    upstream.formats = {"html"}
    html_only = make_proxy(upstream, cache_max_size=misfit.stat().st_size - 1)
    assert listed_files(html_only, "biglie", old) == {misfit.name}
    refused = download(html_only, old, "biglie", misfit.name)
    assert refused.status_code == 503 and "cannot be checked here" in refused.text
    assert "more than the cache budget" in refused.text


WINDOWS_PIP = (
    'pip/24.0 {"installer":{"name":"pip","version":"24.0"},"python":"3.11.7",'
    '"implementation":{"name":"CPython","version":"3.11.7"},'
    '"system":{"name":"Windows","release":"10"},"cpu":"AMD64"}'
)


def test_a_windows_client_gets_the_pure_wheel_whose_dll_is_its_own(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """The DLL wheel is no fallback for a Linux host, and the one wheel for Windows: a
    Windows pip is offered it and downloads it, even where the configured default
    describes the fleet's Linux hosts (an installer that names its system tells its own
    platform)."""
    linux = extension_wheel("winpkg", "2.0", tmp_path, tag=CP, extra_c=NEEDS_GLIBC_2_34)
    files = {"winpkg/__init__.py": b"import ctypes\n", "winpkg/native.dll": pe()}
    dll = build_wheel(WheelSpec("winpkg", "2.0", files=files), tmp_path)
    for wheel in (linux, dll):
        upstream.add("winpkg", wheel)
    proxy = make_proxy(upstream, default_profile="arch=x86_64,libc=glibc-2.17")
    linux_host = f"{HOST},libc=glibc-2.17"
    assert settled_files(proxy, "winpkg", linux_host) == set()
    assert download(proxy, linux_host, "winpkg", dll.name).status_code == 403
    windows = {"User-Agent": WINDOWS_PIP, "Accept": JSON_V1}
    page = httpx.get(proxy.url + "simple/winpkg/", headers=windows).json()
    assert {f["filename"] for f in page["files"]} == {linux.name, dll.name}
    got = httpx.get(proxy.url + f"files/winpkg/{dll.name}", headers=windows, timeout=60)
    assert got.status_code == 200 and got.content == dll.read_bytes()


def test_clients_that_tell_nothing_and_the_universal_view_are_not_gated(
    upstream: Upstream, make_proxy: MakeProxy, fixtures: dict[str, FixtureWheel]
) -> None:
    wheel = fixtures["execstack"].path
    upstream.add("fx-execstack", wheel)
    proxy = make_proxy(upstream)
    # No report and not cached yet: the bytes stream, and the transfer is cut short.
    with pytest.raises(httpx.RemoteProtocolError):
        download(proxy, f"{HOST},libc=glibc-2.41", "fx-execstack", wheel.name)
    assert download(proxy, f"{HOST},libc=glibc-2.41", "fx-execstack", wheel.name).status_code == 403
    for path in (f"files/fx-execstack/{wheel.name}", f"universal/files/fx-execstack/{wheel.name}"):
        response = httpx.get(proxy.url + path, headers={"User-Agent": "curl/8"})
        assert response.status_code == 200 and response.content == wheel.read_bytes()


def test_cheap_facts_hide_a_wheel_before_its_report(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """2.0 requires nvidia-cuda-runtime-cu12; once its metadata is held (a client read
    it), a CUDA 11.8 host no longer sees it, though its analysis is still crawling."""
    tag = "cp311-cp311-manylinux_2_17_x86_64"
    new = extension_wheel(
        "cheapcuda", "2.0", tmp_path, tag=tag, requires_dist=["nvidia-cuda-runtime-cu12==12.4.*"]
    )
    old = extension_wheel("cheapcuda", "1.0", tmp_path, tag=tag)
    for wheel in (new, old):
        upstream.add("cheapcuda", wheel)
    upstream.slow_files[new.name] = 30.0  # its analysis will not finish in this test
    proxy = make_proxy(upstream, analysis_budget=0.0)
    host = f"{HOST},libc=glibc-2.36,cuda=11.8"
    page = f"p/{host}/simple/cheapcuda/"
    assert httpx.get(proxy.url + f"p/{host}/files/cheapcuda/{new.name}.metadata").status_code == 200
    response = httpx.get(proxy.url + page, headers={"Accept": JSON_V1})
    assert {f["filename"] for f in response.json()["files"]} == {old.name}
    data = httpx.get(
        proxy.url + "explain/cheapcuda/", params={"profile": host, "format": "json"}
    ).json()
    (entry,) = [f for f in data["files"] if f["filename"] == new.name]
    assert entry["report"] is None
    assert entry["reasons"] == [
        {
            "kind": "cuda",
            "message": "cuda: needs CUDA 12, host driver supports 11.8"
            " (from Requires-Dist nvidia-cuda-runtime-cu12; not analysed yet)",
        }
    ]
    # A host with a CUDA 12 driver is not affected by the cheap fact.
    response = httpx.get(
        proxy.url + f"p/{HOST},libc=glibc-2.36,cuda=12.4/simple/cheapcuda/",
        headers={"Accept": JSON_V1},
    )
    assert {f["filename"] for f in response.json()["files"]} == {old.name, new.name}


def test_a_host_without_a_driver_gets_a_wheel_its_metadata_ties_to_cuda_but_runs_on_the_cpu(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """xgboost 2's shape: it requires nvidia-nccl-cu12, and its binaries need no CUDA. A
    host without a driver was kept from it by that metadata, before its report, and the
    walk never read it: hidden for good, an older version served as settled. Its report
    now decides, as for any wheel, and keeps it."""
    tag = "cp311-cp311-manylinux_2_17_x86_64"
    new = extension_wheel("xgbish", "2.0", tmp_path, tag=tag, requires_dist=["nvidia-nccl-cu12"])
    old = extension_wheel("xgbish", "1.7", tmp_path, tag=tag)
    for wheel in (new, old):
        upstream.add("xgbish", wheel)
    proxy = make_proxy(upstream)
    cpu = f"{HOST},libc=glibc-2.36,cuda=none"
    assert httpx.get(proxy.url + f"files/xgbish/{new.name}.metadata").status_code == 200
    assert settled_files(proxy, "xgbish", cpu) == {new.name, old.name}
    assert download(proxy, cpu, "xgbish", new.name).status_code == 200


def test_a_refused_host_class_is_linked_from_the_wheel_view(
    upstream: Upstream, make_proxy: MakeProxy, fixtures: dict[str, FixtureWheel]
) -> None:
    wheel = fixtures["execstack"].path
    upstream.add("fx-execstack", wheel)
    proxy = make_proxy(upstream)
    host = f"{HOST},libc=glibc-2.41"
    settled_files(proxy, "fx-execstack", host)
    assert download(proxy, host, "fx-execstack", wheel.name).status_code == 403
    sha256 = upstream.files("fx-execstack")[0].sha256
    view = httpx.get(proxy.url + f"ui/wheel/{sha256}/")
    assert view.status_code == 200
    assert "libc=glibc-2.41" in view.text
    assert "made" in view.text and "not recorded" not in view.text  # when the report was made


def test_a_newer_minor_build_is_served_from_sass_and_refused_where_it_needs_ptx_jit(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """``+cu128`` with SASS and PTX for 8.0, on CUDA 12.4 drivers: minor version
    compatibility runs its SASS on an 8.6 GPU, but a 9.0 GPU would need its PTX, which a
    driver older than the toolkit refuses; a 12.8 driver JIT-compiles it."""
    build = CudaBuild("cu128", 12, (80,), (80,))
    wheel = build_wheel_for("kernels", "1.0", build, tmp_path, tag=CP)
    upstream.add("kernels", wheel)
    proxy = make_proxy(upstream)
    jit = f"{HOST},libc=glibc-2.36,cuda=12.4,sm=9.0"
    assert settled_files(proxy, "kernels", jit) == set()
    refused = download(proxy, jit, "kernels", wheel.name)
    assert refused.status_code == 403
    need = (
        "cuda: built with CUDA 12.8 (+cu128), host driver supports 12.4 (minor version"
        " compatibility: PTX from a newer toolkit is not JIT-compiled); kernels for 8.0,"
        " PTX 8.0: host GPUs 9.0 only through PTX"
    )
    assert need in refused.text and need in refused.headers["x-hostfit-refused"]
    for fit in ("cuda=12.4,sm=8.6", "cuda=12.8,sm=9.0", "cuda=12.4,sm=8.6+9.0"):
        host = f"{HOST},libc=glibc-2.36,{fit}"
        assert settled_files(proxy, "kernels", host) == {wheel.name}, fit
        served = download(proxy, host, "kernels", wheel.name)
        assert served.status_code == 200 and served.content == wheel.read_bytes()


def test_a_wheel_whose_bytes_cannot_be_read_is_kept_from_hosts_that_say_what_they_are(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """A member that claims to be ELF but is cut in half makes the wheel unanalysable:
    nothing vouches for its binaries (its real extension needs GLIBC 2.34 here), so a
    host that told its profile is not handed it, and is told why; the universal view
    and clients that tell nothing still get it."""
    tag = "cp311-cp311-manylinux_2_17_x86_64"
    built = extension_wheel("cutelf", "1.0", tmp_path / "built", tag=tag, extra_c=NEEDS_GLIBC_2_34)
    with zipfile.ZipFile(built) as source:
        members = {i.filename: source.read(i) for i in source.infolist()}
    elf = next(data for name, data in members.items() if name.endswith(".so"))
    spec = WheelSpec(
        "cutelf", "1.0", tag=tag, files={"cutelf_fixtures/half.so": elf[: len(elf) // 2]}
    )
    spec.files.update({n: d for n, d in members.items() if ".dist-info/" not in n})
    wheel = build_wheel(spec, tmp_path)
    upstream.add("cutelf", wheel)
    proxy = make_proxy(upstream)
    host = f"{HOST},libc=glibc-2.17"
    assert settled_files(proxy, "cutelf", host) == set()
    data = httpx.get(
        proxy.url + "explain/cutelf/", params={"profile": host, "format": "json"}
    ).json()
    (entry,) = data["files"]
    assert [r["kind"] for r in entry["reasons"]] == ["unanalysable"]
    refused = download(proxy, host, "cutelf", wheel.name)
    assert refused.status_code == 403
    assert "unanalysable: " in refused.headers["x-hostfit-refused"]
    for path in (f"files/cutelf/{wheel.name}", f"universal/files/cutelf/{wheel.name}"):
        response = httpx.get(proxy.url + path, headers={"User-Agent": "curl/8"})
        assert response.status_code == 200 and response.content == wheel.read_bytes()


@pytest.mark.parametrize("damage", ["truncate", "flip", "another wheel"])
def test_a_cached_file_damaged_on_disk_is_downloaded_again_and_judged_from_true_bytes(
    upstream: Upstream, tmp_path: Path, damage: str
) -> None:
    """The cache volume outlives the state (Redis flushed, a new host) and a file in it
    changed meanwhile: cut short, a byte flipped, or another wheel's bytes under the
    misfit's name. A process that did not write it hashes it before it serves or
    analyses it: it is removed and downloaded again, never served, and no report is made
    of its bytes (the misfit is refused, not served whole once the bad file is gone)."""
    misfit = extension_wheel(
        "damaged", "2.0", tmp_path / "misfit", tag=CP, extra_c=NEEDS_GLIBC_2_34
    )
    fit = extension_wheel("damaged", "1.0", tmp_path / "fit", tag=CP)
    for wheel in (misfit, fit):
        upstream.add("damaged", wheel)
    cache = tmp_path / "cache"
    settings = Settings(upstreams=(upstream.url,), cache_dir=cache)
    with ProxyThread(settings) as first:
        for wheel in (misfit, fit):
            got = httpx.get(first.url + f"universal/files/damaged/{wheel.name}", timeout=60)
            assert got.content == wheel.read_bytes()
    blob = cache / "files" / "sha256" / sha256_of(misfit)[:2] / sha256_of(misfit)
    data = blob.read_bytes()
    if damage == "truncate":
        blob.write_bytes(data[:-500])
    elif damage == "flip":
        blob.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:
        blob.write_bytes(fit.read_bytes())
    shutil.rmtree(cache / "state")
    old = f"{HOST},libc=glibc-2.17"
    with ProxyThread(settings) as second:
        try:
            answer = download(second, old, "damaged", misfit.name)
            assert answer.status_code == 403, answer.status_code
        except httpx.RemoteProtocolError:
            pass  # judged at its end from the bytes downloaded again: cut short
        refused = download(second, old, "damaged", misfit.name)
        assert refused.status_code == 403
        assert "glibc: needs 2.34, host has 2.17" in refused.headers["x-hostfit-refused"]
        whole = httpx.get(second.url + f"universal/files/damaged/{misfit.name}", timeout=60)
        assert whole.content == misfit.read_bytes()
        assert download(second, old, "damaged", fit.name).content == fit.read_bytes()
    assert upstream.count("GET", misfit.name) == 2  # once for each cache's true bytes
    assert upstream.count("GET", fit.name) == 1


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
