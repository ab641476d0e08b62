"""The settings table (`proxy.edge.settings_table`): every setting has an option, an
environment variable, a config key and a README row, each read into the setting, and
every value survives the hand-off to workers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest

from proxy.cli import build_parser
from proxy.cli.config import effective
from proxy.core.redact import REDACTED
from proxy.edge import settings_doc
from proxy.edge.config import load_settings_with_sources
from proxy.edge.setting_kinds import (
    BOOL,
    BYTES,
    COUNT,
    FLOAT,
    INT,
    PATH,
    PORT,
    PROFILE,
    SECONDS,
    SIZE,
    TEXT,
    URLS,
)
from proxy.edge.settings_table import (
    CONFIG_FILE,
    Settings,
    Spec,
    by_key,
    from_json,
    specs,
    to_json,
)
from proxy.edge.upstreams_config import UpstreamTable
from proxy.errors import ConfigError
from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

README = Path(__file__).resolve().parents[2] / "README.md"
OWN = [spec for spec in specs() if spec.filled_by is None]  # those with names of their own


@dataclass
class Sample:
    """One value a setting can take other than its default, as each layer gives it."""

    argv: list[str]
    text: str  # an environment variable's
    toml: str  # a TOML literal
    value: Any


def sample(spec: Spec, tmp_path: Path) -> Sample:
    def given(text: str, toml: Any, value: Any) -> Sample:
        return Sample([str(spec.option), text], text, json.dumps(toml), value)

    if spec.choices:
        other = next(c for c in spec.choices if c != spec.default)
        return given(other, other, other)
    if spec.name == "upstream_ca":  # must be a readable CA bundle
        return given(certifi.where(), certifi.where(), Path(certifi.where()))
    kind = spec.kind
    if kind is BOOL:
        flipped = not spec.default
        option = f"--{'' if flipped else 'no-'}{spec.dashed}"
        return Sample([option], str(flipped).lower(), str(flipped).lower(), flipped)
    if kind is INT or kind is COUNT:
        return given("7", 7, 7)
    if kind is PORT:
        return given("8777", 8777, 8777)
    if kind is FLOAT or kind is SECONDS:
        return given("7.5", 7.5, 7.5)
    if kind is SIZE or kind is BYTES:
        return given("7M", "7M", 7 * 1024**2)
    if kind is PATH:
        return given(str(tmp_path / spec.name), str(tmp_path / spec.name), tmp_path / spec.name)
    if kind is URLS:
        url = f"http://{spec.dashed}.test/simple/"
        return given(url, [url], (url,))
    if kind is PROFILE:
        return given("libc=glibc-2.28", "libc=glibc-2.28", "libc=glibc-2.28")
    if kind is TEXT:
        return given(f"{spec.dashed}-sample", f"{spec.dashed}-sample", f"{spec.dashed}-sample")
    raise AssertionError(f"{spec.name}: no sample for its kind: add one here")


def test_every_setting_has_an_option_a_variable_a_key_and_a_readme_row() -> None:
    table = README.read_text().partition(settings_doc.START)[2].partition(settings_doc.END)[0]
    rows = {line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()}
    for spec in specs():
        if spec.filled_by is not None:  # given only through the other setting's key
            assert by_key()[spec.filled_by].filled_by is None, spec.name
            continue
        assert spec.option and spec.option.startswith("--"), spec.name
        assert spec.env.startswith("HOSTFIT_"), spec.name
        assert spec.toml_key, spec.name
        assert spec.what, spec.name
        assert any(row.startswith(f"`{spec.option}") for row in rows), spec.name
    names = [CONFIG_FILE.env, *(spec.env for spec in specs())]
    assert len(set(names)) == len(names)
    assert "HOSTFIT_RESOLVED_SETTINGS" not in names  # the hand-off's own variable
    keys = [k for spec in specs() for k in {spec.name, spec.dashed.replace("-", "_")}]
    assert len(set(keys)) == len(keys)


def test_the_readme_table_is_the_generated_one() -> None:
    text = README.read_text()
    assert settings_doc.with_table(text) == text, (
        "README.md's settings table is out of date: python -m proxy.edge.settings_doc README.md"
    )
    assert settings_doc.main(["--check", str(README)]) == 0


def test_the_readme_table_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{settings_doc.START}\n| old |\n{settings_doc.END}\nafter\n")
    assert settings_doc.main(["--check", str(readme)]) == 1
    assert settings_doc.main([str(readme)]) == 0
    text = readme.read_text()
    assert "| old |" not in text and text.startswith("before\n") and text.endswith("\nafter\n")
    assert settings_doc.markdown() in text
    assert "`--analysis optimistic\\|strict`" in text  # a bar would end the cell
    assert settings_doc.main(["--check", str(readme)]) == 0


@pytest.mark.parametrize("command", ["serve", "config"])
def test_every_option_sets_its_setting(command: str, tmp_path: Path) -> None:
    argv = [arg for spec in OWN for arg in sample(spec, tmp_path).argv]
    args = build_parser().parse_args([command, *argv])
    settings, sources = load_settings_with_sources(vars(args), {})
    for spec in OWN:
        expected = sample(spec, tmp_path).value
        assert expected != spec.default, spec.name
        assert getattr(settings, spec.name) == expected, spec.name
        assert sources[spec.name] == "command line", spec.name


def test_every_variable_sets_its_setting(tmp_path: Path) -> None:
    environ = {spec.env: sample(spec, tmp_path).text for spec in OWN}
    settings, sources = load_settings_with_sources({}, environ)
    for spec in OWN:
        assert getattr(settings, spec.name) == sample(spec, tmp_path).value, spec.name
        assert sources[spec.name] == spec.env


def file_settings(tmp_path: Path) -> tuple[Settings, dict[str, str], Path]:
    """Every setting from a config file: upstreams as a [[hostfit.upstream]] table."""
    lines = ["[hostfit]"]
    lines += [f"{s.toml_key} = {sample(s, tmp_path).toml}" for s in OWN if s.name != "upstreams"]
    lines += ["[[hostfit.upstream]]", 'url = "http://tables.test/simple/"', 'projects = ["demo"]']
    config = tmp_path / "hostfit.toml"
    config.write_text("\n".join(lines) + "\n")
    return *load_settings_with_sources({"config": config}, {}), config


def test_every_config_key_sets_its_setting(tmp_path: Path) -> None:
    settings, sources, config = file_settings(tmp_path)
    for spec in OWN:
        if spec.name != "upstreams":
            assert getattr(settings, spec.name) == sample(spec, tmp_path).value, spec.name
            assert sources[spec.name] == f"{config}: {spec.toml_key}"
    assert settings.upstreams == ("http://tables.test/simple/",)
    assert settings.upstream_tables == (
        UpstreamTable("http://tables.test/simple/", projects=("demo",)),
    )
    assert sources["upstream_tables"] == f"{config}: upstream"


def test_config_keys_may_be_written_with_underscores_and_by_the_field_name(
    tmp_path: Path,
) -> None:
    config = tmp_path / "hostfit.toml"
    config.write_text('[hostfit]\npage_ttl = 5\nfile_origins = ["https://cdn.test"]\n')
    settings, sources = load_settings_with_sources({"config": config}, {})
    assert settings.page_ttl == 5.0 and settings.file_origins == ("https://cdn.test",)
    assert sources["page_ttl"] == f"{config}: page_ttl"


def test_the_worker_hand_off_keeps_every_value(tmp_path: Path) -> None:
    settings = file_settings(tmp_path)[0]
    defaults = Settings()
    unchanged = [s.name for s in specs() if getattr(settings, s.name) == getattr(defaults, s.name)]
    assert unchanged == []  # so the round trip below checks every setting
    assert from_json(to_json(settings)) == settings
    assert from_json(to_json(defaults)) == defaults


def test_workers_receive_settings_from_every_layer(upstream: Upstream, tmp_path: Path) -> None:
    """``--workers 2``: each worker serves with the file's, the environment's and the
    command line's settings (the access log's lines carry the answering worker's pid)."""
    upstream.add("handed", build_wheel(WheelSpec("handed", "1.0"), tmp_path))
    config = tmp_path / "hostfit.toml"
    config.write_text('[hostfit]\nworkers = 2\nlog-format = "json"\n')
    env = {"HOSTFIT_DEFAULT_PROFILE": "libc=glibc-2.28"}
    proxy = ProxyProcess("--upstream", upstream.url, "--config", str(config), "--access-log",
                         cache_dir=tmp_path / "cache", env=env)  # fmt: skip
    with proxy:
        for _ in range(40):  # a new connection each: either worker may take it
            assert httpx.get(proxy.url + "simple/handed/").status_code == 200
        deadline = time.monotonic() + 10
        while proxy.output().count("GET /simple/") < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [json.loads(line) for line in proxy.output().splitlines() if line.strip()]
    access = [x for x in lines if x["logger"] == "hostfit.access" and x["route"] != "/readyz"]
    assert len(access) == 40
    assert len({x["pid"] for x in access}) == 2
    assert {x["profile"] for x in access} == {"libc=glibc-2.28"}


