"""Settings layers, and `hostfit serve` with no configuration following pip's index."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from proxy.core.origins import plan_origins
from proxy.edge.config import Settings, load_settings, pip_default_files, pip_default_index
from proxy.errors import ConfigError
from tests.support.clients import clean_env
from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream


def test_defaults() -> None:
    settings = load_settings({}, {})
    assert settings == Settings()
    assert settings.port == 8080 and settings.host == "127.0.0.1"
    assert settings.cache_dir.name == "hostfit"


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "hostfit.toml"
    config.write_text(
        '[hostfit]\nupstream = ["http://file.test/simple/"]\nport = 1000\n'
        'page-ttl = 5\nhost = "0.0.0.0"\n'
    )
    env = {"HOSTFIT_PORT": "2000", "HOSTFIT_PAGE_TTL": "7"}
    settings = load_settings({"config": config, "port": 3000}, env)
    assert settings.port == 3000
    assert settings.page_ttl == 7.0
    assert settings.host == "0.0.0.0"
    assert settings.upstreams == ("http://file.test/simple/",)
    env_upstreams = load_settings({}, {"HOSTFIT_UPSTREAM": "http://a.test/ http://b.test/"})
    assert env_upstreams.upstreams == ("http://a.test/", "http://b.test/")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("port = 'eighty'\n", "port"),
        ("colour = 'blue'\n", "unknown setting 'colour'"),
        ("upstream = ['ftp://x/']\n", r"ftp://x/' is not an http\(s\) URL"),
        ("port = \n", "hostfit.toml"),
        # A file's values of another type were taken as their Python spelling.
        ('[hostfit]\nhost = ["a", "b"]\n', "host: expected text, got a list"),
        ("[hostfit]\nredis = true\n", "redis: expected text, got a boolean"),
        ("[hostfit]\ncache-dir = 5\n", "cache_dir: expected text, got a number"),
        ("[hostfit]\ndefault-profile = {}\n", "default_profile: expected text, got a table"),
        ("hostfit = 5\n", "hostfit: expected a table"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "hostfit.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings({"config": config}, {})


def test_pip_default_index_follows_pip_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in clean_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIP_INDEX_URL", "http://configured.test/simple/")
    assert pip_default_index() == "http://configured.test/simple/"
    monkeypatch.delenv("PIP_INDEX_URL")
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://from-file.test/simple/\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    assert pip_default_index() == "http://from-file.test/simple/"
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    default = pip_default_index()  # pip's built-in default, whatever it is
    assert default.startswith("https://") and default.rstrip("/").endswith("/simple")


def test_an_index_url_from_pip_that_is_not_http_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in clean_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIP_INDEX_URL", f"file://{tmp_path}/simple")
    with pytest.raises(ConfigError, match=r"pip's index URL 'file://.*' is not an http\(s\) URL"):
        load_settings({}, {}).with_upstreams()


def test_serve_without_configuration_uses_pips_index(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path
) -> None:
    upstream.add("demo-pkg", demo_wheel)
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nindex-url = {upstream.url}\n")
    env = clean_env(tmp_path, PIP_CONFIG_FILE=str(conf))
    with ProxyProcess(cache_dir=tmp_path / "cache", env=env) as proxy:
        page = httpx.get(proxy.url + "simple/demo-pkg/")
        assert page.status_code == 200
        assert demo_wheel.name in page.text
        assert upstream.url in proxy.output()


def test_pips_extra_index_is_not_merged_and_start_up_says_how_to_route(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path
) -> None:
    with Upstream() as extra:
        extra.add("demo-pkg", demo_wheel)
        extra.add("only-extra", demo_wheel)
        conf = tmp_path / "pip.conf"
        conf.write_text(
            f"[global]\nindex-url = {upstream.url}\nextra-index-url =\n    {extra.url}\n"
        )
        upstream.add_project("demo-pkg")
        env = clean_env(tmp_path, PIP_CONFIG_FILE=str(conf))
        with ProxyProcess(cache_dir=tmp_path / "cache", env=env) as proxy:
            assert httpx.get(proxy.url + "simple/only-extra/").status_code == 404
            page = httpx.get(proxy.url + "simple/demo-pkg/")
            assert page.status_code == 200 and demo_wheel.name not in page.text
            output = proxy.output()
        assert extra.requests == []
        (said,) = [
            line["message"]
            for line in map(json.loads, output.splitlines())
            if "extra-index-url" in line["message"]
        ]
        assert said.startswith(f"pip's extra-index-url ({extra.url}) is ignored")
        assert f'[[hostfit.upstream]] url = "{extra.url}" projects = [' in said


def test_serve_refuses_bad_configuration(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--upstream", "ftp://nope/"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "ftp://nope/" in result.stdout + result.stderr


def test_file_origins_in_every_layer(tmp_path: Path) -> None:
    config = tmp_path / "hostfit.toml"
    config.write_text('[hostfit]\nfile-origin = ["https://cdn.test/", "https://blobs.test"]\n')
    assert load_settings({"config": config}, {}).file_origins == (
        "https://cdn.test/",
        "https://blobs.test",
    )
    config.write_text('[hostfit]\nfile_origins = ["https://cdn.test/"]\n')
    assert load_settings({"config": config}, {}).file_origins == ("https://cdn.test/",)
    env = {"HOSTFIT_FILE_ORIGIN": "https://a.test https://b.test:8443"}
    assert load_settings({}, env).file_origins == ("https://a.test", "https://b.test:8443")
    cli = {"file_origins": ["https://c.test"], "config": config}
    assert load_settings(cli, env).file_origins == ("https://c.test",)


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"file_origins": ["file:///srv/wheels"]}, "file origin 'file:///srv/wheels' is not"),
        ({"file_origins": ["http://169.254.169.254/"]}, "link-local or cloud metadata"),
        ({"upstreams": ["ftp://user:hunter2@x/"]}, r"'ftp://user:\*\*\*@x/' is not an http"),
    ],
)
def test_bad_origins_are_refused_without_showing_secrets(
    cli: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_settings(cli, {})
    assert "hunter2" not in str(error.value)


def test_pip_tells_its_default_index_and_where_it_serves_files() -> None:
    found = pip_default_files()
    assert found is not None
    index, files_host = found
    assert index.startswith("https://") and index.rstrip("/").endswith("/simple")
    assert files_host and "/" not in files_host
    plan = plan_origins([index + "/"], (), found)
    assert f"https://{files_host}" in {str(o) for o in plan.upstreams[0].files}


def test_settings_never_show_credentials() -> None:
    settings = Settings(upstreams=("http://u:hunter2@h/simple/",), redis="redis://:hunter2@r/0")
    assert "hunter2" not in repr(settings) and "u:***@h" in repr(settings)
