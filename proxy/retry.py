"""Transient upstream failures are retried here, once, for every idempotent request.

`RetryingTransport` wraps an httpx transport: request in, response out. A GET or HEAD
that fails to connect, is reset before its answer is complete, or is answered 502, 503
or 504 is sent again after a jittered exponential backoff, while attempts remain and the
request's deadline leaves room. A persistent failure reaches the caller as the last
error or answer, so messages still name the status.

Nothing is retried once the caller holds the response: a transport returns at the
headers, so no byte of a streamed body has reached a client when a retry happens. A
request may ask for its body to be read here, inside the retries (`extensions(buffer=N)`,
for pages and other small answers), so that a reset mid-body is retried too. A body cut
short after the response was returned is the caller's (files: resume with a Range
request, or fail visibly).

Request extensions (`extensions`): ``hostfit.deadline`` is a `time.monotonic()` instant
after which no attempt starts; ``hostfit.buffer`` is the most bytes to read here.
`RetryingSyncTransport` is the same for blocking clients (analysis range reads).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from proxy.core.redact import redact

log = logging.getLogger("hostfit.upstream")

IDEMPOTENT = frozenset({"GET", "HEAD"})
RETRY_STATUSES = frozenset({502, 503, 504})
DEADLINE = "hostfit.deadline"
BUFFER = "hostfit.buffer"
# Errors raised before an answer was complete; retrying an idempotent request is safe.
TRANSIENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


class BodyTooLarge(httpx.TransportError):
    """A buffered answer grew past its limit (never retried)."""


def extensions(*, deadline: float | None = None, buffer: int | None = None) -> dict[str, Any]:
    """Request extensions: ``deadline`` is a `time.monotonic()` instant, ``buffer`` a size."""
    found: dict[str, Any] = {}
    if deadline is not None:
        found[DEADLINE] = deadline
    if buffer is not None:
        found[BUFFER] = buffer
    return found


def transient(exc: BaseException) -> bool:
    """Worth another attempt: the connection failed or broke, and not over TLS trust."""
    if not isinstance(exc, TRANSIENT):
        return False
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return False  # an untrusted certificate stays untrusted
        cause = cause.__cause__ or cause.__context__
    return True


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds; None when absent or an HTTP date (not worth waiting for)."""
    value = headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # in all, the first included
    base: float = 0.25  # seconds before the first retry, before jitter
    cap: float = 2.0  # the longest wait between attempts

    def backoff(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        """Between half and all of ``base * 2**(failures-1)``, capped."""
        ceiling: float = min(self.cap, self.base * 2.0 ** (failures - 1))
        return ceiling * (0.5 + draw() / 2)

    def pause(
        self, failures: int, deadline: float | None, now: float, asked: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt; None: give up now.

        ``asked`` is the upstream's ``Retry-After``: honoured when short, else no retry.
        """
        if failures >= self.attempts:
            return None
        wait = self.backoff(failures)
        if asked is not None:
            if asked > self.cap:
                return None
            wait = max(wait, asked)
        if deadline is not None and now + wait >= deadline:
            return None
        return wait


DEFAULT_POLICY = RetryPolicy()


class RetryingTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.policy = policy
        self.sleep = sleep
        self.clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in IDEMPOTENT:
            return await self.inner.handle_async_request(request)
        limit: int | None = request.extensions.get(BUFFER)
        attempts = _Attempts(self.policy, request, self.clock)
        while True:
            try:
                response = await self.inner.handle_async_request(request)
                if limit is not None and response.status_code not in RETRY_STATUSES:
                    response = await _buffered(request, response, limit)
            except httpx.TransportError as exc:
                if (wait := attempts.after_error(exc)) is None:
                    raise
            else:
                if (wait := attempts.after_response(response)) is None:
                    return response
                await response.aclose()
            await self.sleep(wait)

    async def aclose(self) -> None:
        await self.inner.aclose()


class RetryingSyncTransport(httpx.BaseTransport):
    """`RetryingTransport` for a blocking `httpx.Client` (no buffering)."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.policy = policy
        self.sleep = sleep
        self.clock = clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method not in IDEMPOTENT:
            return self.inner.handle_request(request)
        attempts = _Attempts(self.policy, request, self.clock)
        while True:
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError as exc:
                if (wait := attempts.after_error(exc)) is None:
                    raise
            else:
                if (wait := attempts.after_response(response)) is None:
                    return response
                response.close()
            self.sleep(wait)

    def close(self) -> None:
        self.inner.close()


class _Attempts:
    """One request's retry bookkeeping, shared by the async and the blocking transport:
    after each attempt, how long to wait before the next one, or None to stop there."""

    def __init__(
        self, policy: RetryPolicy, request: httpx.Request, clock: Callable[[], float]
    ) -> None:
        self.policy = policy
        self.request = request
        self.clock = clock
        self.deadline: float | None = request.extensions.get(DEADLINE)
        self.failures = 0

    def after_error(self, exc: httpx.TransportError) -> float | None:
        self.failures += 1
        wait = self.policy.pause(self.failures, self.deadline, self.clock())
        if wait is None or not transient(exc):
            return None
        self._log(f"{type(exc).__name__}: {exc}", wait)
        return wait

    def after_response(self, response: httpx.Response) -> float | None:
        if response.status_code not in RETRY_STATUSES:
            return None
        self.failures += 1
        asked = retry_after(response.headers)
        wait = self.policy.pause(self.failures, self.deadline, self.clock(), asked)
        if wait is not None:
            self._log(f"HTTP {response.status_code}", wait)
        return wait

    def _log(self, why: str, wait: float) -> None:
        log.info(
            "%s %s: %s; retrying in %.2fs (attempt %d)",
            self.request.method,
            redact(str(self.request.url)),
            redact(why),
            wait,
            self.failures + 1,
        )


async def _buffered(request: httpx.Request, response: httpx.Response, limit: int) -> httpx.Response:
    """The response with its raw body read here, where a reset can still be retried."""
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"answer larger than {limit} bytes", request=request)
            chunks.append(chunk)
    finally:
        await stream.aclose()
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=_Replay(chunks),
        extensions=response.extensions,
    )


class _Replay(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
