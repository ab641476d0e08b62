"""A big page goes out in slices, taking turns with the other answers; a small one in
one message (`proxy.edge.responses.PageResponse`)."""

from __future__ import annotations

import asyncio
import random

from starlette.types import Message, Receive, Scope, Send

from proxy.edge.responses import PageResponse

SCOPE: Scope = {"type": "http", "method": "GET", "headers": []}


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


RECEIVE: Receive = _receive


def _page(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def test_a_small_page_goes_out_in_one_message() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    body = _page(PageResponse.slice_size, 1)
    await PageResponse(body, media_type="application/json")(SCOPE, RECEIVE, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == body and not sent[1].get("more_body", False)


async def test_big_pages_arrive_whole_and_take_turns() -> None:
    log: list[tuple[str, Message]] = []

    def sender(who: str) -> Send:
        async def send(message: Message) -> None:
            log.append((who, message))

        return send

    pages = {who: _page(5 * PageResponse.slice_size + 17, seed) for seed, who in enumerate("ab")}
    await asyncio.gather(
        *(
            PageResponse(body, media_type="application/json")(SCOPE, RECEIVE, sender(who))
            for who, body in pages.items()
        )
    )
    for who, body in pages.items():
        mine = [m for w, m in log if w == who]
        assert mine[0]["type"] == "http.response.start"
        assert dict(mine[0]["headers"])[b"content-length"] == str(len(body)).encode()
        slices = [bytes(m["body"]) for m in mine[1:]]
        assert b"".join(slices) == body
        assert len(slices) == 6 and all(len(s) <= PageResponse.slice_size for s in slices)
        assert [m.get("more_body") for m in mine[1:]] == [True] * 5 + [False]
    # Neither answer is sent whole before the other starts: they alternate.
    bodies = [who for who, m in log if m["type"] == "http.response.body"]
    assert bodies[:4] == ["a", "b", "a", "b"]
