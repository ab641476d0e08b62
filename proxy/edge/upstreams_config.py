"""``[[hostfit.upstream]]`` tables: one upstream each, with what its requests carry.

```toml
[[hostfit.upstream]]
url = "https://index.corp.example/simple/"
username = "reader"
password_env = "CORP_INDEX_PASSWORD"     # or password = "..." (kept out of every log)
file_origins = ["https://files.corp.example"]   # its files' host: same credentials and TLS
ca = "corp-ca.pem"                       # trusted for this upstream, besides the system store
client_cert = "hostfit.pem"              # mTLS; client_key = "hostfit.key" if separate
projects = ["corp-*"]                    # routed: these projects come from here only

[[hostfit.upstream]]
url = "https://gpu-index.example/whl/cu128/simple/"
projects = ["torch", "torchvision", "triton", "nvidia-*"]
family = "torch"                         # its members' pages are merged for their projects
build = "cu128"                          # optional: the build of files without a +cu128
```

``projects`` (names or glob patterns) routes projects (`proxy.core.routes`); ``family``
merges the pages of upstreams that publish builds of the same projects, one build per
version chosen per host (`proxy.core.families`). ``build`` (``cpu`` or ``cuXY``) says
what an upstream's files are built for where their versions carry no local label.

A table's settings apply to its own origin and to its ``file_origins``, nowhere else.
Secrets may come from the environment (``password_env``, ``token_env``,
``headers_env``), read when the server starts, so the file can be shared without them.
Relative paths are relative to the config file. A URL given on the command line or in
``HOSTFIT_UPSTREAM`` that equals a table's ``url`` uses that table's settings.

This module parses and resolves; `proxy.core.origins.plan_origins` plans.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from proxy.core.families import parse_build
from proxy.core.origins import (
    TLS,
    Headers,
    OriginPlan,
    UpstreamAccess,
    basic,
    origin_of,
    plan_origins,
)
from proxy.core.redact import REDACTED, redact, split_credentials
from proxy.core.routes import Routes, RouteSpec, normalize_pattern
from proxy.errors import ConfigError

if TYPE_CHECKING:
    from proxy.edge.config import Settings

# Headers hostfit sets itself per request: a table may not configure them.
MANAGED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "connection",
        "content-length",
        "content-type",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "range",
        "transfer-encoding",
        "user-agent",
    }
)


@dataclass(frozen=True)
class UpstreamTable:
    url: str
    projects: tuple[str, ...] = ()  # routed: the projects this upstream alone serves
    family: str | None = None  # upstreams of one family are merged for their projects
    build: str | None = None  # a family member's build: "cpu" or "cuXY"
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    token: str | None = None  # sent as "Authorization: Bearer <token>"
    token_env: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    headers_env: tuple[tuple[str, str], ...] = ()  # (header name, environment variable)
    client_cert: str | None = None
    client_key: str | None = None
    ca: str | None = None
    file_origins: tuple[str, ...] = ()

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value in (None, ()):
                continue
            if f.name in ("password", "token"):
                value = REDACTED
            elif f.name == "headers":
                value = tuple((name, REDACTED) for name, _ in value)
            shown.append(f"{f.name}={value!r}")
        return redact(f"UpstreamTable({', '.join(shown)})")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UpstreamTable:
        """Back from `dataclasses.asdict` through JSON (lists where tuples were)."""
        values = dict(data)
        for name in ("projects", "file_origins"):
            values[name] = tuple(values.get(name) or ())
        for name in ("headers", "headers_env"):
            values[name] = tuple((str(k), str(v)) for k, v in values.get(name) or ())
        return cls(**values)


_STRINGS = ("url", "family", "build", "username", "password", "password_env", "token", "token_env")
_PATHS = ("client_cert", "client_key", "ca")
_LISTS = ("projects", "file_origins")
_TABLES = ("headers", "headers_env")
KNOWN = frozenset((*_STRINGS, *_PATHS, *_LISTS, *_TABLES))


def parse_upstreams(
    value: object, where: str, base: Path | None = None
) -> tuple[tuple[str, ...], tuple[UpstreamTable, ...]]:
    """The ``upstream`` setting of a config file: its URLs in order, and its tables."""
    if not isinstance(value, list):
        return tuple(str(value).split()), ()
    urls: list[str] = []
    tables: list[UpstreamTable] = []
    for number, item in enumerate(value, 1):
        if isinstance(item, str):
            urls.append(item)
        elif isinstance(item, dict):
            table = parse_table(item, f"{where} #{number}", base)
            urls.append(table.url)
            tables.append(table)
        else:
            raise ConfigError(f"{where} #{number}: expected a URL or a table, not {item!r}")
    seen: dict[tuple[Any, str], str] = {}
    for table in tables:
        key = _key(table.url)
        if key in seen:
            raise ConfigError(f"{where}: two tables for upstream {redact(table.url)}")
        seen[key] = table.url
    try:
        upstream_routes(urls, tables)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return tuple(urls), tuple(tables)


def upstream_routes(urls: Sequence[str], tables: Sequence[UpstreamTable]) -> Routes:
    """The routes of these upstreams, in their priority order (an upstream without a table,
    or whose table has no ``projects``, is unrouted)."""
    specs = []
    for url in urls:
        table = table_for(url, tables)
        specs.append(RouteSpec(table.projects, table.family) if table else RouteSpec())
    return Routes(specs)


def parse_table(data: Mapping[str, Any], where: str, base: Path | None = None) -> UpstreamTable:
    values: dict[str, Any] = {}
    for raw, value in data.items():
        key = raw.replace("-", "_")
        if key not in KNOWN:
            known = ", ".join(sorted(KNOWN))
            raise ConfigError(f"{where}: unknown key {raw!r} (known: {known})")
        values[key] = _typed(key, value, f"{where}: {raw}", base)
    if "url" not in values:
        raise ConfigError(f"{where}: an upstream table needs url")
    table = UpstreamTable(**values)
    _check(table, where)
    return table


def _typed(key: str, value: Any, where: str, base: Path | None) -> Any:
    if key in _STRINGS or key in _PATHS:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a non-empty string")
        if key in _PATHS and base is not None:
            return str(base / value)
        return value
    if key in _LISTS:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f'{where}: expected a table of strings, e.g. {{X-Api-Key = "..."}}')
    return tuple((str(k), v) for k, v in value.items())


def _check(table: UpstreamTable, where: str) -> None:
    where = f"{where} ({redact(table.url)})"
    url, userinfo = split_credentials(table.url)
    if origin_of(url) is None:
        raise ConfigError(f"{where}: url is not an http(s) URL")
    for a, b in (("password", "password_env"), ("token", "token_env")):
        if getattr(table, a) is not None and getattr(table, b) is not None:
            raise ConfigError(f"{where}: give {a} or {b}, not both")
    has_password = table.password is not None or table.password_env is not None
    if has_password != (table.username is not None):
        raise ConfigError(f"{where}: username and password go together")
    has_token = table.token is not None or table.token_env is not None
    named = {name.lower() for name, _ in (*table.headers, *table.headers_env)}
    given = [
        what
        for what, present in (
            ("credentials in the url", userinfo is not None),
            ("username/password", has_password),
            ("token", has_token),
            ("an Authorization header", "authorization" in named),
        )
        if present
    ]
    if len(given) > 1:
        raise ConfigError(f"{where}: only one of {', '.join(given)}")
    managed = sorted(named & MANAGED_HEADERS)
    if managed:
        raise ConfigError(f"{where}: headers may not set {', '.join(managed)} (hostfit sets it)")
    if table.client_key is not None and table.client_cert is None:
        raise ConfigError(f"{where}: client_key without client_cert")
    for given_origin in table.file_origins:
        if origin_of(given_origin) is None:
            raise ConfigError(f"{where}: file origin {given_origin!r} is not an http(s) URL")
    for pattern in table.projects:
        normalize_pattern(pattern)
    if table.build is not None:
        if table.family is None:
            raise ConfigError(f"{where}: build names a build of a family: give family too")
        if parse_build(table.build) is None:
            raise ConfigError(
                f"{where}: build {table.build!r} is not cpu or cuXY (cu126 for CUDA 12.6)"
            )


def _key(url: str) -> tuple[Any, str]:
    clean = split_credentials(url)[0]
    return origin_of(clean), urlsplit(clean).path.rstrip("/")


def table_for(url: str, tables: Sequence[UpstreamTable]) -> UpstreamTable | None:
    key = _key(url)
    return next((t for t in tables if _key(t.url) == key), None)


def access(url: str, table: UpstreamTable | None, environ: Mapping[str, str]) -> UpstreamAccess:
    """What requests to this upstream carry, secrets read from ``environ`` now."""
    if table is None:
        return UpstreamAccess(url)
    where = f"upstream {redact(table.url)}"

    def env(name: str, what: str) -> str:
        value = environ.get(name)
        if not value:
            raise ConfigError(f"{where}: {what} names ${name}, which is not set")
        return value

    headers: Headers = ()
    if table.username is not None:
        password = table.password
        if password is None:
            password = env(str(table.password_env), "password_env")
        headers += (("Authorization", basic(table.username, password)),)
    token = table.token or (env(table.token_env, "token_env") if table.token_env else None)
    if token is not None:
        headers += (("Authorization", f"Bearer {token}"),)
    headers += table.headers
    headers += tuple((name, env(var, f"headers_env {name}")) for name, var in table.headers_env)
    tls = TLS((table.ca,) if table.ca else (), table.client_cert, table.client_key)
    # The table's URL keeps any userinfo the given URL lacks (and vice versa).
    given = url if "@" in urlsplit(url).netloc else table.url
    return UpstreamAccess(given, headers, tls, table.file_origins)


def tables_setting(value: object) -> tuple[UpstreamTable, ...]:
    """The ``upstream_tables`` setting: only from a config file's ``[[hostfit.upstream]]``."""
    if isinstance(value, tuple) and all(isinstance(t, UpstreamTable) for t in value):
        return value
    raise ValueError("upstream tables come only from [[hostfit.upstream]] in the config file")