def test_secrets_are_never_shown(tmp_path: Path) -> None:
    settings = file_settings(tmp_path)[0]
    secret = [spec for spec in specs() if spec.secret]
    assert secret  # the admin token
    shown = {name: value for name, value, _ in effective(settings, {})}
    for spec in secret:
        value = str(getattr(settings, spec.name))
        assert shown[spec.name] == REDACTED
        assert value not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HOSTFIT_ANALYSIS": "eager"}, "HOSTFIT_ANALYSIS: bad value 'eager' for analysis: "),
        ({"HOSTFIT_UPSTREAM_DEADLINE": "0"}, "expected a number of seconds above 0"),
        ({"HOSTFIT_HIDE_SDISTS_WITHOUT_WHEELS": "maybe"}, "expected true or false"),
        ({"HOSTFIT_DEFAULT_PROFILE": "libc"}, "HOSTFIT_DEFAULT_PROFILE: bad value 'libc'"),
        ({"HOSTFIT_ACCESS_LOG": "perhaps"}, "HOSTFIT_ACCESS_LOG: bad value"),
        ({"HOSTFIT_PORT": "70000"}, "bad value '70000' for port: expected a whole number from 0"),
        ({"HOSTFIT_PORT": "80.5"}, "for port: expected a whole number from 0 to 65535"),
        ({"HOSTFIT_WORKERS": "0"}, "for workers: expected a whole number from 1 up"),
        ({"HOSTFIT_ANALYSIS_WORKERS": "-2"}, "for analysis_workers: expected a whole number"),
        ({"HOSTFIT_FRONTIER_KEEP": "-1"}, "for frontier_keep: expected a whole number from 0 up"),
        ({"HOSTFIT_PAGE_TTL": "nan"}, "for page_ttl: expected a number of seconds, 0 or more"),
        ({"HOSTFIT_ANALYSIS_BUDGET": "-1"}, "for analysis_budget: expected a number of seconds"),
    ],
)
def test_bad_values_name_their_layer(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings_with_sources({}, environ)
    assert message in str(error.value)
