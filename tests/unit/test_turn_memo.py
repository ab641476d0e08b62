"""One answer per page per turn of the event loop (`TurnMemo`): the requests that start in
one turn share the first answer made in it; a change is seen from the next turn; an
answer whose making waited for anything is not shared; errors are not kept."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from packaging.utils import NormalizedName

from proxy.core.models import Page
from proxy.edge.index import UNIVERSAL, Context, Index, IndexLayer, per_request
from proxy.edge.layers.page_cache import CachedUpstream
from proxy.edge.layers.turn import TurnMemo
from proxy.edge.layers.upstream import HttpUpstream
from proxy.errors import NotFound
from tests.unit.conftest import Wheels, host
from tests.unit.fakes import Clock, FakeIndex, MemoryStore

DEMO = NormalizedName("demo")


class Probe(IndexLayer):
    """Counts the requests that reach the stack below the memo, and does one effect per
    request, as the host filter counts the files it hides."""

    def __init__(self, inner: Index, *, wait: bool = False) -> None:
        super().__init__(inner)
        self.calls = 0
        self.wait = wait
        self.effects: list[str] = []

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        self.calls += 1
        if self.wait:
            await asyncio.sleep(0)  # a store read, an upstream fetch: the loop turns
        page = await self.inner.page(name, ctx)
        per_request(self.effects.append, page.revision)
        return page


@pytest.fixture
def upstream(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock
) -> CachedUpstream:
    return CachedUpstream(HttpUpstream(index.url, client), store, ttl=60.0, clock=clock)


async def test_the_requests_of_one_turn_share_its_first_answer(
    index: FakeIndex, upstream: CachedUpstream, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    probe = Probe(upstream)
    memo = TurnMemo(probe)
    first = await memo.page(DEMO, UNIVERSAL)  # fetched: it waited, so nothing is kept
    assert probe.calls == 1
    # Ten requests started in one turn (as a worker under load starts them): one answer.
    pages = await asyncio.gather(*(memo.page(DEMO, UNIVERSAL) for _ in range(10)))
    assert probe.calls == 2
    assert all(page is pages[0] for page in pages) and pages[0] is first
    # Every request had its effect, those handed the kept answer too.
    assert probe.effects == [first.revision] * 11
    # Other contexts and names are answers of their own.
    other = host("python=3.11,impl=cp,arch=x86_64,libc=glibc-2.28")
    await asyncio.gather(memo.page(DEMO, other), memo.page(DEMO, other))
    assert probe.calls == 3


async def test_a_change_during_a_turn_is_seen_from_the_next(
    index: FakeIndex, upstream: CachedUpstream, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    probe = Probe(upstream)
    memo = TurnMemo(probe)
    await memo.page(DEMO, UNIVERSAL)
    before = await memo.page(DEMO, UNIVERSAL)
    # The upstream publishes a release and the page's TTL runs out, within this turn.
    index.add("demo", wheels.demo_2)
    clock.advance(61)
    assert await memo.page(DEMO, UNIVERSAL) is before  # the same turn: its first answer
    await asyncio.sleep(0)  # the next turn
    after = await memo.page(DEMO, UNIVERSAL)
    assert {f.filename for f in after.files} == {wheels.demo_1.name, wheels.demo_2.name}
    assert after.revision != before.revision


async def test_an_answer_whose_making_waited_is_not_shared(
    index: FakeIndex, upstream: CachedUpstream, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    probe = Probe(upstream, wait=True)
    memo = TurnMemo(probe)
    await asyncio.gather(*(memo.page(DEMO, UNIVERSAL) for _ in range(5)))
    await asyncio.gather(*(memo.page(DEMO, UNIVERSAL) for _ in range(5)))
    assert probe.calls == 10  # each rests on what was true when it began


async def test_errors_are_not_kept(index: FakeIndex, upstream: CachedUpstream) -> None:
    probe = Probe(upstream)
    memo = TurnMemo(probe)
    with pytest.raises(NotFound):
        await memo.page(NormalizedName("absent"), UNIVERSAL)
    results = await asyncio.gather(
        *(memo.page(NormalizedName("absent"), UNIVERSAL) for _ in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, NotFound) for r in results)
    assert probe.calls == 4


def test_a_turn_of_a_loop_that_stopped_is_over(
    index: FakeIndex, upstream: CachedUpstream, clock: Clock, wheels: Wheels
) -> None:
    """A loop stopped before its clear ran (an app's, in tests): another loop does not
    get its answers."""
    index.add("demo", wheels.demo_1)
    probe = Probe(upstream)
    memo = TurnMemo(probe)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()

    async def then_stop() -> Page:
        asyncio.get_running_loop().stop()  # at the end of this turn, before its clear
        return await memo.page(DEMO, UNIVERSAL)

    try:
        first.run_until_complete(memo.page(DEMO, UNIVERSAL))
        before = first.run_until_complete(then_stop())
        index.add("demo", wheels.demo_2)
        clock.advance(61)
        after = second.run_until_complete(memo.page(DEMO, UNIVERSAL))
    finally:
        first.close()
        second.close()
    assert after is not before and len(after.files) == 2
