"""deploy/nginx.conf, rendered to run here: replicas on 127.0.0.1, files in a work directory."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx.conf"
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_SERVER = re.compile(r"^(\s*server\s+)hostfit-\d+:8080\b", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*listen\s+)80;", re.MULTILINE)
_PID = re.compile(r"^pid\s+\S+;", re.MULTILINE)


def binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise AssertionError("nginx is not installed: scripts/test installs it")
    return found


def render(work: Path, replica_port: int, listen_port: int) -> Path:
    """A copy that nginx accepts unprivileged and without DNS; the original is not changed.

    Names of compose services do not resolve here, so every replica becomes
    127.0.0.1:replica_port; the pid file and temporary paths move into ``work``.
    """
    text = CONF.read_text()
    text, servers = _SERVER.subn(rf"\g<1>127.0.0.1:{replica_port}", text)
    text, listens = _LISTEN.subn(rf"\g<1>127.0.0.1:{listen_port};", text)
    text, pids = _PID.subn(f"pid {work}/nginx.pid;", text)
    assert (servers, listens, pids) == (3, 1, 1), (
        f"deploy/nginx.conf changed shape: {servers} replica servers, {listens} listen, "
        f"{pids} pid lines; update tests/deploy/nginx_conf.py"
    )
    temp = "".join(f"    {kind}_temp_path {work}/{kind};\n" for kind in TEMP_KINDS)
    text = text.replace("http {\n", "http {\n" + temp, 1)
    if os.geteuid() == 0:
        # Workers would drop to a user that cannot enter pytest's private directories.
        text = "user root;\n" + text
    work.mkdir(parents=True, exist_ok=True)
    rendered = work / "nginx.conf"
    rendered.write_text(text)
    return rendered
