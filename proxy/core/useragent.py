"""What pip's and uv's User-Agent tell about the host.

Both send ``<installer>/<version> <linehaul JSON>``: pip builds the JSON in
``pip._internal.network.session.user_agent``; uv mirrors it in
``crates/uv-client/src/linehaul.rs`` and adds ``installer.subcommand`` (e.g.
``["pip", "install"]`` or ``["lock"]``). pip appends ``user_data`` from
``PIP_USER_AGENT_USER_DATA``, which hostfit reads as a profile string.

A User-Agent is whatever the client chose to send: every field is checked on its
own, and anything malformed is dropped, never raised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from proxy.core.profile import (
    Fact,
    HostProfile,
    parse_arch,
    parse_impl,
    parse_libc,
    parse_profile,
    parse_python,
)
from proxy.errors import BadRequest

V = TypeVar("V")

# Real ones are under 1 KiB; the bound keeps json.loads cheap on hostile input.
MAX_USER_AGENT_LENGTH = 8192

# platform.python_implementation() names, as linehaul sends them.
_IMPLEMENTATIONS = {"cpython": "cp", "pypy": "pp", "graalvm": "graalpy"}


@dataclass(frozen=True, slots=True)
class UserAgent:
    installer: str | None = None
    installer_version: str | None = None
    subcommand: tuple[str, ...] = ()
    profile: HostProfile = field(default_factory=HostProfile)  # facts with source "user-agent"
    user_data: HostProfile = field(default_factory=HostProfile)  # source "user_data"
    user_data_error: str | None = None  # why user_data could not be read (a 400)
    system: str | None = None  # the operating system it names (``platform.system()``)


def parse_user_agent(header: str | None) -> UserAgent:
    if not header or len(header) > MAX_USER_AGENT_LENGTH:
        return UserAgent()
    m = re.match(r"([A-Za-z][A-Za-z0-9._-]*)/(\S+)\s*", header)
    if not m:
        return UserAgent()
    installer, version = m[1].lower(), m[2]
    data = _json_object(header[m.end() :])
    if data is None:
        return UserAgent(installer=installer, installer_version=version)
    user_data, error = _user_data(data.get("user_data"))
    return UserAgent(
        installer=installer,
        installer_version=version,
        subcommand=_subcommand(data.get("installer")),
        profile=_linehaul_profile(data),
        user_data=user_data,
        user_data_error=error,
        system=_system(data),
    )


def default_for(agent: UserAgent, default: HostProfile) -> HostProfile:
    """The configured default's facts that this installer's own word leaves open.

    An installer that names its system is the authority on its platform. On another
    system than Linux the default's Linux facts do not apply (a Windows client given
    ``arch`` and ``libc`` would be offered Linux wheels only). On Linux the installer
    tells machine and libc itself, and what it leaves out stays unknown: pip on musl
    sends no libc (its glibc probe finds none), and a default ``libc=glibc-2.28`` would
    have hidden and refused that host's musllinux wheels. The facts no installer tells
    (``cuda``, ``isa``, ``glibcxx`` on Linux, ...) are the default's to give.
    """
    if agent.system is None:
        return default
    if agent.system != "Linux":
        return replace(default, arch=None, libc=None, glibcxx=None)
    return replace(default, arch=None, libc=None)


def _system(data: Mapping[str, Any]) -> str | None:
    name = _get(data, "system", "name")
    return name if isinstance(name, str) and name else None


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _linehaul_profile(data: Mapping[str, Any]) -> HostProfile:
    facts: dict[str, Fact[Any]] = {}
    python = _checked(parse_python, data.get("python"))
    if python is not None:
        facts["python"] = Fact(python, "user-agent")
    impl_name = _get(data, "implementation", "name")
    if isinstance(impl_name, str):
        impl = _checked(parse_impl, _IMPLEMENTATIONS.get(impl_name.lower(), impl_name))
        if impl is not None:
            facts["impl"] = Fact(impl, "user-agent")
    # cpu and libc describe a Linux platform only when the system says Linux:
    # "arm64" from macOS or "AMD64" from Windows must not pick Linux wheels.
    if _get(data, "system", "name") == "Linux":
        arch = _checked(parse_arch, data.get("cpu"))
        if arch is not None:
            facts["arch"] = Fact(arch, "user-agent")
        lib, version = _get(data, "distro", "libc", "lib"), _get(data, "distro", "libc", "version")
        if isinstance(lib, str) and isinstance(version, str):
            libc = _checked(parse_libc, f"{lib}-{version}")
            if libc is not None:
                facts["libc"] = Fact(libc, "user-agent")
    return HostProfile(**facts)


def _user_data(value: object) -> tuple[HostProfile, str | None]:
    if value is None:
        return HostProfile(), None
    if not isinstance(value, str):
        return HostProfile(), "not a string"
    if "=" not in value:
        # pip's user_data is free text for any purpose ("team-ml"): with no key=value in
        # it, it is not a profile, and refusing every page for it would leave the user
        # with pip's "from versions: none" and no word of why.
        return HostProfile(), None
    try:
        return parse_profile(value, "user_data"), None
    except BadRequest as exc:
        return HostProfile(), str(exc)


def _subcommand(installer: object) -> tuple[str, ...]:
    words = installer.get("subcommand") if isinstance(installer, dict) else None
    if isinstance(words, list) and all(isinstance(w, str) for w in words):
        return tuple(words)
    return ()


def _get(data: Mapping[str, Any], *path: str) -> object:
    value: object = data
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _checked(parse: Callable[[str], V], value: object) -> V | None:
    if not isinstance(value, str):
        return None
    try:
        return parse(value)
    except ValueError:
        return None
