"""A big page goes out in slices, taking turns with the other answers; a small one in
one message (`proxy.edge.responses.send_page`)."""

from __future__ import annotations

import asyncio
import random

from starlette.types import Message, Send

from proxy.edge.responses import PAGE_SLICE, send_page


def _page(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(len(body)).encode())]


async def test_a_small_page_goes_out_in_one_message() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    body = _page(PAGE_SLICE, 1)
    await send_page(send, 200, _headers(body), body)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200 and sent[0]["headers"] == _headers(body)
    assert sent[1]["body"] == body and not sent[1].get("more_body", False)


async def test_big_pages_arrive_whole_and_take_turns() -> None:
    log: list[tuple[str, Message]] = []

    def sender(who: str) -> Send:
        async def send(message: Message) -> None:
            log.append((who, message))

        return send

    pages = {who: _page(5 * PAGE_SLICE + 17, seed) for seed, who in enumerate("ab")}
    await asyncio.gather(
        *(send_page(sender(who), 200, _headers(body), body) for who, body in pages.items())
    )
    for who, body in pages.items():
        mine = [m for w, m in log if w == who]
        assert mine[0]["type"] == "http.response.start"
        slices = [bytes(m["body"]) for m in mine[1:]]
        assert b"".join(slices) == body
        assert len(slices) == 6 and all(len(s) <= PAGE_SLICE for s in slices)
        assert [m.get("more_body") for m in mine[1:]] == [True] * 5 + [False]
    # Neither answer is sent whole before the other starts: they alternate.
    bodies = [who for who, m in log if m["type"] == "http.response.body"]
    assert bodies[:4] == ["a", "b", "a", "b"]
