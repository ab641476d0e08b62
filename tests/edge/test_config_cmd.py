"""`hostfit config`: the effective settings, where each came from, secrets redacted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from proxy.edge.settings_table import specs
from tests.support.proxy import ROOT


def config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOSTFIT_")}
    return subprocess.run(
        [sys.executable, "-m", "proxy", "config", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **(env or {})},
        timeout=120,
        check=False,
    )


def test_every_setting_with_its_source_and_no_secret(tmp_path: Path) -> None:
    toml = tmp_path / "hostfit.toml"
    toml.write_text("[hostfit]\npage-ttl = 120\nanalysis-budget = 5\n")
    done = config(
        "--config", str(toml),
        "--upstream", "http://reader:s3cret@127.0.0.1:9/simple/",
        "--no-hide-sdists-without-wheels",
        "--json",
        env={"HOSTFIT_PORT": "9123", "HOSTFIT_REDIS": "redis://:hunter2@127.0.0.1:1/0"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "s3cret" not in done.stdout and "hunter2" not in done.stdout
    data = json.loads(done.stdout)
    assert data["upstreams"] == {
        "value": ["http://reader:***@127.0.0.1:9/simple/"],
        "from": "command line",
    }
    assert data["port"] == {"value": 9123, "from": "HOSTFIT_PORT"}
    assert data["redis"] == {"value": "redis://:***@127.0.0.1:1/0", "from": "HOSTFIT_REDIS"}
    assert data["page_ttl"] == {"value": 120.0, "from": f"{toml}: page-ttl"}
    assert data["analysis_budget"]["from"] == f"{toml}: analysis-budget"
    assert data["hide_sdists_without_wheels"] == {"value": False, "from": "command line"}
    assert data["frontier_keep"] == {"value": 3, "from": "default"}
    assert list(data) == [spec.name for spec in specs()]  # the table's settings, in order


def test_a_secret_is_redacted_wherever_it_came_from(tmp_path: Path) -> None:
    toml = tmp_path / "hostfit.toml"
    toml.write_text('[hostfit]\nadmin-token = "from-the-file"\n')
    for args, env, source in [
        (["--config", str(toml)], {}, f"{toml}: admin-token"),
        ([], {"HOSTFIT_ADMIN_TOKEN": "from-the-environment"}, "HOSTFIT_ADMIN_TOKEN"),
        (["--admin-token", "from-the-command-line"], {}, "command line"),
    ]:
        done = config("--upstream", "http://127.0.0.1:9/simple/", *args, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "from-the" not in done.stdout
        (line,) = [line for line in done.stdout.splitlines() if line.startswith("admin_token ")]
        assert line.endswith(f'"***"  ({source})')


def test_a_bad_setting_names_where_it_came_from(tmp_path: Path) -> None:
    done = config("--upstream", "http://127.0.0.1:9/simple/", env={"HOSTFIT_PORT": "eighty"})
    assert done.returncode == 2
    assert "HOSTFIT_PORT" in done.stderr and "eighty" in done.stderr and not done.stdout


def test_rules_serve_would_refuse_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "rules"
    bad.mkdir()
    (bad / "policy.toml").write_text("[quarantine]\nmin_age = 'a week'\n")
    for rules, said in [
        (tmp_path / "absent", str(tmp_path / "absent")),
        (bad, "quarantine.min_age: invalid duration 'a week'"),
    ]:
        done = config("--upstream", "http://127.0.0.1:9/simple/", "--rules", str(rules))
        assert done.returncode == 2, done.stdout
        assert said in done.stderr and not done.stdout


def test_table_output() -> None:
    done = config("--upstream", "http://127.0.0.1:9/simple/", "--port", "9001")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "port" in done.stdout and "9001  (command line)" in done.stdout
