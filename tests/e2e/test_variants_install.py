"""PEP 825 variant wheels installed through `hostfit serve` by real installers.

- uv with ``--preview-features wheel-variants`` (uv 0.13.9, the version the tests install,
  reads ``variants.json`` and runs its vendored nvidia and x86_64 providers; the NVIDIA
  provider's test overrides stand in for a GPU) picks the variant its providers rank best,
  among those hostfit left for the host: hostfit's pruning and uv's choice agree.
- plain pip, and uv without the preview, get the best variant rewritten under a standard
  name where a ``[[best_variant]]`` rule asks for it, install it and import it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from proxy.probe.host import probe
from tests.edge.test_variants_serving import BUILDS, build_variants
from tests.support.clients import clean_env, new_venv, pip_install, python_output, uv_install
from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream
from tests.support.variant_wheels import build_variant_wheel
from tests.support.wheels import WheelSpec, build_wheel

pytestmark = pytest.mark.e2e
PREVIEW = ("--preview-features", "wheel-variants")
# What uv's x86_64 provider finds on this machine decides the CPU builds it may take.
ISA = probe().profile.isa
CPU_BUILD = "cpu_v3" if ISA is not None and ISA.value >= 3 else "null"


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    """Two proxies over one upstream: as configured out of the box, and with the rule."""
    work = tmp_path_factory.mktemp("variants")
    rules = work / "best.toml"
    rules.write_text('[[best_variant]]\nproject = "vpkg"\n\n[[best_variant]]\nproject = "vmark"\n')
    with Upstream() as upstream:
        for path in build_variants(work / "wheels").values():
            upstream.add("vpkg", path)
        # A variant whose dependencies say, with variant markers, which builds need them.
        needs_gpu = ['vmark-gpu; "nvidia" in variant_namespaces']
        for label, properties in (("cu128", BUILDS["cu128"]), ("null", {})):
            files = {"vmark/__init__.py": f"BUILD = {label!r}\n".encode()}
            spec = WheelSpec("vmark", "1.0", files=files, requires_dist=needs_gpu)
            upstream.add("vmark", build_variant_wheel(spec, label, properties, work / "marks"))
        upstream.add("vmark-gpu", build_wheel(WheelSpec("vmark-gpu", "1.0"), work / "marks"))
        with (
            ProxyProcess("--upstream", upstream.url, cache_dir=work / "plain") as plain,
            ProxyProcess(
                "--upstream", upstream.url, "--rules", str(rules), cache_dir=work / "rules"
            ) as ruled,
        ):
            yield plain, ruled


def gpu(cuda: str, sm: str, home: Path) -> dict[str, str]:
    """uv's NVIDIA provider told what to see (its documented overrides), on any machine."""
    return clean_env(
        home,
        NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION=cuda,
        NV_VARIANT_PROVIDER_FORCE_SM_ARCH=sm,
    )


def installed_build(python: Path) -> str:
    return python_output(python, "import vpkg; print(vpkg.BUILD)")


@pytest.mark.parametrize(
    ("route", "cuda", "sm", "build"),
    [
        # hostfit knows nothing of the GPU (uv's User-Agent does not say): uv chooses.
        ("simple/", "12.8", "9.0", "cu128"),
        ("simple/", "12.6", "8.6", "cu126"),
        ("simple/", "12.4", "6.1", CPU_BUILD),
        # The index URL carries the host's profile: what hostfit prunes, uv never sees,
        # even where its own provider would have taken it (a GPU build for a CPU host).
        ("p/cuda=12.4,sm=6.1/simple/", "12.8", "9.0", CPU_BUILD),
        ("p/cuda=12.8,sm=12.0/simple/", "12.8", "9.0", "cu128"),
    ],
)
def test_uv_with_the_preview_picks_the_right_variant(
    servers: tuple[ProxyProcess, ProxyProcess],
    tmp_path: Path,
    route: str,
    cuda: str,
    sm: str,
    build: str,
) -> None:
    plain, _ = servers
    python = new_venv(tmp_path / "venv")
    result = uv_install(python, plain.url + route, *PREVIEW, "vpkg", env=gpu(cuda, sm, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_build(python) == build


def test_uv_without_the_preview_ignores_variant_wheels(
    servers: tuple[ProxyProcess, ProxyProcess], tmp_path: Path
) -> None:
    plain, _ = servers
    python = new_venv(tmp_path / "venv")
    result = uv_install(python, plain.url + "simple/", "vpkg", env=gpu("12.8", "9.0", tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_build(python) == "plain"


def rewritten_ready(
    proxy: ProxyProcess, route: str, project: str = "vpkg", timeout: float = 60.0
) -> str:
    """The page's rewritten wheel, once made (rewrites are made in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        page = httpx.get(proxy.url + route + f"{project}/", headers={"Accept": JSON_V1}).json()
        names = [f["filename"] for f in page["files"] if ".hf" in f["filename"]]
        if names:
            (name,) = names
            return str(name)
        assert time.monotonic() < deadline, "the best variant was never rewritten"
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("profile", "build"),
    [
        ("cuda=12.8,sm=9.0", "cu128"),
        ("cuda=12.9,sm=6.1", "cu126"),
        (f"cuda=none,isa=x86-64-v{ISA.value if ISA else 1}", CPU_BUILD),
        ("cuda=none,isa=x86-64-v2", "null"),
    ],
)
def test_plain_pip_gets_the_rewritten_best_variant(
    servers: tuple[ProxyProcess, ProxyProcess], tmp_path: Path, profile: str, build: str
) -> None:
    _, ruled = servers
    route = f"p/{profile}/simple/"
    name = rewritten_ready(ruled, route)
    python = new_venv(tmp_path / "venv")
    result = pip_install(python, ruled.url + route, "vpkg", env=clean_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert name in result.stdout + result.stderr
    assert installed_build(python) == build


def test_uv_without_the_preview_gets_the_rewritten_best_variant_too(
    servers: tuple[ProxyProcess, ProxyProcess], tmp_path: Path
) -> None:
    _, ruled = servers
    route = "p/cuda=12.8,sm=9.0/simple/"
    rewritten_ready(ruled, route)
    python = new_venv(tmp_path / "venv")
    result = uv_install(python, ruled.url + route, "vpkg", env=gpu("12.8", "9.0", tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_build(python) == "cu128"


@pytest.mark.parametrize(
    ("profile", "build", "gpu_dependency"),
    [("cuda=12.8,sm=9.0", "cu128", True), ("cuda=none", "null", False)],
)
def test_plain_pip_gets_variant_markers_settled_for_the_host(
    servers: tuple[ProxyProcess, ProxyProcess],
    tmp_path: Path,
    profile: str,
    build: str,
    gpu_dependency: bool,
) -> None:
    _, ruled = servers
    route = f"p/{profile}/simple/"
    rewritten_ready(ruled, route, "vmark")
    python = new_venv(tmp_path / "venv")
    result = pip_install(python, ruled.url + route, "vmark", env=clean_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert python_output(python, "import vmark; print(vmark.BUILD)") == build
    found = python_output(
        python, "import importlib.util as u; print(bool(u.find_spec('vmark_gpu')))"
    )
    assert found == str(gpu_dependency)
