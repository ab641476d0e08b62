"""The Redis state store, for replicas that share what they learn.

A lost or frozen Redis must cost serving little. Each command waits at most a short
socket timeout (``OP_TIMEOUT``; a ``socket_timeout=`` in the Redis URL overrides it) and
is never retried by the client. The first connection failure or timeout opens a circuit
breaker: from then on reads miss, writes are dropped and `add` answers True (this
replica acts alone) at once, without touching the network, while a background probe
pings Redis every ``PROBE_EVERY`` seconds and closes the breaker when it answers. The outage and the
recovery are logged once each, never per request; /readyz reports the outage through
`ping`, which fails fast while the breaker is open.

Leases (`lease`, `renew`, `release`) are keys whose value begins with the holder's token:
set only if absent, with an expiry, and renewed or deleted only by a Lua script that
first checks the token, so a holder that lost its lease (expired, taken over) can never
extend or release someone else's. Each answers None while Redis is unavailable: the
caller decides how to go on alone (`proxy.edge.stores.leases`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from proxy.core.redact import redact

log = logging.getLogger("hostfit.state")

OP_TIMEOUT = 0.5
PROBE_EVERY = 3.0

T = TypeVar("T")
# A lease's stored value: its holder's token, a newline, then what the holder publishes.
_SEPARATOR = b"\n"
_OWNED = "string.sub(redis.call('get', KEYS[1]) or '', 1, #ARGV[1]) == ARGV[1]"
_RENEW = (
    f"if {_OWNED} then redis.call('set', KEYS[1], ARGV[2], 'px', ARGV[3]) return 1 end return 0"
)
_RELEASE = f"if {_OWNED} then return redis.call('del', KEYS[1]) end return 0"
# A lease's record, read: {1, record} when held; {0} when nobody holds it; {2} when the
# record is none a holder wrote (not a string, no separator after a token, or no expiry:
# every lease is taken and renewed with one), which is deleted: waited on, it would hold
# every download of its file until the deadline.
_HOLDER = """
local kind = redis.call('type', KEYS[1])['ok']
if kind == 'none' then return {0} end
if kind == 'string' and redis.call('pttl', KEYS[1]) >= 0 then
  local record = redis.call('get', KEYS[1])
  if string.find(record, ARGV[1], 1, true) then return {1, record} end
end
redis.call('del', KEYS[1])
return {2}
"""
# Redis is unreachable, frozen or refusing us: open the breaker. Other errors are answers.
_OUTAGE = (RedisConnectionError, RedisTimeout, OSError)


class RedisUnavailable(RedisError):
    """The breaker is open: Redis failed recently and has not answered a probe since."""


class RedisStore:
    def __init__(
        self,
        url: str,
        prefix: str = "hostfit:",
        *,
        timeout: float = OP_TIMEOUT,
        probe_every: float = PROBE_EVERY,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.probe_every = probe_every
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 0),  # the breaker decides when to try again
        )
        self._down_since: float | None = None
        self._why = ""
        self._probe: asyncio.Task[None] | None = None
        self._answers_logged: set[str] = set()
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._holder = self._redis.register_script(_HOLDER)

    @property
    def available(self) -> bool:
        return self._down_since is None

    async def _call(self, op: str, command: Callable[[], Awaitable[T]], fallback: T) -> T:
        if self._down_since is not None:
            return fallback
        try:
            return await command()
        except _OUTAGE as exc:
            self._trip(op, exc)
        except RedisError as exc:  # e.g. READONLY, OOM: Redis is up; a miss, logged once
            kind = type(exc).__name__
            if kind not in self._answers_logged:
                self._answers_logged.add(kind)
                log.warning("redis %s failed: %s", op, redact(str(exc)))
        return fallback

    def _trip(self, op: str, exc: BaseException) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self._why = redact(f"{type(exc).__name__}: {exc}")
        log.warning(
            "redis %s failed (%s); serving without shared state, retrying every %gs",
            op,
            self._why,
            self.probe_every,
        )
        self._probe = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self.probe_every)
            try:
                await self._redis.ping()
            except (RedisError, OSError):
                continue  # still down: said once already
            assert self._down_since is not None
            log.warning("redis is back after %.1fs", time.monotonic() - self._down_since)
            self._down_since = None
            self._probe = None
            return

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", lambda: self._redis.get(self.prefix + key), None)
        return value.encode() if isinstance(value, str) else value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        missing: list[bytes | str | None] = [None] * len(keys)
        values = await self._call(
            "mget", lambda: self._redis.mget([self.prefix + k for k in keys]), missing
        )
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        px = None if ttl is None else _ms(ttl)
        await self._call("set", lambda: self._redis.set(self.prefix + key, value, px=px), None)

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        px = None if ttl is None else _ms(ttl)
        alone: bool | str | bytes | None = True  # without Redis, this replica acts alone
        stored = await self._call(
            "add", lambda: self._redis.set(self.prefix + key, value, px=px, nx=True), alone
        )
        return bool(stored)

    async def delete(self, key: str) -> None:
        await self._call("delete", lambda: self._redis.delete(self.prefix + key), None)

    async def lease(self, key: str, token: bytes, value: bytes, ttl: float) -> bool | None:
        """Take the lease ``key`` for ``ttl`` seconds if nobody holds it; None: Redis did
        not answer (unavailable, or refusing writes)."""
        stored = token + _SEPARATOR + value

        async def take() -> bool | None:
            return bool(await self._redis.set(self.prefix + key, stored, px=_ms(ttl), nx=True))

        return await self._call("lease", take, None)

    async def renew(self, key: str, token: bytes, value: bytes, ttl: float) -> bool | None:
        """Extend a lease still held by ``token`` (publishing ``value``); False: it is not."""
        args: list[bytes | int] = [token + _SEPARATOR, token + _SEPARATOR + value, _ms(ttl)]
        done = await self._call(
            "renew", lambda: self._renew(keys=[self.prefix + key], args=args), None
        )
        return None if done is None else bool(done)

    async def release(self, key: str, token: bytes) -> None:
        """Delete the lease if ``token`` still holds it."""
        args = [token + _SEPARATOR]
        await self._call("release", lambda: self._release(keys=[self.prefix + key], args=args), 0)

    async def holder(self, key: str) -> tuple[bytes, bytes] | None:
        """(token, value) of the lease's holder; None when nobody holds it or Redis is
        unavailable (tell them apart with `available`). A record no holder wrote is
        deleted (see `_HOLDER`)."""
        answer = await self._call(
            "holder", lambda: self._holder(keys=[self.prefix + key], args=[_SEPARATOR]), [0]
        )
        if answer[0] == 2:
            log.warning("lease %s: a record no holder wrote (another version's?); removed", key)
        if answer[0] != 1:
            return None
        token, _, value = bytes(answer[1]).partition(_SEPARATOR)
        return token, value

    async def ping(self) -> None:
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            raise RedisUnavailable(f"redis unavailable for {down:.0f}s: {self._why}")
        try:
            await self._redis.ping()
        except _OUTAGE as exc:
            self._trip("ping", exc)
            raise

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._redis.aclose()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
