"""``[[hostfit.upstream]]`` tables: parsed, validated, resolved from the environment, and
planned into what each origin is sent."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from proxy.core.origins import TLS, Origin
from proxy.edge.config import Settings, load_settings
from proxy.edge.upstreams_config import UpstreamTable, plan_upstreams
from proxy.errors import ConfigError

INDEX = "https://index.corp.test/simple/"
FILES = "https://files.corp.test"
CPU = "https://gpu.corp.test/whl/cpu/simple/"
GPU = "https://gpu.corp.test/whl/cu128/simple/"
OTHER = "https://other.test/simple/"


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    config = tmp_path / "hostfit.toml"
    config.write_text(text)
    return load_settings({"config": config}, environ or {})


def test_tables_give_urls_in_order_and_keep_the_contract_keys(tmp_path: Path) -> None:
    (tmp_path / "corp-ca.pem").write_text("")  # checked only when planned; see below
    settings = load(
        tmp_path,
        f"""
[hostfit]
upstream-timeout = 5
[[hostfit.upstream]]
url = "{INDEX}"
projects = ["torch", "corp-*"]
family = "corp"
username = "reader"
password_env = "CORP_PASSWORD"
file-origins = ["{FILES}"]
[[hostfit.upstream]]
url = "http://mirror.test/simple/"
""",
        {"CORP_PASSWORD": "pw"},
    )
    assert settings.upstreams == (INDEX, "http://mirror.test/simple/")
    first = settings.upstream_tables[0]
    assert first.projects == ("torch", "corp-*") and first.family == "corp"
    assert first.build is None
    assert first.file_origins == (FILES,) and first.password_env == "CORP_PASSWORD"
    assert settings.upstream_timeout == 5


def test_plain_url_lists_still_work(tmp_path: Path) -> None:
    settings = load(tmp_path, '[hostfit]\nupstream = ["http://a.test/", "http://b.test/"]\n')
    assert settings.upstreams == ("http://a.test/", "http://b.test/")
    assert settings.upstream_tables == ()


def test_credentials_reach_the_origin_and_its_file_origins_only(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        f"""
[hostfit]
file-origin = ["https://cdn.test"]
[[hostfit.upstream]]
url = "{INDEX}"
token_env = "CORP_TOKEN"
headers = {{X-Tenant = "t1"}}
headers_env = {{X-Api-Key = "CORP_KEY"}}
file_origins = ["{FILES}"]
[[hostfit.upstream]]
url = "https://other.test/simple/"
""",
        {"CORP_TOKEN": "tok", "CORP_KEY": "key"},
    )
    plan = plan_upstreams(settings, {"CORP_TOKEN": "tok", "CORP_KEY": "key", "HOME": "/none"})
    sent = (("Authorization", "Bearer tok"), ("X-Tenant", "t1"), ("X-Api-Key", "key"))
    outbound = plan.outbound
    assert outbound.headers_for(INDEX + "x/") == sent
    assert outbound.headers_for(FILES + "/packages/a.whl") == sent
    assert outbound.headers_for("https://cdn.test/a.whl") == ()
    assert outbound.headers_for("https://other.test/simple/x/") == ()
    assert outbound.secret_names == {"authorization", "x-tenant", "x-api-key"}
    corp, other = plan.upstreams
    assert Origin("https", "files.corp.test", 443) in corp.files
    assert Origin("https", "files.corp.test", 443) not in other.files


def test_a_command_line_url_takes_its_table(tmp_path: Path) -> None:
    config = tmp_path / "hostfit.toml"
    config.write_text(f'[[hostfit.upstream]]\nurl = "{INDEX}"\nusername = "u"\npassword = "p"\n')
    settings = load_settings({"config": config, "upstreams": [INDEX.rstrip("/")]}, {})
    plan = plan_upstreams(settings, {"HOME": "/none"})
    token = base64.b64encode(b"u:p").decode()
    assert plan.outbound.authorization(INDEX) == f"Basic {token}"


@pytest.mark.parametrize(
    ("urls", "refused"),
    [
        ([INDEX, CPU, GPU], None),  # every routed upstream stays, its routes with it
        ([OTHER, CPU, GPU], "index.corp.test/simple/ serves torch, triton alone"),
        ([INDEX, GPU, OTHER], "whl/cpu/simple/ serves torch alone"),
    ],
)
def test_an_upstream_list_that_leaves_a_route_out_is_refused(
    tmp_path: Path, urls: list[str], refused: str | None
) -> None:
    """A routed project is never looked up elsewhere: a command-line (or environment)
    list of upstreams that drops a routed one is refused at start-up, where it was
    served from the others."""
    config = tmp_path / "hostfit.toml"
    config.write_text(
        f'[[hostfit.upstream]]\nurl = "{INDEX}"\nprojects = ["torch", "triton"]\n'
        f'[[hostfit.upstream]]\nurl = "{CPU}"\nprojects = ["torch"]\nfamily = "pytorch"\n'
        f'[[hostfit.upstream]]\nurl = "{GPU}"\nprojects = ["torch"]\nfamily = "pytorch"\n'
        f'[[hostfit.upstream]]\nurl = "{OTHER}"\n'
    )
    if refused is None:
        assert load_settings({"config": config, "upstreams": urls}, {}).upstreams == tuple(urls)
        return
    with pytest.raises(ConfigError, match=refused):
        load_settings({"config": config, "upstreams": urls}, {})
    with pytest.raises(ConfigError, match=refused):
        load_settings({"config": config}, {"HOSTFIT_UPSTREAM": " ".join(urls)})


def test_tls_settings_are_per_upstream_and_paths_relative_to_the_file(
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "certs" / "corp-ca.pem"
    bundle.parent.mkdir()
    bundle.write_text("not a certificate\n")
    text = f'[[hostfit.upstream]]\nurl = "{INDEX}"\nca = "certs/corp-ca.pem"\n'
    with pytest.raises(ConfigError, match=r"CA bundle .*corp-ca.pem: not usable"):
        load(tmp_path, text)
    settings = Settings(
        upstreams=(INDEX, "http://plain.test/"),
        upstream_tables=(UpstreamTable(INDEX, ca=str(bundle)),),
        upstream_ca=tmp_path / "shared.pem",
    )
    from proxy.core.origins import plan_origins  # the pure plan, without loading files
    from proxy.edge.upstreams_config import access

    accesses = [access(u, t, {}) for u, t in ((INDEX, settings.upstream_tables[0]),)]
    outbound = plan_origins(accesses, ca=["shared.pem"]).outbound
    assert outbound.tls_for(INDEX) == TLS(("shared.pem", str(bundle)))
    assert outbound.tls_for("https://elsewhere.test/") == TLS(("shared.pem",))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('colour = "blue"', "unknown key 'colour'"),
        ('projects = "torch"', "projects: expected a list of strings"),
        ("family = 3", "family: expected a non-empty string"),
        ('username = "u"', "username and password go together"),
        ('password = "p"\npassword_env = "P"\nusername = "u"', "password or password_env"),
        ('username = "u"\npassword = "p"\ntoken = "t"', "only one of username/password, token"),
        ('headers = {Range = "bytes=0-"}', "may not set range"),
        ("headers = {X-Key = 3}", "expected a table of strings"),
        ('client_key = "k.pem"', "client_key without client_cert"),
        ('file_origins = ["file:///srv"]', "file origin 'file:///srv' is not"),
        ('family = "torch"', "family 'torch': each member upstream needs projects"),
        ('projects = ["torch vision"]', "project pattern 'torch vision'"),
        ('projects = ["torch"]\nbuild = "cu126"', "build names a build of a family"),
        ('projects = ["t"]\nfamily = "t"\nbuild = "rocm6"', "build 'rocm6' is not cpu or cuXY"),
    ],
)
def test_bad_tables_are_refused_with_the_reason(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, f'[[hostfit.upstream]]\nurl = "{INDEX}"\n{table}\n')


def test_other_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs url"):
        load(tmp_path, '[[hostfit.upstream]]\nfamily = "x"\n')
    with pytest.raises(ConfigError, match="two tables for upstream"):
        load(
            tmp_path,
            f'[[hostfit.upstream]]\nurl = "{INDEX}"\n[[hostfit.upstream]]\nurl = "{INDEX}"\n',
        )
    with pytest.raises(ConfigError, match=r"token_env names \$MISSING, which is not set"):
        load(tmp_path, f'[[hostfit.upstream]]\nurl = "{INDEX}"\ntoken_env = "MISSING"\n')
    with pytest.raises(ConfigError, match="upstream tables come only from"):
        load_settings({}, {"HOSTFIT_UPSTREAM_TABLES": "x"})
    with pytest.raises(ConfigError, match="NETRC names"):
        load_settings({"upstreams": [INDEX]}, {"NETRC": str(tmp_path / "absent")})
    bad_netrc = tmp_path / "netrc"
    bad_netrc.write_text("nonsense here\n")
    with pytest.raises(ConfigError, match=r"netrc file .* parse error at line 1"):
        load_settings({"upstreams": [INDEX]}, {"NETRC": str(bad_netrc)})
    with pytest.raises(ConfigError, match="only one of credentials in the url, token"):
        text = '[[hostfit.upstream]]\nurl = "https://u:p@index.corp.test/simple/"\ntoken = "t"\n'
        load(tmp_path, text)


def test_secrets_never_show(tmp_path: Path) -> None:
    table = UpstreamTable(
        "https://u:urlpw@index.test/simple/",
        username="u",
        password="hunter2",
        token="tok-secret",
        headers=(("X-Api-Key", "key-secret"),),
        password_env="NAME_IS_FINE",
    )
    shown = repr(Settings(upstreams=(table.url,), upstream_tables=(table,)))
    for secret in ("hunter2", "tok-secret", "key-secret", "urlpw"):
        assert secret not in shown
    assert "X-Api-Key" in shown and "NAME_IS_FINE" in shown
    plan = plan_upstreams(
        Settings(upstreams=(INDEX,), upstream_tables=(UpstreamTable(INDEX, token="tok-secret"),)),
        {"HOME": "/none"},
    )
    assert "tok-secret" not in repr(plan)


def test_tables_survive_the_trip_to_uvicorn_workers() -> None:
    import json
    from dataclasses import asdict

    table = UpstreamTable(INDEX, ("a",), "f", headers=(("X", "y"),), file_origins=(FILES,))
    assert UpstreamTable.from_json(json.loads(json.dumps(asdict(table)))) == table
