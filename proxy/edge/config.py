"""Settings for `hostfit serve`: command line > HOSTFIT_* environment > --config TOML > defaults.

What the settings are, and the names each is given by, is one table
(`proxy.edge.settings_table`); this module reads the layers by it.

With nothing configured, the upstream is the index the local pip uses, so a
machine that already installs from a private mirror keeps using that mirror.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from proxy.core.redact import redact
from proxy.edge.settings_table import CONFIG_FILE, Settings, by_key, specs
from proxy.edge.upstreams_config import parse_upstreams, plan_upstreams
from proxy.errors import ConfigError

__all__ = [  # Settings is defined with its table, and still imported from here
    "Settings",
    "ignored_extra_indexes",
    "load_settings",
    "load_settings_with_sources",
    "pip_default_files",
    "pip_default_index",
    "pip_indexes",
    "resolve_upstreams",
]

# pip's built-in default, asked of pip itself so that it is never written down here.
_PIP_DEFAULT_SCRIPT = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"
_PIP_FILES_SCRIPT = (
    "from pip._internal.models.index import PyPI; "
    "print(PyPI.simple_url); print(PyPI.file_storage_domain)"
)
_INDEX_KEYS = ("global.index-url", "install.index-url", "download.index-url", ":env:.index-url")
_EXTRA_KEYS = tuple(key.replace("index-url", "extra-index-url") for key in _INDEX_KEYS)

log = logging.getLogger("hostfit")


@dataclass(frozen=True)
class PipIndexes:
    index_url: str
    extra_index_urls: tuple[str, ...] = ()  # never used: see `ignored_extra_indexes`


def pip_indexes() -> PipIndexes:
    """The index pip on this machine would use (its configuration, else pip's default), and
    the extra indexes it is configured with.

    `pip config list` prints the merged configuration in load order (files, then the
    environment), so the last index-url (and extra-index-url) it names is the one pip
    would use.
    """
    for python in _pythons_with_pip():
        try:
            listed = _run([python, "-m", "pip", "config", "list"])
        except (OSError, subprocess.SubprocessError):
            continue
        configured = None
        extra: tuple[str, ...] = ()
        for line in listed.splitlines():
            key, sep, value = line.partition("=")
            value = value.strip().strip("'\"")
            if sep and key.strip() in _INDEX_KEYS:
                configured = value
            elif sep and key.strip() in _EXTRA_KEYS:
                # Several URLs come space- or newline-separated (printed as a repr: "\\n").
                extra = tuple(dict.fromkeys(value.replace("\\n", " ").split()))
        if configured:
            return PipIndexes(configured, extra)
        try:
            default = _run([python, "-c", _PIP_DEFAULT_SCRIPT]).strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if default:
            return PipIndexes(default, extra)
    raise ConfigError("no upstream given, and no pip here to tell its index: use --upstream")


def pip_default_index() -> str:
    return pip_indexes().index_url


def ignored_extra_indexes(extra: tuple[str, ...]) -> str:
    """What start-up says of pip's extra-index-url, which hostfit never merges: an index
    merged in silently would serve any project it lists, the dependency-confusion hole."""
    shown = ", ".join(redact(url) for url in extra)
    example = redact(extra[0])
    return (
        f"pip's extra-index-url ({shown}) is ignored: hostfit serves each project from one"
        " index, never merged. To serve projects from it, route them there in the config"
        f' file: [[hostfit.upstream]] url = "{example}" projects = ["name", "prefix-*"],'
        " then a table (or URL) for the main index; or list it with --upstream after the"
        " main index, which then serves only the projects the main index lacks"
    )


@cache
def pip_default_files() -> tuple[str, str] | None:
    """pip's built-in default index and the host it serves files from, asked of pip.

    Its pages link files on that host, so it is that upstream's file origin (and no
    other upstream's). None when no pip here can tell.
    """
    try:
        from pip._internal.models.index import PyPI

        return str(PyPI.simple_url), str(PyPI.file_storage_domain)
    except (ImportError, AttributeError):
        pass
    for python in _pythons_with_pip():
        try:
            lines = _run([python, "-c", _PIP_FILES_SCRIPT]).split()
        except (OSError, subprocess.SubprocessError):
            continue
        if len(lines) == 2:
            return lines[0], lines[1]
    return None


def _pythons_with_pip() -> list[str]:
    candidates = [sys.executable]
    for name in ("pip3", "pip"):
        script = shutil.which(name)
        python = _python_of(script) if script else None
        if python and python not in candidates:
            candidates.append(python)
    return candidates


def _run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


def _python_of(script: str) -> str | None:
    try:
        first = Path(script).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    return first[2:].strip() if first.startswith("#!") else None


def resolve_upstreams(settings: Settings) -> Settings:
    """These settings with the upstream resolved from pip when none was given."""
    if settings.upstreams:
        return settings
    found = pip_indexes()
    if found.extra_index_urls:
        log.warning("%s", ignored_extra_indexes(found.extra_index_urls))
    if not found.index_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"pip's index URL {redact(found.index_url)!r} is not an http(s) URL;"
            " give hostfit one with --upstream"
        )
    resolved = replace(settings, upstreams=(found.index_url,))
    plan_upstreams(resolved, os.environ)  # refused here, not as a worker starts
    return resolved


def load_settings(cli: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Merge the layers; every bad value names where it came from."""
    return load_settings_with_sources(cli, environ)[0]


def load_settings_with_sources(
    cli: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[Settings, dict[str, str]]:
    """The settings, and for each one set, where its value came from (a file and key, an
    environment variable, or "command line"); the rest are defaults.

    ``cli`` holds parsed options by setting name (`add_arguments`); other keys (a
    subcommand's own options) are passed over.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, tuple[Any, str]] = {}
    config_file = cli.get(CONFIG_FILE.name) or environ.get(CONFIG_FILE.env)
    if config_file:
        merged.update(_from_file(Path(config_file)))
    for spec in specs():
        if environ.get(spec.env):
            merged[spec.name] = (environ[spec.env], spec.env)
        if cli.get(spec.name) not in (None, (), []):
            merged[spec.name] = (cli[spec.name], "command line")
    values: dict[str, Any] = {}
    for name, (value, origin) in merged.items():
        spec = by_key()[name]
        try:
            values[name] = spec.check(value)
        except (TypeError, ValueError) as exc:
            shown = "" if spec.secret else f" {value!r}"
            raise ConfigError(f"{origin}: bad value{shown} for {name}: {exc}") from None
    for url in values.get("upstreams", ()):
        if not str(url).startswith(("http://", "https://")):
            raise ConfigError(f"upstream {url!r} is not an http(s) URL")
    settings = Settings(**values)
    plan_upstreams(settings, environ)  # checks them: origins, secrets, TLS files, netrc
    return settings, {name: origin for name, (_, origin) in merged.items()}


def _from_file(path: Path) -> dict[str, tuple[Any, str]]:
    """The settings a config file gives, by name, each with the file and key it came from."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    given: dict[str, tuple[Any, str]] = {}
    table = data.get("hostfit", data)  # settings at the top level are read too
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: hostfit: expected a table ([hostfit]), got {table!r}")
    for key, value in table.items():
        where = f"{path}: {key}"
        spec = by_key().get(key.replace("-", "_"))
        if spec is None:
            raise ConfigError(f"{where}: unknown setting {key.replace('-', '_')!r}")
        given[spec.name] = (value, where)
    if "upstreams" in given:  # URLs, or [[hostfit.upstream]] tables
        value, where = given["upstreams"]
        urls, tables = parse_upstreams(value, where, path.parent)
        given["upstreams"] = (list(urls), where)
        given["upstream_tables"] = (tables, where)
    return given
