"""The Dockerfile, without a container engine: its install, start and health check commands
run as plain steps on this machine, then the result is checked as an operator would.

The install runs offline: a fresh virtualenv sees this environment's packages (its
dependencies and build backend) through a path file, pip may not reach any index, and
build isolation is off; the commands themselves are the Dockerfile's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.deploy import nginx_conf
from tests.deploy.dockerfile import Build, Stage, parse
from tests.deploy.test_manifests import alert_metric_names
from tests.support.proxy import free_port
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "demo-pkg"
# Steps the install leaves to the image build: they need a real root filesystem.
SYSTEM_STEPS = {"groupadd", "useradd", "chown"}


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


# --- what the Dockerfile declares ----------------------------------------------------


def test_multi_stage_slim_image(stages: list[Stage], final: Stage) -> None:
    assert len(stages) >= 2  # the wheel is built in a stage of its own
    assert final.base.startswith("python:3.") and final.base.endswith("-slim")
    assert not final.all("COPY"), "the final stage gets the wheel through a mount, no sources"


def test_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    user = final.user()
    assert user is not None
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot can check it
    steps = " ".join(i.args for i in final.all("RUN"))
    assert f"--uid {uid}" in steps
    cache = final.env()["HOSTFIT_CACHE_DIR"]
    assert f"chown {uid}:{uid} {cache}" in steps


def test_declares_the_cache_volume_and_listens_everywhere(final: Stage) -> None:
    env = final.env()
    assert final.volumes() == [env["HOSTFIT_CACHE_DIR"]]
    assert env["HOSTFIT_HOST"] == "0.0.0.0"
    assert final.exposed() == [env["HOSTFIT_PORT"]]


def test_rules_directory_always_exists(final: Stage) -> None:
    """`--rules` naming a missing path stops hostfit, so the image makes the directory that
    operators mount their rules over; empty, it means shipped knowledge only."""
    rules = final.env()["HOSTFIT_RULES"]
    assert any("mkdir" in i.args and rules in i.args for i in final.all("RUN"))


def test_healthcheck_is_liveness_on_the_configured_port(final: Stage) -> None:
    options, command = final.healthcheck()
    text = " ".join(command)
    assert "/healthz" in text and "/readyz" not in text
    assert "HOSTFIT_PORT" in text
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)


# --- the commands, run --------------------------------------------------------------


@dataclass
class Installed:
    build: Build
    venv: Path
    root: Path  # stands for the final image's root filesystem


@pytest.fixture(scope="module")
def installed(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("image")
    environment = work / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)
    purelib = Path(sysconfig.get_paths(vars={"base": str(environment)})["purelib"])
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_hostfit_test_deps.pth").write_text("".join(p + "\n" for p in sorted(here)))
    python = str(environment / "bin" / "python")
    build = Build(
        context=ROOT,
        work=work,
        stages=stages,
        commands={"pip": [python, "-m", "pip"], "mkdir": ["mkdir"]},
        env={
            "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this as "no isolation"
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONNOUSERSITE": "1",
        },
    )
    build.run()
    return Installed(build, environment, build.root(stages[-1]))


def test_install_steps_ran_and_the_rest_is_system_setup(installed: Installed) -> None:
    assert (installed.venv / "bin" / "hostfit").exists()
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import proxy; print(proxy.__file__)"],
        capture_output=True, text=True, check=True, cwd=installed.root,
    ).stdout  # fmt: skip
    assert Path(where).is_relative_to(installed.venv), where  # the installed copy, not ours
    left = {step.split()[0] for step in installed.build.ignored}
    assert left == SYSTEM_STEPS, installed.build.ignored


@dataclass
class Running:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    wheel: Path


def container_env(final: Stage, installed: Installed) -> dict[str, str]:
    """The image's ENV, with its paths under the stand-in root, as `docker run` gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTFIT_")}
    for key, value in final.env().items():
        env[key] = str(installed.root / value.lstrip("/")) if value.startswith("/") else value
    env["PATH"] = f"{installed.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def running(
    final: Stage, installed: Installed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    wheel = build_wheel(
        WheelSpec("demo_pkg", "1.0", files={"demo_pkg/__init__.py": b"ANSWER = 42\n"}),
        tmp_path_factory.mktemp("wheels"),
    )
    env = container_env(final, installed)
    # What an operator passes with `docker run -e` and `-v`: the upstream, a port, rules.
    env["HOSTFIT_PORT"] = str(free_port())
    rules = Path(env["HOSTFIT_RULES"])
    for example in sorted((ROOT / "deploy" / "rules").glob("*.toml")):
        shutil.copy(example, rules / example.name)
    log = installed.build.work / "hostfit.log"
    with Upstream() as upstream:
        upstream.add(PROJECT, wheel)
        env["HOSTFIT_UPSTREAM"] = upstream.url
        command = final.cmd()
        program = shutil.which(command[0], path=env["PATH"])
        assert program is not None and Path(program).is_relative_to(installed.venv)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [program, *command[1:]], env=env, cwd=installed.root, stdout=out, stderr=out
            )
        url = f"http://127.0.0.1:{env['HOSTFIT_PORT']}/"
        try:
            wait_for(url + "healthz", process, log)
            yield Running(url, env, process, log, wheel)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"hostfit exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 60 s:\n{log.read_text()}")