def netrc_file(environ: Mapping[str, str]) -> str | None:
    """``$NETRC`` (which must exist), else ``~/.netrc`` where there is one."""
    named = environ.get("NETRC")
    if named:
        if not os.path.isfile(named):
            raise ConfigError(f"NETRC names {named}, which is not a file")
        return named
    home = environ.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, ".netrc")
    return default if os.path.isfile(default) else None


def _routes_kept(urls: Sequence[str], tables: Sequence[UpstreamTable]) -> None:
    """Refuses routes that the upstreams in use leave out: ``--upstream`` or
    ``HOSTFIT_UPSTREAM`` replaces the file's list and keeps its tables, and a route to an
    upstream not in the list would vanish, its projects then looked up everywhere else."""
    listed = {_key(url) for url in urls}
    for table in tables:
        if (table.projects or table.family) and _key(table.url) not in listed:
            routed = ", ".join(table.projects) or f"family {table.family}"
            raise ConfigError(
                f"upstream {redact(table.url)} serves {routed} alone, but is not among the "
                "upstreams in use (--upstream or HOSTFIT_UPSTREAM replaces the config "
                "file's list): add it to them, or take its projects out of the file"
            )


def plan_upstreams(
    settings: Settings,
    environ: Mapping[str, str],
    pip_default: tuple[str, str] | None = None,
) -> OriginPlan:
    """The origin plan of these settings, secrets read from ``environ``; refuses (with a
    `ConfigError`) a missing secret, an unusable CA bundle or client certificate, a bad
    netrc file."""
    from proxy.outbound import validate

    tables = settings.upstream_tables
    _routes_kept(settings.upstreams, tables)
    plan = plan_origins(
        [access(url, table_for(url, tables), environ) for url in settings.upstreams],
        settings.file_origins,
        pip_default,
        ca=(str(settings.upstream_ca),) if settings.upstream_ca else (),
        netrc=netrc_file(environ),
    )
    validate(plan.outbound)
    return plan
