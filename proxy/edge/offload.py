"""Work over a big page leaves the event loop; the same work over a small one stays.

Parsing, hashing or compressing a 5 MB page holds the loop for tens of milliseconds,
which every other request would wait out; below `BIG` the hop to a thread costs more
than the work holds the loop. One threshold for every such piece of work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

BIG = 256 * 1024


async def by_size(size: int, work: Callable[[], T]) -> T:
    """``work()``, which goes over ``size`` bytes: on a thread from `BIG` bytes up."""
    if size < BIG:
        return work()
    return await asyncio.to_thread(work)
