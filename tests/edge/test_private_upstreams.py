"""Private upstreams, end to end through `hostfit serve`: an index that needs credentials,
whose files sit on a second origin that needs the same ones, reached with netrc, with
credentials from the config file, and with a bearer token (from the environment); the
secret reaches both origins on every request (pages, downloads, range reads, analysis
workers) and appears in no log line, response or state-store row. And TLS: an upstream
whose certificate comes from a private CA is refused without its bundle and trusted with
``--upstream-ca``; one that requires a client certificate gets it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.utils import parse_wheel_filename

from proxy.core.negotiate import JSON_V1
from tests.edge.test_secrets import assert_clean
from tests.fixtures.elf.recipes import build_objects, build_wheels
from tests.support.proxy import ProxyProcess
from tests.support.tls import Certificates, make_certificates
from tests.support.upstream import ServerTLS, Upstream

USER = "hostfit-reader"
PASSWORD = "Pw-8841-s3cret"
TOKEN = "Tk-5527-s3cret"
API_KEY = "Ak-9713-s3cret"
HOST = "python=3.11,impl=cp,arch=x86_64"
CLEAN_PROXIES = {name: "" for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")}
CLEAN_PROXIES |= {name.lower(): "" for name in CLEAN_PROXIES}


@pytest.fixture(scope="module")
def platform_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tagged manylinux_2_17, but its extension needs GLIBC_2.25: analysed by URL."""
    objects = build_objects(tmp_path_factory.mktemp("objects"))
    return build_wheels(objects, tmp_path_factory.mktemp("wheels"))["glibc"].path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def private(demo_wheel: Path, platform_wheel: Path) -> Iterator[tuple[Upstream, Upstream]]:
    """An index linking its files, by absolute URL, on a second server."""
    with Upstream() as index, Upstream() as files:
        for server in (index, files):
            server.add("demo-pkg", demo_wheel)
            server.add(_project(platform_wheel), platform_wheel)
            server.serve_metadata = False  # metadata is read from the wheel by range requests
        index.url_style = "absolute"
        index.files_origin = files.origin
        yield index, files


def _project(wheel: Path) -> str:
    return str(parse_wheel_filename(wheel.name)[0])


def _env(**extra: str) -> dict[str, str]:
    return {**CLEAN_PROXIES, "NETRC": "", **extra}


def _secrets(mode: str) -> list[str]:
    import base64

    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"bearer": [TOKEN, API_KEY]}.get(mode, [PASSWORD, basic, API_KEY])


@pytest.mark.parametrize("mode", ["netrc", "config", "bearer"])
def test_private_upstream_and_its_file_host(
    mode: str,
    private: tuple[Upstream, Upstream],
    demo_wheel: Path,
    platform_wheel: Path,
    tmp_path: Path,
) -> None:
    index, files = private
    args: list[str] = ["--page-ttl", "0", "--analysis", "strict", "--analysis-budget", "60"]
    env = _env()
    if mode == "netrc":
        for server in private:
            server.basic_auth = (USER, PASSWORD)
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1\n  login {USER}\n  password {PASSWORD}\n")
        env["NETRC"] = str(netrc)
        args += ["--upstream", index.url, "--file-origin", files.origin]
    else:
        config = tmp_path / "hostfit.toml"
        if mode == "config":
            for server in private:
                server.basic_auth = (USER, PASSWORD)
                server.required_headers = {"X-Api-Key": API_KEY}
            secret = f'username = "{USER}"\npassword = "{PASSWORD}"\n'
            secret += f'headers = {{X-Api-Key = "{API_KEY}"}}\n'
        else:
            for server in private:
                server.bearer_token = TOKEN
                server.required_headers = {"X-Api-Key": API_KEY}
            secret = 'token_env = "TEST_INDEX_TOKEN"\nheaders_env = {X-Api-Key = "TEST_API_KEY"}\n'
            env |= {"TEST_INDEX_TOKEN": TOKEN, "TEST_API_KEY": API_KEY}
        config.write_text(
            f'[[hostfit.upstream]]\nurl = "{index.url}"\n{secret}'
            f'file_origins = ["{files.origin}"]\nprojects = ["*"]\nfamily = "private"\n'
        )
        args += ["--config", str(config)]
    cache = tmp_path / "cache"
    seen: list[tuple[str, str]] = []

    def get(proxy: ProxyProcess, path: str, **kwargs: object) -> httpx.Response:
        response = httpx.get(proxy.url + path, timeout=60, **kwargs)  # type: ignore[arg-type]
        seen.append((path, f"{response.status_code} {response.headers}\n{response.text}"))
        return response

    project = _project(platform_wheel)
    with ProxyProcess(*args, cache_dir=cache, env=env) as proxy:
        page = get(proxy, "simple/demo-pkg/", headers={"Accept": JSON_V1})
        assert page.status_code == 200, page.text
        assert [f["filename"] for f in page.json()["files"]] == [demo_wheel.name]
        metadata = get(proxy, f"files/demo-pkg/{demo_wheel.name}.metadata")
        assert metadata.status_code == 200 and b"Name: Demo_Pkg" in metadata.content
        download = get(proxy, f"files/demo-pkg/{demo_wheel.name}")
        assert download.content == demo_wheel.read_bytes()
        # Analysis by URL in a worker, on the file host: hidden for glibc 2.20.
        filtered = get(
            proxy, f"p/{HOST},libc=glibc-2.20/simple/{project}/", headers={"Accept": JSON_V1}
        )
        assert filtered.status_code == 200 and filtered.json()["files"] == []
        explained = get(proxy, f"explain/{project}/", params={"profile": HOST + ",libc=glibc-2.20"})
        assert "glibc: needs 2.25" in explained.text
        get(proxy, "metrics")
    # Both origins were asked, every time with the credentials.
    assert index.requests and files.requests
    assert all(r.status != 401 for r in index.requests + files.requests)
    assert {r.path for r in index.requests} >= {"/simple/demo-pkg/", f"/simple/{project}/"}
    assert any(r.headers.get("range") for r in files.requests)  # range reads, by URL
    assert any(r.path.endswith(demo_wheel.name) for r in files.requests)
    # ... and the secrets are nowhere else.
    secrets = _secrets(mode)
    for path, response in seen:
        assert_clean(response, path, secrets)
    assert_clean(proxy.output(), "the log", secrets)
    with sqlite3.connect(cache / "state" / "state.sqlite3") as db:
        rows = db.execute("SELECT key, value FROM kv").fetchall()
    assert any(key.startswith("page:") for key, _ in rows)
    for key, value in rows:
        assert_clean(f"{key} {bytes(value).decode(errors='replace')}", f"state {key}", secrets)


