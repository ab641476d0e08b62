"""pip and uv install through a running `hostfit serve`, and what they install imports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import clean_env, new_venv, pip_install, python_output, uv_install
from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_sdist, build_wheel, extension_wheel

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, ProxyProcess]]:
    work = tmp_path_factory.mktemp("e2e")
    with Upstream() as upstream:
        upstream.add("fast-ext", extension_wheel("fast-ext", "1.0", work, value="compiled-1.0"))
        upstream.add("fast-ext", extension_wheel("fast-ext", "2.0", work, value="compiled-2.0"))
        upstream.add("fast-ext", build_sdist("fast-ext", "2.0", work))
        upstream.add(
            "app-pkg",
            build_wheel(
                WheelSpec(
                    "App_Pkg",
                    "0.5",
                    files={"app_pkg/__init__.py": b"import fast_ext\nVALUE = fast_ext.answer()\n"},
                    requires_dist=["fast-ext>=2"],
                ),
                work,
            ),
        )
        with ProxyProcess("--upstream", upstream.url, cache_dir=work / "cache") as proxy:
            yield upstream, proxy


@pytest.mark.parametrize("installer", [pip_install, uv_install], ids=["pip", "uv"])
@pytest.mark.parametrize("route", ["simple/", "universal/simple/"])
def test_install_and_import(
    served: tuple[Upstream, ProxyProcess], tmp_path: Path, installer: object, route: str
) -> None:
    _, proxy = served
    python = new_venv(tmp_path / "venv")
    env = clean_env(tmp_path)
    result = installer(python, proxy.url + route, "app-pkg", env=env)  # type: ignore[operator]
    assert result.returncode == 0, result.stdout + result.stderr
    assert python_output(python, "import app_pkg; print(app_pkg.VALUE)") == "compiled-2.0"


def test_pip_require_hashes_with_hashes_from_the_page(
    served: tuple[Upstream, ProxyProcess], tmp_path: Path
) -> None:
    upstream, proxy = served
    (item,) = [f for f in upstream.files("fast-ext") if f.filename.startswith("fast_ext-1.0")]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"fast-ext==1.0 --hash=sha256:{item.sha256}\n")
    python = new_venv(tmp_path / "venv")
    result = pip_install(
        python, proxy.url + "simple/", "--require-hashes", "-r", str(requirements),
        env=clean_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert python_output(python, "import fast_ext; print(fast_ext.answer())") == "compiled-1.0"
