"""deploy/nginx.conf: nginx accepts it, and it has what streaming through hostfit needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.deploy import nginx_conf
from tests.support.proxy import free_port


def directives(name: str) -> list[str]:
    text = nginx_conf.CONF.read_text()
    return re.findall(rf"^\s*{re.escape(name)}\s+([^;{{\n]*);", text, flags=re.MULTILINE)


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    rendered = nginx_conf.render(tmp_path, free_port(), free_port())
    done = subprocess.run(
        [nginx_conf.binary(), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
         "-c", str(rendered)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_three_replicas_behind_one_upstream() -> None:
    servers = directives("server")
    assert [s.split()[0] for s in servers] == ["hostfit-1:8080", "hostfit-2:8080", "hostfit-3:8080"]
    assert directives("proxy_pass") == ["http://hostfit"]


def test_streams_without_buffering() -> None:
    assert directives("proxy_buffering") == ["off"]
    assert directives("proxy_request_buffering") == ["off"]
    assert directives("proxy_max_temp_file_size") == ["0"]


def test_generous_timeouts() -> None:
    for name in ("proxy_read_timeout", "proxy_send_timeout", "send_timeout"):
        (value,) = directives(name)
        assert value.endswith("s") and int(value[:-1]) >= 600, f"{name} {value}"


def test_passes_host_and_forwarded_headers() -> None:
    headers = {h.split()[0].lower(): h.split()[1] for h in directives("proxy_set_header")}
    assert headers["host"] == "$http_host"
    assert headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert headers["x-forwarded-proto"] == "$scheme"
    assert headers["x-forwarded-host"] == "$http_host"
