"""Settings for `hostfit serve`: command line > HOSTFIT_* environment > --config TOML > defaults.

With nothing configured, the upstream is the index the local pip uses, so a
machine that already installs from a private mirror keeps using that mirror.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from proxy.errors import ConfigError, HostfitError

_PIP_INDEX_SCRIPT = r"""
import json, os
try:
    from pip._internal.configuration import Configuration
    conf = Configuration(isolated=False)
    conf.load()
    items = dict(conf.items())
except Exception:
    items = {}
url = None
for key in ("global.index-url", "install.index-url", ":env:.index-url"):
    url = items.get(key, url)
url = os.environ.get("PIP_INDEX_URL") or url
if not url:
    from pip._internal.models.index import PyPI
    url = PyPI.simple_url
print(json.dumps(url))
"""


def pip_default_index() -> str:
    """The index pip on this machine would use: its configuration, else pip's default."""
    candidates = [[sys.executable, "-m", "pip"]]
    if pip := shutil.which("pip3") or shutil.which("pip"):
        candidates.append([pip])
    for command in candidates:
        python = command[0] if len(command) > 1 else _python_of(command[0])
        if python is None:
            continue
        try:
            out = subprocess.run(
                [python, "-c", _PIP_INDEX_SCRIPT],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            url = json.loads(out)
        except (OSError, subprocess.SubprocessError, ValueError):
            continue
        if isinstance(url, str) and url:
            return url
    raise ConfigError(
        "no upstream given and pip is not available to tell its index: use --upstream"
    )


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
    host: str = "127.0.0.1"
    port: int = 8080
    cache_dir: Path = field(default_factory=default_cache_dir)
    redis: str | None = None
    rules: Path | None = None
    page_ttl: float = 600.0
    upstream_timeout: float = 30.0
    default_profile: str | None = None
    analysis: Literal["optimistic", "strict"] = "optimistic"  # strict: wait for reports
    analysis_budget: float = 20.0
    analysis_workers: int = 2
    hide_sdists_without_wheels: bool = True
    workers: int = 1

    def with_upstreams(self) -> Settings:
        """These settings with the upstream resolved from pip when none was given."""
        if self.upstreams:
            return self
        from dataclasses import replace

        return replace(self, upstreams=(pip_default_index(),))


_ALIASES = {"upstream": "upstreams"}
_CONVERTERS: dict[str, Any] = {
    "upstreams": lambda v: tuple(v) if isinstance(v, list) else tuple(str(v).split()),
    "port": int,
    "cache_dir": Path,
    "rules": Path,
    "page_ttl": float,
    "upstream_timeout": float,
    "workers": int,
    "analysis_budget": float,
    "analysis_workers": int,
    "hide_sdists_without_wheels": lambda v: v if isinstance(v, bool) else _boolean(v),
}


def _boolean(value: object) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def load_settings(cli: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    """Merge the layers; every bad value names where it came from."""
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
    for f in fields(Settings):
        env_name = "HOSTFIT_" + ("UPSTREAM" if f.name == "upstreams" else f.name.upper())
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
    return Settings(**values)
