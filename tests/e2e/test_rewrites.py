"""Rewritten wheels through `hostfit serve`, installed by real pip on this machine.

- a metadata fix, installed with ``--require-hashes`` and hashes copied from the page;
- two proxy processes with separate caches produce the same rewritten bytes;
- retagging: a plain ``linux_x86_64`` wheel and one whose tag claims less than its
  binaries need are served under the truthful tag, install and import here, and an
  old-glibc host is not offered the latter, by the proxy or by plain tag logic.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.utils import parse_wheel_filename

from proxy.core.negotiate import JSON_V1
from proxy.core.profile import parse_profile
from proxy.core.tags import client_tags
from tests.support.clients import clean_env, new_venv, pip_install, python_output, run
from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream
from tests.support.wheels import (
    WheelSpec,
    build_extension_module,
    build_wheel,
    extension_wheel,
    interpreter_tag,
)

pytestmark = pytest.mark.e2e
CP = interpreter_tag().rsplit("-", 1)[0]
RULES = """
[[retag]]
project = "*"

[sources]
ticket = "test ticket: fixme 1.0 declares a dependency that does not exist"

[[metadata]]
project = "fixme"
version = "==1.0"
remove_requires = ["no-such-dependency"]
source = "ticket"
"""

# An extension module that calls getrandom(), new in glibc 2.25.
RANDOM_SOURCE = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sys/random.h>

static PyObject *answer(PyObject *self, PyObject *args) {
    unsigned char byte;
    if (getrandom(&byte, 1, 0) != 1) return PyErr_SetFromErrno(PyExc_OSError);
    return PyUnicode_FromString("random-ok");
}

static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "rndpkg", NULL, -1, methods};
PyMODINIT_FUNC PyInit_rndpkg(void) { return PyModule_Create(&module_def); }
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("rewrites")
    with Upstream() as server:
        server.add(
            "fixme",
            build_wheel(WheelSpec("fixme", "1.0", requires_dist=["no-such-dependency"]), work),
        )
        server.add("plainext", extension_wheel("plainext", "1.0", work, value="plain-ok"))
        with tempfile.TemporaryDirectory() as tmp:
            so = build_extension_module("rndpkg", RANDOM_SOURCE, Path(tmp))
            spec = WheelSpec(
                "rndpkg", "1.0", tag=f"{CP}-manylinux_2_17_x86_64", files={so.name: so.read_bytes()}
            )
            server.add("rndpkg", build_wheel(spec, work))
        yield server


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules")
    (path / "rewrites.toml").write_text(RULES)
    return path


@pytest.fixture(scope="module")
def proxy(
    upstream: Upstream, rules: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    cache = tmp_path_factory.mktemp("proxy") / "cache"
    with ProxyProcess("--upstream", upstream.url, "--rules", str(rules), cache_dir=cache) as p:
        yield p


def rewritten(proxy: ProxyProcess, project: str, timeout: float = 60.0) -> dict[str, Any]:
    """The project's only file on the page once the rewrite is in."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(proxy.url + f"simple/{project}/", headers={"Accept": JSON_V1})
        (entry,) = response.json()["files"]
        if ".hf" in entry["filename"]:
            result: dict[str, Any] = entry
            return result
        assert time.monotonic() < deadline, f"{project} was never rewritten"
        time.sleep(0.2)


