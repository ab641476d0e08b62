"""Per-request derivations are remembered (User-Agent -> context, Accept -> format,
profile -> string): remembering must never change an answer."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from proxy.core.negotiate import HTML_LEGACY, JSON_V1, negotiate
from proxy.core.profile import HostProfile, merge, parse_profile
from proxy.edge.request_profile import MEMO_MAX_CHARS, request_context
from proxy.errors import BadRequest, NotAcceptable

PIP = (
    'pip/24.0 {"installer":{"name":"pip","version":"24.0"},"python":"3.11.7",'
    '"implementation":{"name":"CPython","version":"3.11.7"},'
    '"distro":{"name":"Debian GNU/Linux","libc":{"lib":"glibc","version":"2.28"}},'
    '"system":{"name":"Linux","release":"6.1"},"cpu":"x86_64"}'
)


def request(path: str = "/simple/demo/", **headers: str) -> Request:
    raw = [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "path": path, "headers": raw, "path_params": {}})


def test_the_same_agent_gets_the_same_context_and_the_default_still_counts() -> None:
    first = request_context(request(user_agent=PIP), HostProfile())
    assert first.profile.to_string() == "arch=x86_64,impl=cp,libc=glibc-2.28,python=3.11"
    assert request_context(request(user_agent=PIP), HostProfile()) == first
    default = parse_profile("cuda=none,libc=glibc-2.17", "default")
    told = request_context(request(user_agent=PIP), default).profile
    assert told == merge(first.profile, default)
    assert told.to_string() == "arch=x86_64,cuda=none,impl=cp,libc=glibc-2.28,python=3.11"


def test_a_malformed_header_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(BadRequest):
            request_context(request(x_hostfit_profile="libc=glibc"), HostProfile())


def test_a_long_agent_is_read_as_a_short_one_is() -> None:
    padded = PIP[:-1] + ',"x":"' + "y" * MEMO_MAX_CHARS + '"}'
    long = request_context(request(user_agent=padded), HostProfile())
    assert long == request_context(request(user_agent=PIP), HostProfile())


def test_the_universal_view_is_not_taken_from_memory_of_another_path() -> None:
    filtered = request_context(request(user_agent=PIP), HostProfile())
    universal = request_context(request("/universal/simple/demo/", user_agent=PIP), HostProfile())
    assert filtered.view == "filtered" and universal.view == "universal"


def test_negotiation_remembered_and_refusals_not() -> None:
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    assert negotiate(accept) == negotiate(accept) == JSON_V1
    assert negotiate("text/html") == HTML_LEGACY
    for _ in range(2):
        with pytest.raises(NotAcceptable):
            negotiate("image/png")
    assert negotiate("text/html;q=0.5, " + "x/y;q=0, " * 200 + JSON_V1) == JSON_V1


def test_profile_strings_follow_the_profile() -> None:
    a = parse_profile("python=3.11,libc=glibc-2.28", "url")
    b = parse_profile("python=3.12,libc=glibc-2.28", "url")
    assert a.to_string() == "libc=glibc-2.28,python=3.11"
    assert b.to_string() == "libc=glibc-2.28,python=3.12"
    assert a.to_string(("python",)) == "python=3.11"
    assert not HostProfile() and a
