"""One answer per page per turn of the event loop, for every request of that turn.

Under load a worker starts many requests in one turn of its event loop (about twenty at
64 connections), most of them for the same few pages; each asked the whole stack again,
and each layer checked that its cached answer still held: about a third of a cached
page's time. Here a page asked for with the same name and context in the same turn is
the answer made for the first of them.

Why no request can tell: the requests of one turn all arrived before it began (a request
read in this turn starts its work in the next), so none of them waited for another's
answer, or for anything that happened during the turn; serving them all the state of the
turn's first answer is an order they could have run in. What happens during the turn (a
report arriving, a rule reloaded, a TTL running out, an admin's purge) is seen from the
next one: the memo is emptied before any request read after the turn, and before any task
woken after the turn's first answer was kept (one woken before it, already in flight,
may still be handed it: no client can have heard of a later change before asking). So
code that changes what a page holds must not ask `page` of the top of the stack before
it yields (none does: the admin routes, the UI and explain ask the layers below). An
answer whose making waited for anything (an upstream fetch, a walk, the state store)
ended in a later turn than it began, and is not kept: it may rest on what was true before.

A layer's per-request effects (a metric counted per page served) go through
`proxy.edge.index.per_request`, and are done again for each request handed the answer.
Errors are not kept: every request that meets one raises its own.
"""

from __future__ import annotations

import asyncio

from packaging.utils import NormalizedName

from proxy.core.models import Page
from proxy.edge.index import Context, Effect, Index, IndexLayer, effects_collected


class TurnMemo(IndexLayer):
    def __init__(self, inner: Index) -> None:
        super().__init__(inner)
        self._answers: dict[tuple[str, Context], tuple[Page, tuple[Effect, ...]]] = {}
        # (its loop, a token) while a turn uses the memo
        self._turn: tuple[asyncio.AbstractEventLoop, object] | None = None

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        loop = asyncio.get_running_loop()
        turn = self._turn
        if turn is None or turn[0] is not loop:
            # A turn of another loop (one that stopped before its clear ran: another
            # app's, in tests) is over too.
            self._answers.clear()
            turn = self._turn = (loop, object())
            # Runs before anything read after this turn: queued ahead of it.
            loop.call_soon(self._next_turn)
        key = (name, ctx)
        held = self._answers.get(key)
        if held is not None:
            page, effects = held
            for effect, argument in effects:
                effect(argument)
            return page
        with effects_collected() as effects_made:
            page = await self.inner.page(name, ctx)
        if self._turn is turn:  # made without waiting for anything: this turn's state
            self._answers[key] = (page, tuple(effects_made))
        return page

    def _next_turn(self) -> None:
        self._answers.clear()
        self._turn = None
