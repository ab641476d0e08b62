"""What the proxy remembers, behind one small interface with two backends.

Keys are strings namespaced by a prefix (``page:``, ``file:``, ``report:``, ...);
values are bytes the caller serialises. ``ttl`` is in seconds; ``None`` keeps a
value forever (reports are immutable, so they never expire).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class StateStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Set only if absent; True when this call stored the value."""
        ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> None:
        """Raise if the backend cannot serve requests (used by /readyz)."""
        ...

    async def close(self) -> None: ...


def open_store(redis_url: str | None, state_dir: str) -> StateStore:
    """The Redis backend when a URL is configured, else the embedded one."""
    if redis_url:
        from proxy.edge.stores.redis_state import RedisStore

        return RedisStore(redis_url)
    from proxy.edge.stores.embedded import EmbeddedStore

    return EmbeddedStore(state_dir)
