"""The retrying transport: what is retried, how long it waits, and what is never retried."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.retry import (
    DEFAULT_POLICY,
    BodyTooLarge,
    RetryingSyncTransport,
    RetryingTransport,
    RetryPolicy,
    extensions,
    transient,
)


class Script:
    """An inner transport's answers, in order: a status, or an exception to raise."""

    def __init__(self, *steps: int | Exception | httpx.Response) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return httpx.Response(step, text=f"answer {step}")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def sleep_sync(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def client(script: Script, clock: Clock, policy: RetryPolicy = DEFAULT_POLICY) -> httpx.AsyncClient:
    transport = RetryingTransport(
        httpx.MockTransport(script), policy, sleep=clock.sleep, clock=clock
    )
    return httpx.AsyncClient(transport=transport)


def reset() -> httpx.ReadError:
    return httpx.ReadError("[Errno 104] Connection reset by peer")


async def test_transient_failures_are_retried_then_answered() -> None:
    script, clock = Script(httpx.ConnectError("refused"), reset(), 503, 200), Clock()
    async with client(script, clock, RetryPolicy(attempts=4)) as http:
        response = await http.get("http://up.test/simple/demo/")
    assert response.status_code == 200 and response.text == "answer 200"
    assert script.calls == 4
    assert len(clock.waits) == 3
    for n, wait in enumerate(clock.waits, start=1):
        assert 0.125 * 2 ** (n - 1) <= wait <= 0.25 * 2 ** (n - 1)  # jittered, doubling


async def test_attempts_are_bounded_and_the_last_answer_is_kept() -> None:
    script, clock = Script(502, 503, 504, 200), Clock()
    async with client(script, clock) as http:
        response = await http.get("http://up.test/simple/demo/")
    assert response.status_code == 504  # the third attempt's answer, with its status
    assert script.calls == 3
    script, clock = Script(reset()), Clock()
    async with client(script, clock) as http:
        with pytest.raises(httpx.ReadError):
            await http.get("http://up.test/simple/demo/")
    assert script.calls == 3


@pytest.mark.parametrize(
    "step",
    [500, 404, 429, httpx.ReadTimeout("slow"), httpx.UnsupportedProtocol("ftp")],
)
async def test_answers_and_slow_upstreams_are_not_retried(step: int | Exception) -> None:
    script, clock = Script(step, 200), Clock()
    async with client(script, clock) as http:
        try:
            response = await http.get("http://up.test/simple/demo/")
        except httpx.HTTPError:
            pass
        else:
            assert response.status_code == step
    assert script.calls == 1 and clock.waits == []


async def test_only_idempotent_methods_are_retried() -> None:
    script, clock = Script(503, 200), Clock()
    async with client(script, clock) as http:
        assert (await http.post("http://up.test/x", content=b"x")).status_code == 503
        assert script.calls == 1
        assert (await http.head("http://up.test/x")).status_code == 200
        assert script.calls == 2


async def test_the_deadline_bounds_the_retries() -> None:
    script, clock = Script(503), Clock()
    async with client(script, clock, RetryPolicy(attempts=10, base=1.0, cap=1.0)) as http:
        asked = extensions(deadline=clock.now + 2.2)
        response = await http.get("http://up.test/simple/demo/", extensions=asked)
    assert response.status_code == 503
    assert sum(clock.waits) < 2.2
    assert script.calls == len(clock.waits) + 1 <= 4


async def test_retry_after_is_honoured_when_short_and_ends_retries_when_long() -> None:
    short = httpx.Response(503, headers={"Retry-After": "1"})
    script, clock = Script(short, 200), Clock()
    async with client(script, clock) as http:
        assert (await http.get("http://up.test/")).status_code == 200
    assert clock.waits == [1.0]
    long = httpx.Response(503, headers={"Retry-After": "3600"})
    script, clock = Script(long, 200), Clock()
    async with client(script, clock) as http:
        assert (await http.get("http://up.test/")).status_code == 503
    assert script.calls == 1


class Broken(httpx.AsyncByteStream):
    """Half a body, then the connection drops."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"half": '
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


async def test_a_buffered_body_cut_short_is_retried() -> None:
    script = Script(httpx.Response(200, stream=Broken()), httpx.Response(200, json={"ok": 1}))
    clock = Clock()
    async with client(script, clock) as http:
        response = await http.get("http://up.test/", extensions=extensions(buffer=1000))
        assert response.json() == {"ok": 1}
        assert script.calls == 2
        # Unbuffered (a streamed file), the cut reaches the caller: never retried here.
        script.steps = [httpx.Response(200, stream=Broken())]
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("http://up.test/")


async def test_a_buffered_body_too_large_is_refused_once() -> None:
    script, clock = Script(httpx.Response(200, content=b"x" * 2000)), Clock()
    async with client(script, clock) as http:
        with pytest.raises(BodyTooLarge):
            await http.get("http://up.test/", extensions=extensions(buffer=1000))
    assert script.calls == 1


def test_untrusted_certificates_are_not_transient() -> None:
    error = httpx.ConnectError("TLS: the certificate of https://up.test is not trusted")
    error.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    assert not transient(error)
    assert transient(httpx.ConnectError("refused"))
    assert not transient(httpx.PoolTimeout("busy"))


def test_the_blocking_transport_retries_the_same_way() -> None:
    script, clock = Script(httpx.ConnectError("refused"), 502, 206), Clock()
    transport = RetryingSyncTransport(
        httpx.MockTransport(script), sleep=clock.sleep_sync, clock=clock
    )
    with httpx.Client(transport=transport) as http:
        response = http.get("http://up.test/f.whl", headers={"Range": "bytes=-10"})
    assert response.status_code == 206
    assert script.calls == 3 and len(clock.waits) == 2


def test_backoff_is_jittered_between_half_and_whole_and_capped() -> None:
    policy = RetryPolicy(base=0.5, cap=2.0)
    assert policy.backoff(1, lambda: 0.0) == 0.25
    assert policy.backoff(1, lambda: 1.0) == 0.5
    assert policy.backoff(5, lambda: 1.0) == 2.0
    assert policy.pause(3, None, 0.0) is None  # attempts spent
    assert policy.pause(1, 10.0, 9.9) is None  # no time left