def test_require_hashes_with_hashes_copied_from_the_page(
    proxy: ProxyProcess, tmp_path: Path
) -> None:
    entry = rewritten(proxy, "fixme")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"fixme==1.0 --hash=sha256:{entry['hashes']['sha256']}\n")
    python = new_venv(tmp_path / "venv")
    env = clean_env(tmp_path)
    result = pip_install(
        python, proxy.url + "simple/", "--require-hashes", "-r", str(requirements), env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert python_output(python, "import fixme; print(fixme.__version__)") == "1.0"
    # Unfixed, the same release cannot be installed: its dependency does not exist.
    broken = new_venv(tmp_path / "broken")
    result = pip_install(broken, proxy.url + "universal/simple/", "fixme==1.0", env=env)
    assert result.returncode != 0 and "no-such-dependency" in result.stdout + result.stderr


def test_two_processes_with_separate_caches_make_the_same_bytes(
    upstream: Upstream, rules: Path, tmp_path: Path
) -> None:
    results = []
    for name in ("one", "two"):
        with ProxyProcess(
            "--upstream", upstream.url, "--rules", str(rules), cache_dir=tmp_path / name
        ) as proxy:
            entries = [rewritten(proxy, project) for project in ("fixme", "rndpkg")]
            blobs = [
                httpx.get(proxy.url + f"files/{project}/{e['filename']}").content
                for project, e in zip(("fixme", "rndpkg"), entries, strict=True)
            ]
            results.append(([(e["filename"], e["hashes"]["sha256"]) for e in entries], blobs))
    assert results[0] == results[1]


def test_plain_linux_wheel_is_served_under_manylinux_and_imports(
    proxy: ProxyProcess, tmp_path: Path
) -> None:
    entry = rewritten(proxy, "plainext")
    platforms = {t.platform for t in parse_wheel_filename(entry["filename"])[3]}
    (platform,) = platforms
    assert platform.startswith("manylinux_") and platform.endswith("_x86_64")
    python = installed(proxy, tmp_path, "plainext")
    assert python_output(python, "import plainext; print(plainext.answer())") == "plain-ok"
    assert f"Tag: {CP}-{platform}" in wheel_file(python, "plainext")


def test_overclaiming_wheel_is_retagged_installs_here_and_old_hosts_decline_it(
    proxy: ProxyProcess, tmp_path: Path
) -> None:
    entry = rewritten(proxy, "rndpkg")
    (tag,) = parse_wheel_filename(entry["filename"])[3]
    assert tag.platform == "manylinux_2_26_x86_64"  # getrandom: GLIBC_2.25, no 2_25 policy
    python = installed(proxy, tmp_path, "rndpkg")
    assert python_output(python, "import rndpkg; print(rndpkg.answer())") == "random-ok"
    assert f"Tag: {CP}-manylinux_2_26_x86_64" in wheel_file(python, "rndpkg")
    # Plain tag logic for an old host declines the new tag by itself...
    old = parse_profile("python=3.11,impl=cp,arch=x86_64,libc=glibc-2.17", "url")
    assert not client_tags(old).supports(tag)
    # ...and so does plain pip asked for an old platform, with no profile at all.
    env = clean_env(tmp_path)
    common = [
        "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
        "3.11", "--implementation", "cp", "--index-url", proxy.url + "simple/",
    ]  # fmt: skip
    declined = run(
        [sys.executable, *common, "--platform", "manylinux_2_17_x86_64",
         "-d", str(tmp_path / "old"), "rndpkg"], env,
    )  # fmt: skip
    assert declined.returncode != 0
    assert "No matching distribution found for rndpkg" in declined.stdout + declined.stderr
    # A host that says it has an old glibc is not offered it by the proxy either.
    response = httpx.get(
        proxy.url + "p/python=3.11,impl=cp,arch=x86_64,libc=glibc-2.17/simple/rndpkg/",
        headers={"Accept": JSON_V1},
    )
    assert response.json()["files"] == []


def installed(proxy: ProxyProcess, tmp_path: Path, project: str) -> Path:
    python = new_venv(tmp_path / "venv")
    result = pip_install(python, proxy.url + "simple/", project, env=clean_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ".hf" in result.stdout + result.stderr  # pip took the rewritten file
    return python


def wheel_file(python: Path, project: str) -> str:
    code = (
        "import importlib.metadata as m, json; "
        f"print(json.dumps(m.distribution({project!r}).read_text('WHEEL')))"
    )
    text: str = json.loads(python_output(python, code))
    return text
