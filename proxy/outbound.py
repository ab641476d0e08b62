"""The one check every outbound request passes, in the server and in analysis workers.

An httpx request hook runs before each request is sent, every redirect hop
included, and whatever transport or proxy carries it: a request to an origin the
`Outbound` policy does not allow raises `OriginRefused` (an httpx error, so each
caller's existing translation into `UpstreamError` names the refusal), and a request
to an origin with credentials gets its ``Authorization`` header here. httpx drops
that header itself when a redirect leaves the origin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from proxy.core.origins import Outbound


class OriginRefused(httpx.RequestError):
    """A request (or a redirect) to an origin hostfit may not contact."""


def check(outbound: Outbound, request: httpx.Request) -> None:
    url = str(request.url)
    why = outbound.refusal(url)
    if why is not None:
        raise OriginRefused(why, request=request)
    if "authorization" not in request.headers:
        authorization = outbound.authorization(url)
        if authorization is not None:
            request.headers["Authorization"] = authorization


def request_hooks(outbound: Outbound) -> dict[str, list[Callable[[httpx.Request], None]]]:
    """``event_hooks`` for an `httpx.Client`."""
    return {"request": [lambda request: check(outbound, request)]}


def async_request_hooks(
    outbound: Outbound,
) -> dict[str, list[Callable[[httpx.Request], Awaitable[None]]]]:
    """``event_hooks`` for an `httpx.AsyncClient`."""

    async def hook(request: httpx.Request) -> None:
        check(outbound, request)

    return {"request": [hook]}