def test_a_secret_named_in_the_environment_must_be_set(tmp_path: Path) -> None:
    config = tmp_path / "hostfit.toml"
    config.write_text(
        '[[hostfit.upstream]]\nurl = "http://127.0.0.1:9/simple/"\ntoken_env = "NOT_SET_HERE"\n'
    )
    proxy = ProxyProcess("--config", str(config), cache_dir=tmp_path / "cache", env=_env())
    with pytest.raises(RuntimeError, match="exited with 2"):
        proxy.start()
    assert "token_env names $NOT_SET_HERE, which is not set" in proxy.output()


def test_a_private_ca_is_refused_without_its_bundle_and_trusted_with_it(
    certs: Certificates, demo_wheel: Path, platform_wheel: Path, tmp_path: Path
) -> None:
    with Upstream(ServerTLS(certs.server_cert, certs.server_key)) as upstream:
        upstream.add("demo-pkg", demo_wheel)
        upstream.add(_project(platform_wheel), platform_wheel)
        upstream.serve_metadata = False
        base = ("--upstream", upstream.url, "--page-ttl", "0")
        with ProxyProcess(*base, cache_dir=tmp_path / "refused", env=_env()) as proxy:
            refused = httpx.get(proxy.url + "simple/demo-pkg/", timeout=60)
        assert refused.status_code == 502
        assert f"the certificate of {upstream.origin} is not trusted" in refused.text
        assert upstream.requests == []  # nothing was sent over the untrusted connection

        trusted = (*base, "--upstream-ca", str(certs.ca), "--analysis", "strict")
        with ProxyProcess(*trusted, cache_dir=tmp_path / "trusted", env=_env()) as proxy:
            _serves_and_analyses(proxy, demo_wheel, platform_wheel)


def test_an_upstream_requiring_a_client_certificate(
    certs: Certificates, demo_wheel: Path, platform_wheel: Path, tmp_path: Path
) -> None:
    tls = ServerTLS(certs.server_cert, certs.server_key, certs.client_ca)
    with Upstream(tls) as upstream:
        upstream.add("demo-pkg", demo_wheel)
        upstream.add(_project(platform_wheel), platform_wheel)
        upstream.serve_metadata = False
        config = tmp_path / "hostfit.toml"
        table = f'[[hostfit.upstream]]\nurl = "{upstream.url}"\nca = "{certs.ca.name}"\n'
        config.write_text(table)
        (tmp_path / certs.ca.name).write_bytes(certs.ca.read_bytes())  # relative to the file
        with ProxyProcess("--config", str(config), cache_dir=tmp_path / "no", env=_env()) as p:
            refused = httpx.get(p.url + "simple/demo-pkg/", timeout=60)
        assert refused.status_code == 502 and "client_cert" in refused.text
        config.write_text(
            f'{table}client_cert = "{certs.client_cert}"\nclient_key = "{certs.client_key}"\n'
            # strict: the page waits for the analysis, within a budget a loaded machine meets
            '[hostfit]\nanalysis = "strict"\nanalysis_budget = 60\n'
        )
        with ProxyProcess("--config", str(config), cache_dir=tmp_path / "yes", env=_env()) as p:
            _serves_and_analyses(p, demo_wheel, platform_wheel)


def _serves_and_analyses(proxy: ProxyProcess, demo_wheel: Path, platform_wheel: Path) -> None:
    page = httpx.get(proxy.url + "simple/demo-pkg/", headers={"Accept": JSON_V1}, timeout=60)
    assert page.status_code == 200, page.text
    download = httpx.get(proxy.url + f"files/demo-pkg/{demo_wheel.name}", timeout=60)
    assert download.content == demo_wheel.read_bytes()
    metadata = httpx.get(proxy.url + f"files/demo-pkg/{demo_wheel.name}.metadata", timeout=60)
    assert b"Name: Demo_Pkg" in metadata.content  # range reads over TLS, in this process
    filtered = httpx.get(
        proxy.url + f"p/{HOST},libc=glibc-2.20/simple/{_project(platform_wheel)}/",
        headers={"Accept": JSON_V1},
        timeout=120,
    )
    assert filtered.status_code == 200 and filtered.json()["files"] == []  # a worker, over TLS
