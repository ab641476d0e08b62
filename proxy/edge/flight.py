"""The one single flight: concurrent asks for the same key share one piece of work.

The first caller for a key starts the work as a task of its own; every caller until
it ends gets the same result, or the same exception. A caller that gives up (a client
disconnecting, a request timing out) only stops waiting: the work goes on, because
what it makes (a report, metadata, a page, a rewritten wheel) is kept and is what the
next caller asks for, and starting it again would cost the same again. Only `close`
cancels work, at shutdown. The key is free again as soon as the work ends, so a
failure is tried again by the next caller; remembering results is the caller's business.

A `HostfitError` (an upstream failing, bytes that do not match) is the waiters' to
answer, and is not logged here; any other exception is a bug, logged once with its
traceback even when no caller is left to hear it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable, Iterator
from typing import Any, Generic, TypeVar

from proxy.errors import HostfitError

log = logging.getLogger("hostfit.flight")

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Flights(Generic[K, T]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def __contains__(self, key: object) -> bool:
        return key in self._running

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._running))

    def running(self, key: K) -> asyncio.Task[T] | None:
        return self._running.get(key)

    def start(self, key: K, work: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """The work running for ``key``, else ``work()`` started now (called only then)."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(work())
            self._running[key] = task
            task.add_done_callback(lambda done: self._ended(key, done))
        return task

    async def run(self, key: K, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Join (or start) the work for ``key`` and wait for its result."""
        # Shielded: cancelling this caller must not cancel what others wait for.
        return await asyncio.shield(self.start(key, work))

    async def close(self) -> None:
        """Cancel all work still running and wait for it to end."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, key: K, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if task.cancelled():
            return
        # Retrieved here, so work whose callers all left logs no "never retrieved";
        # the callers still waiting get the exception from the task themselves.
        error = task.exception()
        if error is not None and not isinstance(error, HostfitError):
            log.error("work for %r failed", key, exc_info=error)
