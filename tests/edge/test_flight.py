"""The one single flight."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from proxy.edge.flight import Flights
from proxy.errors import UpstreamError


async def test_concurrent_callers_share_one_run() -> None:
    flights: Flights[str, int] = Flights()
    runs = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return 42

    callers = [asyncio.create_task(flights.run("k", work)) for _ in range(10)]
    await asyncio.sleep(0)
    assert "k" in flights and len(flights) == 1
    release.set()
    assert await asyncio.gather(*callers) == [42] * 10
    assert runs == 1
    assert "k" not in flights  # free again once ended
    assert await flights.run("k", work) == 42
    assert runs == 2


async def test_an_error_reaches_every_waiter_and_the_next_caller_tries_again() -> None:
    flights: Flights[str, int] = Flights()
    attempts = 0

    async def failing() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        raise RuntimeError(f"attempt {attempts}")

    results = await asyncio.gather(
        *(flights.run("k", failing) for _ in range(5)), return_exceptions=True
    )
    assert [str(r) for r in results] == ["attempt 1"] * 5
    with pytest.raises(RuntimeError, match="attempt 2"):
        await flights.run("k", failing)


async def test_a_caller_giving_up_leaves_the_work_running_for_the_others() -> None:
    flights: Flights[str, str] = Flights()
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "made"

    first = asyncio.create_task(flights.run("k", work))
    second = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    assert first.cancelled()
    release.set()
    assert await second == "made"


async def test_work_every_caller_left_still_ends_and_its_error_is_not_reported_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flights: Flights[str, int] = Flights()
    ended = asyncio.Event()

    async def failing() -> int:
        await asyncio.sleep(0.01)
        ended.set()
        raise UpstreamError("http://127.0.0.1/", "nobody listens")

    caller = asyncio.create_task(flights.run("k", failing))
    await asyncio.sleep(0)
    caller.cancel()
    await ended.wait()
    await asyncio.sleep(0.01)
    assert "k" not in flights
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()  # an unretrieved exception is reported when its task is collected
    assert "never retrieved" not in caplog.text
    assert "nobody listens" not in caplog.text  # the callers' to answer, and none is left


async def test_a_bug_in_the_work_is_logged_once_with_its_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flights: Flights[str, int] = Flights()

    async def buggy() -> int:
        raise KeyError("oops")

    with caplog.at_level(logging.ERROR, logger="hostfit.flight"):
        results = await asyncio.gather(
            flights.run("k", buggy), flights.run("k", buggy), return_exceptions=True
        )
    assert all(isinstance(r, KeyError) for r in results)
    assert [r.getMessage() for r in caplog.records] == ["work for 'k' failed"]


async def test_close_cancels_the_work_still_running() -> None:
    flights: Flights[str, int] = Flights()
    started = asyncio.Event()

    async def forever() -> int:
        started.set()
        await asyncio.Event().wait()
        return 0

    task = flights.start("k", forever)
    await started.wait()
    await flights.close()
    assert task.cancelled()
    assert len(flights) == 0


async def test_work_is_called_only_by_the_first_caller() -> None:
    flights: Flights[str, int] = Flights()
    made = []

    async def work(n: int) -> int:
        await asyncio.sleep(0)
        return n

    def factory(n: int) -> Coroutine[Any, Any, int]:
        made.append(n)
        return work(n)

    first = flights.start("k", lambda: factory(1))
    second = flights.start("k", lambda: factory(2))
    assert first is second
    assert await first == 1
    assert made == [1]
