"""What real uv installs onto its own machine through /universal/ is judged for it.

A lock made against ``/universal/simple/`` holds ``/universal/files/`` URLs, and uv
names its subcommand in its User-Agent. Every subcommand that installs here has its
downloads judged for this machine: ``uvx``, ``uv build`` (its build requirements), ``uv
version --bump`` (which syncs the project), and ``uv lock`` where it builds an sdist to
read its metadata (its build requirements go into an environment here). The wheel is one
this machine's loader refuses: its module is a position-independent executable, which
glibc 2.28 and newer (as distributions ship them) do not load. ``uv lock`` reads a
wheel's metadata from its ``.metadata``, never its bytes, and locks it all the same.
"""

from __future__ import annotations

import ctypes
import io
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import UV, clean_env, run
from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.wheels import WheelSpec, build_wheel, compile_shared_object

pytestmark = pytest.mark.e2e
PY = f"cp{sys.version_info.major}{sys.version_info.minor}"
MODULE = f"piecli/_ext.cpython-{PY[2:]}-x86_64-linux-gnu.so"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("uv-subcommands")
    source = "int PyInit__ext(void) { return 0; }\nvoid _start(void) {}\n"
    pie = compile_shared_object(source, work / "pie", kind="pie", flags=["-nostdlib"])
    with pytest.raises(OSError, match="position-independent executable"):
        ctypes.CDLL(str(pie))  # what an import of it would meet here
    files = {MODULE: pie.read_bytes(), "piecli/__init__.py": b"from piecli import _ext\n"}
    tag = f"{PY}-{PY}-manylinux_2_17_x86_64"
    wheel = build_wheel(WheelSpec("piecli", "1.0", tag=tag, files=files), work)
    with Upstream() as server:
        server.add("piecli", wheel)
        server.add("needsbuild", UpstreamFile("needsbuild-1.0.tar.gz", content=sdist()))
        yield server


def sdist() -> bytes:
    """needsbuild 1.0, an sdist built by piecli, with a dynamic version and dependencies
    and no PKG-INFO: a locker builds it for its metadata."""
    pyproject = (
        b'[project]\nname = "needsbuild"\ndynamic = ["version", "dependencies"]\n'
        b'[build-system]\nrequires = ["piecli"]\nbuild-backend = "piecli"\n'
    )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        member = tarfile.TarInfo("needsbuild-1.0/pyproject.toml")
        member.size = len(pyproject)
        tar.addfile(member, io.BytesIO(pyproject))
    return out.getvalue()


@pytest.fixture
def proxy(upstream: Upstream, tmp_path: Path) -> Iterator[ProxyProcess]:
    with ProxyProcess("--upstream", upstream.url, cache_dir=tmp_path / "cache") as server:
        yield server


def project(root: Path, *, build_requires: str | None = None, requires: str = "") -> Path:
    """A project; without ``build_requires`` a virtual one (nothing of its own to build)."""
    root.mkdir(parents=True)
    text = f'[project]\nname = "app"\nversion = "0.1"\ndependencies = [{requires}]\n'
    if build_requires is None:
        text += "[tool.uv]\npackage = false\n"
    else:
        text += f'[build-system]\nrequires = [{build_requires}]\nbuild-backend = "piecli"\n'
    (root / "pyproject.toml").write_text(text)
    return root


def uv(proxy: ProxyProcess, home: Path, *args: str, cwd: Path | None = None) -> str:
    """Real uv (``uvx`` for ``args[0] == "uvx"``) on the universal view; what it said."""
    env = clean_env(home, UV_PYTHON=sys.executable, UV_PYTHON_DOWNLOADS="never")
    where = ["--directory", str(cwd)] if cwd is not None else []
    program = [str(UV.with_name("uvx"))] if args[0] == "uvx" else [str(UV), args[0]]
    index = ["--index-url", proxy.url + "universal/simple/"]  # before uvx's tool: its own
    command = [*program, *where, *index, *args[1:]]
    done = run(command, env)
    return done.stdout + done.stderr + f"\n(exit {done.returncode})"


def refusals(proxy: ProxyProcess) -> int:
    return proxy.output().count("refused piecli-1.0")


@pytest.mark.parametrize("subcommand", ["uvx", "build", "version", "lock"])
def test_what_uv_installs_here_from_the_universal_view_is_judged_for_this_machine(
    proxy: ProxyProcess, tmp_path: Path, subcommand: str
) -> None:
    if subcommand == "uvx":
        said = uv(proxy, tmp_path, "uvx", "piecli")
    elif subcommand == "build":
        app = project(tmp_path / "app", build_requires='"piecli"')
        said = uv(proxy, tmp_path, "build", cwd=app)
    elif subcommand == "version":
        app = project(tmp_path / "app", requires='"piecli"')
        said = uv(proxy, tmp_path, "version", "--bump", "patch", cwd=app)
    else:  # an sdist's metadata: its build requirements are installed here to read it
        app = project(tmp_path / "app", requires='"needsbuild"')
        said = uv(proxy, tmp_path, "lock", cwd=app)
    assert refusals(proxy) > 0, said
    assert not said.endswith("(exit 0)"), said


def test_uv_lock_reads_a_wheels_metadata_and_locks_it_whatever_this_machine_loads(
    proxy: ProxyProcess, tmp_path: Path
) -> None:
    app = project(tmp_path / "app", requires='"piecli"')
    said = uv(proxy, tmp_path, "lock", cwd=app)
    assert said.endswith("(exit 0)"), said
    assert "piecli-1.0" in (app / "uv.lock").read_text()
    assert refusals(proxy) == 0, proxy.output()