def healthcheck(final: Stage, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    _, command = final.healthcheck()
    program = shutil.which(command[0], path=env["PATH"])
    assert program is not None
    return subprocess.run(
        [program, *command[1:]], env=env, capture_output=True, text=True, timeout=30
    )


def test_started_with_the_image_env_and_cmd_the_healthcheck_passes(
    final: Stage, running: Running
) -> None:
    done = healthcheck(final, running.env)
    assert done.returncode == 0, done.stderr
    assert httpx.get(running.url + "readyz").status_code == 200


def test_the_healthcheck_reads_the_port_when_it_runs(final: Stage, running: Running) -> None:
    done = healthcheck(final, {**running.env, "HOSTFIT_PORT": str(free_port())})
    assert done.returncode != 0  # nothing listens there


def test_serves_and_streams_behind_the_nginx_config(
    running: Running, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("nginx")
    port = int(running.env["HOSTFIT_PORT"])
    listen = free_port()
    conf = nginx_conf.render(work, port, listen)
    with (work / "nginx.log").open("wb") as out:
        nginx = subprocess.Popen(
            [nginx_conf.binary(), "-p", str(work), "-e", str(work / "error.log"),
             "-c", str(conf), "-g", "daemon off;"],
            stdout=out, stderr=out,
        )  # fmt: skip
    base = f"http://127.0.0.1:{listen}/"
    try:
        wait_for(base + "nginx-health", nginx, work / "nginx.log")
        with httpx.Client(base_url=base, timeout=30) as client:
            page = client.get(
                f"/simple/{PROJECT}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
            )
            assert page.status_code == 200, page.text
            (entry,) = page.json()["files"]
            body = client.get(urljoin(str(page.url), entry["url"]))
            assert body.status_code == 200
            assert body.content == running.wheel.read_bytes()
            assert client.get("/metrics").status_code == 404  # scrape replicas directly
    finally:
        nginx.terminate()
        nginx.wait(10)


def test_serves_the_metrics_the_alert_rules_read(running: Running) -> None:
    httpx.get(running.url + f"simple/{PROJECT}/")  # some traffic
    text = httpx.get(running.url + "metrics").text
    served: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            served.add(line.split()[2])
        elif line and not line.startswith("#"):
            served.add(line.split("{")[0].split()[0])
    missing = alert_metric_names() - served
    assert not missing, f"deploy/alerts.yaml reads series hostfit does not serve: {missing}"
