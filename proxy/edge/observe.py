"""What hostfit tells about its traffic: request ids, request metrics, the access log,
and upstream metrics.

`Observe` is a pure ASGI middleware around the routes. Per HTTP request it:
- takes the client's ``X-Request-Id`` when it is sane (1-64 characters of
  ``[A-Za-z0-9._:-]``), or makes one, puts it in `proxy.edge.logs.request_id` for every log
  line made on the request's behalf, and echoes it in the response's ``X-Request-Id``;
- counts the response by route template (the router leaves the matched route in the
  scope; a request no route matched is "unmatched") and status, its body bytes, and the
  time to its last byte (written to the metrics once per turn of the event loop:
  `proxy.edge.metrics.Metrics.responded`);
- writes one access log line (``hostfit.access``) with the method, route, path, status,
  duration, bytes, the User-Agent's class and the host profile hostfit read from it.

`ObservedTransport` wraps the transport every upstream request passes through (inside
the retries, so each attempt counts): requests by origin and status, errors by class,
time to the answer's headers, and one ``hostfit.upstream`` log line each; the bytes of
the answers to file downloads (requests whose extensions say ``KIND: "file"``), as they
arrive.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from random import getrandbits

import httpx
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.core.origins import origin_of
from proxy.core.profile import HostProfile
from proxy.core.redact import redact
from proxy.edge.logs import request_id
from proxy.edge.metrics import Metrics
from proxy.edge.request_profile import SCOPE_KEY, request_context
from proxy.errors import HostfitError

HEADER = "X-Request-Id"
_ID_KEY = HEADER.lower().encode()  # as ASGI servers give header names: lowercase bytes
KIND = "hostfit.kind"  # a request extension: what the request is for ("file": a download)
UNMATCHED = "unmatched"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

access_log = logging.getLogger("hostfit.access")
upstream_log = logging.getLogger("hostfit.upstream")


def route_templates(routes: Sequence[BaseRoute], prefix: str = "") -> dict[int, str]:
    """id(route) -> its full path template, mounts included."""
    found: dict[int, str] = {}
    for route in routes:
        if isinstance(route, Route):
            found[id(route)] = prefix + route.path
        elif isinstance(route, Mount):
            found[id(route)] = prefix + route.path + "/{path}"
            found.update(route_templates(route.routes, prefix + route.path))
    return found


def incoming_id(value: str | None) -> str:
    if value and _SANE_ID.fullmatch(value):
        return value
    # A random (version 4) UUID's 128 bits, in hex. An id needs to be unique, not secret:
    # the process's Mersenne Twister (seeded from the OS in each worker) instead of a
    # getrandom system call per request.
    return getrandbits(128).to_bytes(16, "big").hex()  # a third of an f-string's time


def agent_class(user_agent: str) -> str:
    """pip, uv, browser or other: a bounded summary of a User-Agent."""
    lowered = user_agent.lower()
    for installer in ("pip", "uv"):
        if lowered.startswith(installer + "/"):
            return installer
    return "browser" if lowered.startswith("mozilla/") else "other"


class Observe:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], access: bool = True) -> None:
        self.app = app
        self.templates = route_templates(routes)
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        told = b""
        for key, value in scope["headers"]:  # the one header read on every request
            if key == _ID_KEY:
                told = value
                break
        rid = incoming_id(told.decode("latin-1"))
        id_header = (_ID_KEY, rid.encode())
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 500
        sent = 0

        async def observed_send(message: Message) -> None:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - start
            self._record(scope, status, sent, seconds)
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, sent: int, seconds: float) -> None:
        route = self.templates.get(id(scope.get("route")), UNMATCHED)
        app = scope.get("app")
        # The app's own attribute where it has one (`proxy.edge.app.Hostfit`): its state's
        # costs a Python call.
        services = getattr(app, "services", None) or getattr(
            getattr(app, "state", None), "services", None
        )
        metrics: Metrics | None = getattr(services, "metrics", None)
        if metrics is not None:
            metrics.responded(route, status, seconds, sent)
        if not self.access:
            return
        headers = dict(scope["headers"])
        agent = agent_class(headers.get(b"user-agent", b"").decode("latin-1"))
        fields = {
            "method": scope["method"],
            "route": route,
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "bytes": sent,
            "user_agent": agent,
        }
        profile = _profile(scope, services)
        if profile:
            fields["profile"] = profile
        access_log.info(
            "%s %s %d %.1fms %dB %s%s",
            scope["method"],
            scope["path"],
            status,
            seconds * 1000,
            sent,
            agent,
            f" [{profile}]" if profile else "",
            extra=fields,
        )


def _profile(scope: Scope, services: object) -> str:
    """The host profile the request told (URL, header, User-Agent), for index routes:
    the one its route read (`request_context` leaves it in the scope), else read here."""
    ctx = scope.get(SCOPE_KEY)
    if ctx is None:
        default = getattr(services, "default_profile", None)
        if default is None or not scope["path"].startswith(("/simple/", "/files/", "/p/")):
            return ""
        try:
            ctx = request_context(Request(scope), default)
        except HostfitError:
            return ""
    return _shown(ctx.profile)


@functools.lru_cache(maxsize=4096)
def _shown(profile: HostProfile) -> str:
    """A fleet has few profiles: each one's text is made once, not on every access line."""
    return ",".join(f"{k}={v}" for k, v in profile.values().items())


class ObservedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = origin_of(str(request.url))
        label = redact(str(origin)) if origin else "other"
        start = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            seconds = time.perf_counter() - start
            self.metrics.upstream_requests.labels(origin=label, status="error").inc()
            self.metrics.upstream_errors.labels(origin=label, error=type(exc).__name__).inc()
            self.metrics.upstream_seconds.labels(origin=label).observe(seconds)
            upstream_log.info(
                "upstream %s %s failed after %.0f ms: %s",
                request.method,
                redact(str(request.url)),
                seconds * 1000,
                type(exc).__name__,
                extra={"origin": label, "error": type(exc).__name__},
            )
            raise
        seconds = time.perf_counter() - start
        if request.extensions.get(KIND) == "file":
            counted = self.metrics.upstream_file_bytes.labels(origin=label)
            response.stream = _Counted(response.stream, counted.inc)
        self.metrics.upstream_requests.labels(origin=label, status=str(response.status_code)).inc()
        self.metrics.upstream_seconds.labels(origin=label).observe(seconds)
        upstream_log.info(
            "upstream %s %s: %d in %.0f ms",
            request.method,
            redact(str(request.url)),
            response.status_code,
            seconds * 1000,
            extra={"origin": label, "status": response.status_code},
        )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Counted(httpx.AsyncByteStream):
    """A response body that tells ``count`` the size of each chunk as it is read."""

    def __init__(
        self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, count: Callable[[int], None]
    ) -> None:
        assert isinstance(inner, httpx.AsyncByteStream)
        self.inner = inner
        self.count = count

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.count(len(chunk))
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()
