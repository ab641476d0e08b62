"""What a request says about its host, and which view it gets.

Precedence, per fact: the URL (``/p/<profile>/``) > the ``X-Hostfit-Profile`` header
> pip's ``user_data`` > the installer's User-Agent > the configured default.
Under ``/p/<profile>/`` only the URL and the default count, so such a URL means the
same thing for every client and caches correctly in any shared cache.

Under ``/universal/`` there is no host, with one exception: a wheel that uv downloads
to install into an environment of the machine it runs on (any subcommand but those in
`NOT_INSTALLING_SUBCOMMANDS`). A lock made against ``/universal/simple/`` holds
``/universal/files/`` URLs, and ``uv sync`` installs from them on every host; its
User-Agent names the subcommand, so the gate judges those for that host. ``uv pip
install`` may install for another platform (``--python-platform``), pip does not say
whether it installs or downloads for one (``pip download --platform``), and mirrors
tell nothing: theirs stay unjudged.
"""

from __future__ import annotations

import functools
import re

from starlette.requests import Request
from starlette.types import Scope

from proxy.core.profile import HostProfile, merge, parse_profile
from proxy.core.useragent import default_for, parse_user_agent
from proxy.edge.index import UNIVERSAL, Context
from proxy.errors import BadRequest

PROFILE_HEADER = "x-hostfit-profile"
# These resolve for every platform at once (lock files), so they must see every file.
LOCKING_SUBCOMMANDS = frozenset(
    {
        ("lock",),
        ("sync",),
        ("add",),
        ("remove",),
        ("run",),  # in a project, uv run locks it first, as uv sync does
        ("version",),  # uv version --bump locks and syncs the project
        ("check",),  # locks and syncs, then type-checks
        ("audit",),
        ("upgrade",),  # (preview) resolves a new universal lock
        ("tree",),
        ("export",),
        ("pip", "compile"),
    }
)
# uv's subcommands that may install what they download for another platform than the
# machine uv runs on (``--python-platform``, ``--target``) while uv's User-Agent still
# names this one. Every other subcommand uv names counts as installing here: sync, add,
# run, tool, uvx, venv --seed, build, version, check, and any uv adds later; and lock,
# tree, export, audit and pip compile too, which install an sdist's build requirements
# here to read its metadata (a wheel's they read from its .metadata, never its bytes).
# So under /universal/ what they download is judged for this host: a subcommand wrongly
# counted so is refused a misfit it would not have installed, where one wrongly left
# out would install it. A uv that names no subcommand tells nothing of it.
NOT_INSTALLING_SUBCOMMANDS = frozenset({("pip", "install"), ("pip", "sync")})
VARY_HOST = "User-Agent, X-Hostfit-Profile"  # the headers that tell the host
VARY_FILTERED = f"Accept, Accept-Encoding, {VARY_HOST}"
VARY_FIXED = "Accept, Accept-Encoding"
MEMO_ENTRIES = 4096
MEMO_MAX_CHARS = 2048


# Where the request's context is left in its ASGI scope, for the access log to show.
SCOPE_KEY = "hostfit.context"


def request_context(request: Request, default: HostProfile, *, installing: bool = False) -> Context:
    """Raises `BadRequest` for a malformed profile in the URL, the header or user_data.

    ``installing``: for a wheel's bytes, which the installer installs whatever its
    subcommand says. The lock files' universal view is for pages: ``uv sync``, ``uv add``
    and ``uv remove`` lock, then install what they locked into this host's environment,
    so the download gate judges it for this host.
    """
    headers = request.headers
    return scope_context(
        request.scope, headers.get(PROFILE_HEADER), headers.get("user-agent"), default, installing
    )


def scope_context(
    scope: Scope,
    header: str | None,
    user_agent: str | None,
    default: HostProfile,
    installing: bool = False,
) -> Context:
    """`request_context` from the ASGI scope and the two headers it reads."""
    universal = scope["path"].startswith("/universal/")
    if universal and not (installing and user_agent is not None and _uv_installs(user_agent)):
        ctx = UNIVERSAL
    else:
        in_url = None if universal else scope.get("path_params", {}).get("profile")
        told = (in_url, header, user_agent)
        memo_ok = sum(len(text) for text in told if text) <= MEMO_MAX_CHARS
        ctx = (_remembered if memo_ok else _context)(
            in_url, header, user_agent, default, installing
        )
    scope[SCOPE_KEY] = ctx
    return ctx


def _context(
    in_url: str | None,
    header: str | None,
    user_agent: str | None,
    default: HostProfile,
    installing: bool,
) -> Context:
    if in_url is not None:
        return Context(profile=merge(parse_profile(in_url, "url"), default))
    from_header = parse_profile(header, "header") if header else HostProfile()
    agent = parse_user_agent(user_agent)
    if agent.user_data_error:
        # A profile told through pip's user_data is held to the contract of the others:
        # a typo ignored would leave the fact unknown, and its wheels unjudged on it.
        raise BadRequest(f"user_data in the User-Agent: {agent.user_data_error}")
    if not installing and _locks(agent.subcommand):
        return UNIVERSAL
    fallback = default_for(agent, default)
    return Context(profile=merge(from_header, agent.user_data, agent.profile, fallback))


# A fleet sends few distinct User-Agents: parsing one (JSON for pip) on every request was
# a third of a cached page's time. Only successes are remembered (a malformed profile is
# a 400 each time), and only short texts, so nobody fills the memo with big keys.
_remembered = functools.lru_cache(maxsize=MEMO_ENTRIES)(_context)


def _locks(subcommand: tuple[str, ...]) -> bool:
    return _among(subcommand, LOCKING_SUBCOMMANDS)


def _uv_installs(user_agent: str) -> bool:
    memo_ok = len(user_agent) <= MEMO_MAX_CHARS
    return (_installs_remembered if memo_ok else _installs)(user_agent)


def _installs(user_agent: str) -> bool:
    agent = parse_user_agent(user_agent)
    return (
        agent.installer == "uv"
        and bool(agent.subcommand)
        and not _among(agent.subcommand, NOT_INSTALLING_SUBCOMMANDS)
    )


_installs_remembered = functools.lru_cache(maxsize=MEMO_ENTRIES)(_installs)


def _among(subcommand: tuple[str, ...], prefixes: frozenset[tuple[str, ...]]) -> bool:
    return any(subcommand[: len(prefix)] == prefix for prefix in prefixes)


def vary(request: Request) -> str:
    return scope_vary(request.scope)


def scope_vary(scope: Scope) -> str:
    if _fixed(scope):
        return VARY_FIXED
    return VARY_FILTERED


def file_vary(scope: Scope) -> str | None:
    """What a wheel file's answer depends on besides its URL: outside ``/p/<profile>/``,
    the request's host, whom the gate may refuse it (under ``/universal/``, when uv
    installs); a shared cache must not hand one host's answer to another."""
    return None if "profile" in scope.get("path_params", {}) else VARY_HOST


def _fixed(scope: Scope) -> bool:
    return "profile" in scope.get("path_params", {}) or scope["path"].startswith("/universal/")


def query_profile(request: Request) -> str:
    """The ``?profile=`` a page of hostfit's own was given ("" for none). A query string
    decodes a literal '+' to a space: ``sm=8.0+9.0`` typed unescaped is meant as written.
    Only a space inside a value is read as one; spaces around items are a person's
    (``python=3.11, impl=cp``, as a form sends them), which the profile's parser skips."""
    return _INNER_SPACE.sub("+", request.query_params.get("profile", "").strip())


_INNER_SPACE = re.compile(r"(?<=[^\s,=]) (?=[^\s,=])")
