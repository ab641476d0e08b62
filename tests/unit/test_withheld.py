"""`Withheld`, the gated transfer's body, against the ASGI ``send`` it writes to."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

import proxy.edge.responses
from proxy.core.models import File
from proxy.edge.responses import HOLD, KEEP, Withheld

FILE = File("w-1.0-py3-none-any.whl", "https://up.test/w.whl", {"sha256": "0" * 64})
BODY = bytes(range(256)) * 2048  # 512 KiB


class Sent:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        self.bodies.append(bytes(message["body"]))

    @property
    def data(self) -> bytes:
        return b"".join(self.bodies)


async def stream(out: Withheld, body: bytes, size: int = 100_000) -> bool:
    for at in range(0, len(body), size):
        if not await out.chunk(body[at : at + size]):
            return False
    return await out.end()


@pytest.fixture(autouse=True)
def quick_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy.edge.responses, "KEEPALIVE", 0.01)


async def test_without_admit_everything_goes_as_it_comes() -> None:
    sent = Sent()
    out = Withheld(sent, FILE, None)
    assert await stream(out, BODY)
    assert sent.data == BODY and len(sent.bodies) == 6


async def test_the_end_waits_for_the_verdict_with_a_trickle() -> None:
    sent, verdict = Sent(), asyncio.Event()

    async def admit() -> str | None:
        await verdict.wait()
        return None

    out = Withheld(sent, FILE, admit)
    for at in range(0, len(BODY), 100_000):
        assert await out.chunk(BODY[at : at + 100_000])
    assert sent.data == BODY[: len(BODY) - HOLD]  # at once, up to the held end
    ending = asyncio.create_task(out.end())
    await asyncio.sleep(0.2)
    trickled = len(sent.data) - (len(BODY) - HOLD)
    assert trickled > 3 and sent.bodies[-1] == BODY[len(sent.data) - 1 : len(sent.data)]
    verdict.set()
    assert await ending
    assert sent.data == BODY
    out.close()


async def test_the_last_kib_never_leaves_before_the_verdict() -> None:
    sent = Sent()

    async def never() -> str | None:
        await asyncio.sleep(3600)
        return None

    out = Withheld(sent, FILE, never)
    small = BODY[: KEEP + 20]  # held whole: only what is above KEEP may trickle
    ending = asyncio.create_task(stream(out, small, 100))
    await asyncio.sleep(1.0)
    assert len(sent.data) == len(small) - KEEP
    ending.cancel()
    out.close()


async def test_a_misfit_is_cut_short_as_soon_as_it_is_judged() -> None:
    sent = Sent()

    async def refuse() -> str | None:
        return "glibc: needs 2.34, host has 2.17"

    out = Withheld(sent, FILE, refuse)
    assert await out.chunk(BODY[:100_000])
    await asyncio.sleep(0)  # judged
    assert not await out.chunk(BODY[100_000:200_000])
    assert len(sent.data) == 100_000 - HOLD  # nothing more was sent
    out.close()
