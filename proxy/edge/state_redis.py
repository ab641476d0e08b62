"""The Redis state store, for replicas that share what they learn.

A lost Redis must not take serving down: reads then miss and writes are dropped
(logged once per outage), and /readyz reports the outage through `ping`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from proxy.core.redact import redact

log = logging.getLogger("hostfit.state")


class RedisStore:
    def __init__(self, url: str, prefix: str = "hostfit:") -> None:
        self.url = url
        self.prefix = prefix
        self._redis = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
        )
        self._healthy = True

    def _failed(self, op: str, exc: RedisError) -> None:
        if self._healthy:
            log.warning("redis %s failed (%s); serving without shared state", op, redact(str(exc)))
        self._healthy = False

    def _ok(self) -> None:
        if not self._healthy:
            log.warning("redis is back")
        self._healthy = True

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self.prefix + key)
        except RedisError as exc:
            self._failed("get", exc)
            return None
        self._ok()
        return value.encode() if isinstance(value, str) else value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            values = await self._redis.mget([self.prefix + k for k in keys])
        except RedisError as exc:
            self._failed("mget", exc)
            return [None] * len(keys)
        self._ok()
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        px = None if ttl is None else max(1, int(ttl * 1000))
        try:
            await self._redis.set(self.prefix + key, value, px=px)
        except RedisError as exc:
            self._failed("set", exc)
            return
        self._ok()

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        px = None if ttl is None else max(1, int(ttl * 1000))
        try:
            stored = await self._redis.set(self.prefix + key, value, px=px, nx=True)
        except RedisError as exc:
            self._failed("add", exc)
            return True  # without Redis, this replica acts alone
        self._ok()
        return bool(stored)

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self.prefix + key)
        except RedisError as exc:
            self._failed("delete", exc)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
