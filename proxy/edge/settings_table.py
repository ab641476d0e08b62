"""The settings of `hostfit serve`, in one table: each field of `Settings` is a row.

Everything else is made from the table: the command-line options (`add_arguments`, for
`hostfit serve` and `hostfit config`), the ``HOSTFIT_*`` environment variables and the
config file's keys (read by `proxy.edge.config.load_settings`), the hand-off to uvicorn
workers under ``--workers N`` (`to_json`, `from_json`), `hostfit config`'s listing, and
the README's table (`proxy.edge.settings_doc`). So no setting can lack an option, a
variable, a key or its line in the README.

How to add a setting
--------------------
1. Add a field to `Settings`, with its row as metadata::

       page_ttl: float = field(
           default=600.0, metadata=row("seconds a page is served before revalidation", kind=FLOAT)
       )

   Say what it does, not its default: ``shown=`` words the default for people where the
   value itself would not (``"none (no budget)"``). Give ``kind=`` when the value is not
   text (`proxy.edge.setting_kinds`: INT, FLOAT, SECONDS, SIZE, BOOL, PATH, URLS, ...; a
   new kind says how option text and TOML values become the value, and how it goes to
   JSON and back), ``choices=`` for a closed set, ``secret=True`` for a value that
   `hostfit config` and the settings' repr must never show, ``metavar=`` for the
   option's placeholder. The names follow the field's: ``page_ttl`` is the option
   ``--page-ttl``, the variable ``HOSTFIT_PAGE_TTL`` and the config key ``page-ttl`` (or
   ``page_ttl``); ``flag="other-name"`` renames all three (``upstreams`` is
   ``--upstream``, ``HOSTFIT_UPSTREAM``, ``upstream``).
2. Use it as ``settings.name`` where it matters.
3. Rewrite the README's table: ``python -m proxy.edge.settings_doc README.md``
   (tests/edge/test_config_table.py fails until the README matches).

That is all: ``hostfit serve`` and ``hostfit config`` take the option, the environment
and the config file are read, workers receive the value, and ``hostfit config`` shows it
with where it came from.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from proxy.core.redact import redact
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
    TABLES,
    TEXT,
    URLS,
    Kind,
)
from proxy.edge.upstreams_config import UpstreamTable

_SPEC = "hostfit"  # the key of a field's metadata that holds its Spec


@dataclass(frozen=True)
class Spec:
    """One row of the table: how a setting is given, and how it is told to people."""

    what: str
    kind: Kind = TEXT
    shown: str | None = None  # the default in words, where the value would not say it
    flag: str | None = None  # the name of option, variable and key, when not the field's
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    secret: bool = False
    # Made by another setting's config-file form, with no option of its own.
    filled_by: str | None = None
    in_file: bool = True  # False only for --config itself
    name: str = ""
    default: Any = None

    @property
    def dashed(self) -> str:
        return self.flag or self.name.replace("_", "-")

    @property
    def option(self) -> str | None:
        return None if self.filled_by else "--" + self.dashed

    @property
    def env(self) -> str:
        return "HOSTFIT_" + self.dashed.upper().replace("-", "_")

    @property
    def toml_key(self) -> str | None:
        return self.dashed if self.in_file else None

    @property
    def placeholder(self) -> str | None:
        if self.kind is BOOL or self.choices:
            return None  # --name and --no-name; or argparse shows the choices
        return self.metavar or self.kind.metavar or self.dashed.upper()

    @property
    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        value = self.default
        if isinstance(value, bool):
            return "on" if value else "off"
        if value is None or value == ():
            return "none"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    def check(self, value: Any) -> Any:
        """The setting's value from what a layer gave, or ValueError."""
        parsed = self.kind.parse(value)
        if self.choices and parsed not in self.choices:
            *others, last = self.choices
            words = self.name.replace("_", " ")
            raise ValueError(f"{words} must be {', '.join(others)} or {last}")
        return parsed

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.option is None:
            return
        keywords: dict[str, Any] = {"dest": self.name, "default": None, **self.kind.option}
        if self.placeholder:
            keywords["metavar"] = self.placeholder
        if self.choices:
            keywords["choices"] = self.choices
        parser.add_argument(
            self.option,
            help=f"{self.what} (default: {self.default_text}; also {self.env})",
            **keywords,
        )


