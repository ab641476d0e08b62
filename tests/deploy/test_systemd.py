"""deploy/hostfit.service: systemd accepts it, it is hardened, and state persists outside the cache.

`systemd-analyze verify` runs where systemd-analyze is installed (scripts/test installs
it). Where it is not, `test_systemd_accepts_the_unit` checks instead that every key is
one systemd knows in its section and every boolean is one systemd parses: weaker, but
never a silent skip.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from proxy.edge.stores.embedded import EmbeddedStore

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "hostfit.service"
EXECUTABLE = "/opt/hostfit/bin/hostfit"

Unit = dict[str, dict[str, list[str]]]

# For the fallback only: directives of systemd.unit(5), systemd.service(5), systemd.exec(5),
# systemd.kill(5) and systemd.resource-control(5) that a unit like this one may use.
KNOWN = {
    "Unit": {
        "Description", "Documentation", "After", "Before", "Wants", "Requires", "BindsTo",
        "PartOf", "Conflicts", "ConditionPathExists", "StartLimitIntervalSec",
        "StartLimitBurst",
    },
    "Service": {
        "Type", "ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop",
        "Restart", "RestartSec", "TimeoutStartSec", "TimeoutStopSec", "KillMode", "KillSignal",
        "Environment", "EnvironmentFile", "WorkingDirectory", "User", "Group", "DynamicUser",
        "UMask", "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities",
        "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateIPC",
        "PrivateMounts", "PrivateUsers", "PrivateNetwork", "ProtectHostname", "ProtectClock",
        "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectProc", "ProcSubset", "RestrictAddressFamilies",
        "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
        "MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures", "SystemCallFilter",
        "SystemCallErrorNumber", "CacheDirectory", "CacheDirectoryMode", "StateDirectory",
        "StateDirectoryMode", "RuntimeDirectory", "LogsDirectory", "ConfigurationDirectory",
        "ReadWritePaths", "ReadOnlyPaths", "LimitNOFILE", "MemoryMax", "MemoryHigh",
        "CPUQuota", "TasksMax",
    },
    "Install": {"WantedBy", "RequiredBy", "Alias"},
}  # fmt: skip
BOOLEANS = {"yes", "no", "true", "false", "on", "off", "1", "0"}
BOOLEAN_KEYS = {
    "DynamicUser", "NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
    "PrivateIPC", "PrivateMounts", "ProtectHostname", "ProtectClock", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictRealtime",
    "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC",
}  # fmt: skip


def parse_unit(text: str) -> Unit:
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line {number}: keep each setting on one line"
        if line.startswith("["):
            assert line.endswith("]"), f"line {number}: {line}"
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        assert current is not None, f"line {number}: a setting before any section"
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not key=value: {line}"
        current[key.strip()].append(value.strip())
    return sections


def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def one(section: str, key: str) -> str:
    values = unit()[section][key]
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        fallback_check(unit())
        return
    # verify checks that ExecStart's program exists: point it at this checkout's hostfit.
    hostfit = Path(sys.executable).parent / "hostfit"
    assert hostfit.exists(), hostfit
    text = UNIT.read_text()
    assert text.count(EXECUTABLE) == 1
    copy = tmp_path / "hostfit.service"
    copy.write_text(text.replace(EXECUTABLE, str(hostfit)))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    # Unknown keys and bad values are warnings (exit 0): fail on any line about this unit.
    about_unit = [line for line in output.splitlines() if "hostfit.service" in line]
    assert done.returncode == 0 and not about_unit, output


def fallback_check(parsed: Unit) -> None:
    assert set(parsed) == {"Unit", "Service", "Install"}, set(parsed)
    for section, settings in parsed.items():
        unknown = set(settings) - KNOWN[section]
        assert not unknown, f"[{section}] keys systemd may not know: {sorted(unknown)}"
        for key in settings.keys() & BOOLEAN_KEYS:
            assert all(v in BOOLEANS for v in settings[key]), f"{key}={settings[key]}"
    for key in ("ExecStart", "ExecStartPre", "ExecReload"):
        for command in parsed["Service"].get(key, []):
            assert command.split()[0].startswith("/"), f"{key}: absolute path required"


def test_fallback_check_accepts_the_unit_and_catches_mistakes() -> None:
    fallback_check(unit())
    text = UNIT.read_text()
    for good, bad in (
        ("ProtectHome=yes", "ProtectHomes=yes"),
        ("DynamicUser=yes", "DynamicUser=yess"),
    ):
        assert good in text
        try:
            fallback_check(parse_unit(text.replace(good, bad, 1)))
        except AssertionError:
            continue
        raise AssertionError(f"the fallback check accepted {bad!r}")


def test_unit_is_hardened() -> None:
    service = unit()["Service"]
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert service[key] == [value], f"{key}={service.get(key)}"
    assert "User" not in service and "Group" not in service  # DynamicUser= owns both
    assert service["CapabilityBoundingSet"] == [""]
    assert set(one("Service", "RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
    }
    assert "@system-service" in service["SystemCallFilter"]


def test_serve_uses_the_cache_directory_and_an_environment_file() -> None:
    argv = shlex.split(one("Service", "ExecStart"))
    assert argv[:2] == [EXECUTABLE, "serve"]
    cache = "/var/cache/" + one("Service", "CacheDirectory")
    assert argv[argv.index("--cache-dir") + 1] == cache
    assert one("Service", "EnvironmentFile").startswith("-/etc/hostfit/")  # optional
    assert one("Service", "StateDirectory") == "hostfit"
    assert one("Service", "ExecReload") == "/bin/kill -HUP $MAINPID"  # reloads rules


def run_state_link(cache: Path, state: Path) -> None:
    """ExecStartPre as systemd runs it: `$$` is a literal `$`, the rest split like a shell."""
    command = one("Service", "ExecStartPre")
    assert "%" not in command  # would be a systemd specifier
    argv = shlex.split(command.replace("$$", "$"))
    env = {**os.environ, "CACHE_DIRECTORY": str(cache), "STATE_DIRECTORY": str(state)}
    subprocess.run(argv, env=env, check=True, timeout=30)


def test_embedded_state_lands_in_the_state_directory(tmp_path: Path) -> None:
    cache, state = tmp_path / "cache", tmp_path / "lib"
    cache.mkdir()
    state.mkdir()
    run_state_link(cache, state)
    run_state_link(cache, state)  # every start runs it: it must be idempotent
    assert (cache / "state").is_symlink()
    # What hostfit does with --cache-dir: its embedded store in <cache-dir>/state.
    EmbeddedStore(str(cache / "state"))
    assert (state / "state.sqlite3").is_file()


def test_state_left_in_the_cache_is_moved_to_the_state_directory(tmp_path: Path) -> None:
    cache, state = tmp_path / "cache", tmp_path / "lib"
    (cache / "state").mkdir(parents=True)
    state.mkdir()
    (cache / "state" / "state.sqlite3").write_bytes(b"digests")
    run_state_link(cache, state)
    assert (cache / "state").is_symlink()
    assert (state / "state.sqlite3").read_bytes() == b"digests"
