"""The one bounded least-recently-used map.

Every cache the proxy keeps in memory (pages, decisions, rendered bytes, read chunks,
log-once keys) is bounded, so a long-running server's memory does not grow with the
number of projects or files it has ever seen. Bounded by count, or by weight when a
``weigh`` function is given (bytes, say).

Eviction is returned, not hidden: ``put`` hands back what it pushed out, so a caller
that must do something with an evicted value (spill it to disk, give back its bytes)
does it itself, and the map stays a plain value holder with no callbacks.

`Generations` are the bounded counters caches put in their keys ("this project's
reports moved"): forgetting one must not bring back a number already used.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")


class LRU(Generic[K, V]):
    """At most ``maxsize`` entries (or total weight), least recently used evicted first.

    ``get`` and ``put`` make an entry the most recent; ``peek``, ``in`` and iteration
    do not. The entry just put is never evicted by its own ``put``, so one entry
    heavier than ``maxsize`` is kept, alone, until the next ``put``.
    """

    __slots__ = ("_entries", "_weigh", "_weight", "maxsize")

    def __init__(self, maxsize: int, *, weigh: Callable[[V], int] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"an LRU holds at least one entry, not {maxsize}")
        self.maxsize = maxsize
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._weigh = weigh
        self._weight = 0

    @property
    def weight(self) -> int:
        """The total weight held (the number of entries without ``weigh``)."""
        return self._weight if self._weigh is not None else len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        """Keys, least recently used first."""
        return iter(self._entries)

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(self._entries.items())

    def values(self) -> Iterator[V]:
        return iter(self._entries.values())

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        entries = self._entries
        try:  # two lookups of the key, not three: every cached request makes about ten
            entries.move_to_end(key)
        except KeyError:
            return default
        return entries[key]

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: D) -> V | D: ...
    def peek(self, key: K, default: object = None) -> object:
        return self._entries.get(key, default)

    def put(self, key: K, value: V) -> list[tuple[K, V]]:
        """Keep ``value`` as the most recent entry; returns the entries evicted for it."""
        self.pop(key)
        self._entries[key] = value
        if self._weigh is not None:
            self._weight += self._weigh(value)
        evicted = []
        while self.weight > self.maxsize and len(self._entries) > 1:
            old_key, old_value = self._entries.popitem(last=False)
            if self._weigh is not None:
                self._weight -= self._weigh(old_value)
            evicted.append((old_key, old_value))
        return evicted

    def add(self, key: K, value: V) -> bool:
        """Put ``key`` unless present: True the first time (a log-once, a first sighting)."""
        if key in self._entries:
            return False
        self.put(key, value)
        return True

    @overload
    def pop(self, key: K) -> V | None: ...
    @overload
    def pop(self, key: K, default: D) -> V | D: ...
    def pop(self, key: K, default: object = None) -> object:
        if key not in self._entries:
            return default
        value = self._entries.pop(key)
        if self._weigh is not None:
            self._weight -= self._weigh(value)
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._weight = 0


class Generations(Generic[K]):
    """A number per key that changes whenever the key ``moved``, for cache keys.

    Bounded like an LRU. A key seen for the first time, or forgotten, gets a number
    never handed out before, so an entry cached under an old number is never mistaken
    for current: forgetting costs a recomputation, never a stale answer.
    """

    __slots__ = ("_counter", "_numbers")

    def __init__(self, maxsize: int) -> None:
        self._numbers: LRU[K, int] = LRU(maxsize)
        self._counter = itertools.count()

    def __getitem__(self, key: K) -> int:
        number = self._numbers.get(key)
        if number is None:
            number = next(self._counter)
            self._numbers.put(key, number)
        return number

    def move(self, key: K) -> None:
        self._numbers.put(key, next(self._counter))