def row(
    what: str,
    *,
    kind: Kind = TEXT,
    shown: str | None = None,
    flag: str | None = None,
    choices: tuple[str, ...] = (),
    metavar: str | None = None,
    secret: bool = False,
    filled_by: str | None = None,
) -> dict[str, Spec]:
    """A field's metadata: its row of the table."""
    return {_SPEC: Spec(what, kind, shown, flag, choices, metavar, secret, filled_by)}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hostfit"


@dataclass(frozen=True)
class Settings:
    upstreams: tuple[str, ...] = field(
        default=(),
        metadata=row(
            "an upstream simple index; repeatable, in priority order (in the config file: "
            "URLs, or [[hostfit.upstream]] tables)",
            kind=URLS,
            flag="upstream",
            shown="the index from pip's configuration, else pip's built-in default",
        ),
    )
    file_origins: tuple[str, ...] = field(
        default=(),
        metadata=row(
            "another origin (scheme://host:port) upstream pages may link files on; repeatable",
            kind=URLS,
            flag="file-origin",
            shown="each upstream's own origin (plus the file host of pip's default index "
            "when that index is the upstream)",
        ),
    )
    upstream_tables: tuple[UpstreamTable, ...] = field(
        default=(),
        metadata=row(
            "the config file's [[hostfit.upstream]] tables", kind=TABLES, filled_by="upstreams"
        ),
    )
    upstream_ca: Path | None = field(
        default=None,
        metadata=row(
            "a CA bundle (PEM) trusted for upstreams besides the system store",
            kind=PATH,
            metavar="FILE",
            shown="the system trust store only",
        ),
    )
    host: str = field(default="127.0.0.1", metadata=row("address to listen on", metavar="ADDRESS"))
    port: int = field(default=8080, metadata=row("port to listen on", kind=PORT))
    cache_dir: Path = field(
        default_factory=default_cache_dir,
        metadata=row(
            "cache directory",
            kind=PATH,
            metavar="DIR",
            shown="$XDG_CACHE_HOME/hostfit or ~/.cache/hostfit",
        ),
    )
    redis: str | None = field(
        default=None,
        metadata=row(
            "Redis URL for state shared between replicas", metavar="URL", shown="embedded"
        ),
    )
    rules: Path | None = field(
        default=None,
        metadata=row("rules directory or file", kind=PATH, shown="none (shipped knowledge only)"),
    )
    page_ttl: float = field(
        default=600.0, metadata=row("seconds a page is served before revalidation", kind=FLOAT)
    )
    upstream_timeout: float = field(
        default=30.0, metadata=row("the longest wait for any one read from upstream", kind=FLOAT)
    )
    upstream_deadline: float = field(
        default=60.0,
        metadata=row(
            "the longest an upstream page fetch may take in all, retries and slow bodies "
            "included; past it the stale page or a 504 is served",
            kind=SECONDS,
        ),
    )
    default_profile: str | None = field(
        default=None,
        metadata=row(
            "host facts a client does not tell, e.g. libc=glibc-2.28,cuda=none (an installer"
            " that names its system tells its own arch and libc)",
            kind=PROFILE,
        ),
    )
    analysis: Literal["optimistic", "strict"] = field(
        default="optimistic",
        metadata=row(
            "a page whose analysis is unfinished after --analysis-budget: served "
            "provisional, with the download gate as the safety net (optimistic), or answered "
            "503 with Retry-After (strict)",
            choices=("optimistic", "strict"),
        ),
    )
    analysis_budget: float = field(
        default=2.0, metadata=row("how long a page request waits for its analysis", kind=FLOAT)
    )
    analysis_workers: int = field(
        default=2,
        metadata=row(
            "analysis processes for walks, and as many for downloads at the gate", kind=COUNT
        ),
    )
    analysis_download_max: int = field(
        default=64 * 1024**2,
        metadata=row(
            "a walk downloads a wheel up to this size whole into the file cache to analyse"
            " it (one request; the install that follows is served from the cache); a larger"
            " one, or one of no listed size, is read by URL with range requests; 0: always"
            " by URL",
            kind=BYTES,
            shown="64M",
        ),
    )
    frontier_keep: int = field(
        default=3,
        metadata=row(
            "kept versions verified below the newest one a host is offered",
            kind=INT,
            metavar="K",
        ),
    )
    frontier_max_bytes: int = field(
        default=8 * 1024**3,
        metadata=row(
            "wheel bytes one walk down a page may analyse before it waits for the next request",
            kind=INT,
            metavar="BYTES",
            shown="8 GiB",
        ),
    )
    frontier_max_seconds: float = field(
        default=600.0, metadata=row("time one walk down a page may take", kind=FLOAT)
    )
    hide_sdists_without_wheels: bool = field(
        default=True,
        metadata=row("hide a version's sdist from a host none of its wheels fits", kind=BOOL),
    )
    workers: int = field(default=1, metadata=row("server processes", kind=COUNT))
    file_deadline: float = field(
        default=1800.0,
        metadata=row("the longest one file download from upstream may take, in all", kind=SECONDS),
    )
    cache_max_size: int | None = field(
        default=None,
        metadata=row(
            "file cache budget, such as 50G (K, M, G, T: powers of 1024); least recently "
            "used files are evicted to stay within it",
            kind=SIZE,
            shown="none (no budget)",
        ),
    )
    admin_token: str | None = field(
        default=None,
        metadata=row(
            "turn on the admin endpoints (/admin/...) for requests bearing this token; "
            "prefer the environment variable, which no process listing shows",
            metavar="TOKEN",
            secret=True,
            shown="admin endpoints off",
        ),
    )
    log_format: Literal["json", "text", "auto"] = field(
        default="auto",
        metadata=row(
            "log lines as JSON objects or as text with timestamps; auto: text on a "
            "terminal, JSON otherwise",
            choices=("json", "text", "auto"),
        ),
    )
    access_log: bool = field(
        default=True, metadata=row("hostfit's access log: one line per request", kind=BOOL)
    )
    uvicorn_access_log: bool = field(
        default=False,
        metadata=row("uvicorn's own access log lines as well as hostfit's", kind=BOOL),
    )

    def __repr__(self) -> str:  # settings hold credentials: never show them
        shown = ", ".join(
            f"{spec.name}={getattr(self, spec.name)!r}" for spec in specs() if not spec.secret
        )
        return redact(f"Settings({shown})")

    def with_upstreams(self) -> Settings:
        """These settings with the upstream resolved from pip when none was given."""
        from proxy.edge.config import resolve_upstreams

        return resolve_upstreams(self)


