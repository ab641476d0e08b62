"""Settings for `hostfit serve`: command line > HOSTFIT_* environment > --config TOML > defaults.

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
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal

from proxy.core.redact import redact
from proxy.edge.upstreams_config import (
    UpstreamTable,
    parse_upstreams,
    plan_upstreams,
    tables_setting,
)
from proxy.errors import ConfigError, HostfitError

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


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hostfit"


@dataclass(frozen=True)
class Settings:
    upstreams: tuple[str, ...] = ()
    file_origins: tuple[str, ...] = ()  # besides each upstream's own origin
    upstream_tables: tuple[UpstreamTable, ...] = ()  # [[hostfit.upstream]]: applied by URL
    upstream_ca: Path | None = None  # a CA bundle trusted besides the system store
    host: str = "127.0.0.1"
    port: int = 8080
    cache_dir: Path = field(default_factory=default_cache_dir)
    redis: str | None = None
    rules: Path | None = None
    page_ttl: float = 600.0
    upstream_timeout: float = 30.0
    upstream_deadline: float = 60.0  # a whole page fetch, retries and slow bodies included
    default_profile: str | None = None
    analysis: Literal["optimistic", "strict"] = "optimistic"  # strict: 503 until settled
    analysis_budget: float = 2.0  # how long a page request waits for its walk
    analysis_workers: int = 2
    frontier_keep: int = 3  # kept versions verified below the newest one offered
    frontier_max_bytes: int = 8 * 1024**3  # listed wheel bytes one walk may analyse
    frontier_max_seconds: float = 600.0  # one walk's time
    hide_sdists_without_wheels: bool = True
    workers: int = 1
    file_deadline: float = 1800.0  # seconds one file download may take in all
    cache_max_size: int | None = None  # bytes of files cached; None: no budget
    admin_token: str | None = field(default=None, repr=False)  # None: admin endpoints off
    log_format: Literal["json", "text", "auto"] = "auto"  # auto: text on a terminal

    def __repr__(self) -> str:  # settings hold credentials: never show them
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return redact(f"Settings({shown})")

    def with_upstreams(self) -> Settings:
        """These settings with the upstream resolved from pip when none was given."""
        if self.upstreams:
            return self
        from dataclasses import replace

        found = pip_indexes()
        if found.extra_index_urls:
            log.warning("%s", ignored_extra_indexes(found.extra_index_urls))
        return replace(self, upstreams=(found.index_url,))


_ALIASES = {"upstream": "upstreams", "file_origin": "file_origins"}
# Settings that repeat: one environment variable (singular name) holds them space-separated.
_REPEATED = {"upstreams": "HOSTFIT_UPSTREAM", "file_origins": "HOSTFIT_FILE_ORIGIN"}


def _urls(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else tuple(str(value).split())


_CONVERTERS: dict[str, Any] = {
    "upstreams": _urls,
    "file_origins": _urls,
    "upstream_tables": tables_setting,
    "upstream_ca": Path,
    "port": int,
    "cache_dir": Path,
    "rules": Path,
    "page_ttl": float,
    "upstream_timeout": float,
    "upstream_deadline": lambda v: _positive(float(v)),
    "workers": int,
    "analysis_budget": float,
    "analysis_workers": int,
    "frontier_keep": int,
    "frontier_max_bytes": int,
    "frontier_max_seconds": float,
    "hide_sdists_without_wheels": lambda v: v if isinstance(v, bool) else _boolean(v),
    "file_deadline": lambda v: _seconds(v),
    "cache_max_size": lambda v: _size(v),
}

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _size(value: object) -> int:
    """Bytes, with an optional binary suffix: 50G, 512M, 1.5T, 10GiB (K, M, G, T = 1024^n)."""
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    try:
        number = float(text.removesuffix(unit) if unit else text) * _UNITS[unit]
    except ValueError:
        raise ValueError("expected bytes, such as 50G, 512M or 1000000") from None
    if not 1 <= number < float("inf"):
        raise ValueError("expected at least one byte")
    return int(number)


def _seconds(value: object) -> float:
    number = float(str(value))
    if not 0 < number < float("inf"):
        raise ValueError("expected a number of seconds above 0")
    return number


def _positive(value: float) -> float:
    if not value > 0:
        raise ValueError("must be more than 0")
    return value


def _boolean(value: object) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def load_settings(cli: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    """Merge the layers; every bad value names where it came from."""
    return load_settings_with_sources(cli, environ)[0]


def load_settings_with_sources(
    cli: dict[str, Any], environ: dict[str, str] | None = None
) -> tuple[Settings, dict[str, str]]:
    """The settings, and for each one set, where its value came from (a file and key, an
    environment variable, or "command line"); the rest are defaults."""
    environ = dict(os.environ) if environ is None else environ
    merged: dict[str, tuple[Any, str]] = {}
    config_file = cli.get("config") or environ.get("HOSTFIT_CONFIG")
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
        section = data.get("hostfit", data)
        for key, value in section.items():
            name = key.replace("-", "_")
            merged[_ALIASES.get(name, name)] = (value, f"{config_file}: {key}")
        if "upstreams" in merged:  # URLs, or [[hostfit.upstream]] tables
            value, where = merged["upstreams"]
            urls, tables = parse_upstreams(value, where, Path(config_file).parent)
            merged["upstreams"] = (list(urls), where)
            merged["upstream_tables"] = (tables, where)
    for f in fields(Settings):
        env_name = _REPEATED.get(f.name, "HOSTFIT_" + f.name.upper())
        if environ.get(env_name):
            merged[f.name] = (environ[env_name], env_name)
        if cli.get(f.name) not in (None, (), []):
            merged[f.name] = (cli[f.name], "command line")
    known = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    for key, (value, origin) in merged.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown setting {key!r}")
        try:
            values[key] = _CONVERTERS.get(key, lambda v: v)(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{origin}: bad value {value!r} for {key}: {exc}") from None
    if values.get("log_format", "auto") not in ("json", "text", "auto"):
        raise ConfigError(f"log format must be json, text or auto, not {values['log_format']!r}")
    if values.get("analysis", "optimistic") not in ("optimistic", "strict"):
        raise ConfigError(f"analysis must be 'optimistic' or 'strict', not {values['analysis']!r}")
    if values.get("default_profile"):
        from proxy.core.profile import parse_profile

        try:
            parse_profile(values["default_profile"], "default")
        except HostfitError as exc:
            raise ConfigError(f"default profile: {exc}") from None
    for url in values.get("upstreams", ()):
        if not str(url).startswith(("http://", "https://")):
            raise ConfigError(f"upstream {url!r} is not an http(s) URL")
    settings = Settings(**values)
    plan_upstreams(settings, environ)  # checks them: origins, secrets, TLS files, netrc
    return settings, {key: origin for key, (_, origin) in merged.items()}