# Not a setting: where the others may come from.
CONFIG_FILE = Spec(
    "a TOML file whose [hostfit] table (or, without one, whose top level) holds these"
    " settings, by the keys named here",
    kind=PATH,
    metavar="FILE",
    in_file=False,
    name="config",
)


@cache
def specs() -> tuple[Spec, ...]:
    """Every setting's row, in the order of `Settings`."""
    defaults = Settings()
    return tuple(
        replace(f.metadata[_SPEC], name=f.name, default=getattr(defaults, f.name))
        for f in fields(Settings)
    )


@cache
def by_key() -> dict[str, Spec]:
    """Each setting by the names a config file may call it (hyphens read as underscores)."""
    found: dict[str, Spec] = {}
    for spec in specs():
        found[spec.name] = spec
        found[spec.dashed.replace("-", "_")] = spec
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting's option, and --config."""
    for spec in (CONFIG_FILE, *specs()):
        spec.add_to(parser)


def to_json(settings: Settings) -> str:
    """The resolved settings, for worker processes (`from_json`)."""
    values: dict[str, Any] = {}
    for spec in specs():
        value = getattr(settings, spec.name)
        values[spec.name] = None if value is None else spec.kind.dump(value)
    return json.dumps(values)


def from_json(text: str) -> Settings:
    values: dict[str, Any] = {}
    for name, value in json.loads(text).items():
        kind = by_key()[name].kind
        values[name] = None if value is None else kind.from_json(value)
    return Settings(**values)
