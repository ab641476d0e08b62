"""Leases: one holder at a time for a named piece of work, among processes and replicas.

A lease carries a small value its holder publishes (what others need to follow the work)
and names its holder with a token, so that only the holder can renew or release it. A
holder that dies loses its lease without doing anything:

- `FileLeases` (the processes of one host: ``--workers N``, or replicas on one machine
  without Redis): flock(2) on one file per name, which holds the published value. The
  kernel drops a dead process's lock at once, so there is no expiry to wait for.
- `RedisLeases` (replicas anywhere that share a Redis): SET NX PX with the holder's
  token (`proxy.edge.stores.redis_state`), renewed by the holder every ``ttl / 3``
  seconds; a dead holder's lease runs out within ``ttl`` seconds, at once when its token
  names a process of this machine that has ended. A holder through Redis also holds
  this host's lock file, and while Redis is unavailable (to all, or to one process whose
  breaker opened) leases fall back to `FileLeases`: the processes of one host still
  agree, and a piece of work begun on two hosts during an outage is done twice. (On a
  volume whose server keeps the locks of a host that died, NFS, its files wait for that
  lock to expire.)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from proxy.edge.stores.redis_state import RedisStore

log = logging.getLogger("hostfit.leases")

TTL = 10.0
LOCK_SUFFIX = ".lock"


class Lease(Protocol):
    async def publish(self, value: bytes) -> bool:
        """Renew the lease with this value; False when it is no longer ours."""
        ...

    async def release(self) -> None: ...


class Leases(Protocol):
    """Leases by name: a state-store key (`proxy.edge.stores.keys`)."""

    @property
    def renew_every(self) -> float:
        """How often a holder must publish to keep its lease."""
        ...

    async def acquire(self, name: str, value: bytes) -> Lease | None:
        """The lease, when nobody held it; None when someone does."""
        ...

    async def holder(self, name: str) -> bytes | None:
        """What the holder published; None when nobody holds the lease."""
        ...


def token() -> bytes:
    """Names this process on this host, and one lease of it."""
    return f"{socket.gethostname()} {os.getpid()} {secrets.token_hex(8)}".encode()


def ended_here(holder: bytes) -> bool:
    """Whether a token names a process of this host that has ended."""
    parts = holder.decode(errors="replace").split(" ")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class FileLease:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd: int | None = fd
        # A write runs on a thread, which cancelling its caller does not stop: the lock
        # keeps `release` from closing the descriptor under it, so that the write can
        # never land on a file that reuses the number.
        self._lock = threading.Lock()

    async def publish(self, value: bytes) -> bool:
        # Written each time, not only on change: the file's mtime says the holder is alive.
        return await asyncio.to_thread(self._publish, value)

    def _publish(self, value: bytes) -> bool:
        with self._lock:
            if self.fd is None:
                return False
            _write(self.fd, value)
            return True

    async def release(self) -> None:
        with self._lock:  # at most one small write to wait for
            fd, self.fd = self.fd, None
            if fd is not None:
                # Removed while still locked: whoever opened it meanwhile finds, once it
                # has the lock, that the path names another file (or none), and opens it
                # again.
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                os.close(fd)


class FileLeases:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def renew_every(self) -> float:
        return TTL / 3  # nothing expires; publishing keeps the file's age fresh

    def path(self, name: str) -> Path:
        return self.directory / (name.replace(":", ".") + LOCK_SUFFIX)

    async def acquire(self, name: str, value: bytes) -> FileLease | None:
        path = self.path(name)
        taking = asyncio.ensure_future(asyncio.to_thread(_lock_and_write, path, value))
        try:
            # Shielded: a caller cancelled while the thread runs must not close what the
            # thread still writes to; the lock it takes is let go once it is done.
            fd = await asyncio.shield(taking)
        except asyncio.CancelledError:
            taking.add_done_callback(_let_go)
            raise
        return None if fd is None else FileLease(path, fd)

    async def holder(self, name: str) -> bytes | None:
        return await asyncio.to_thread(_held_value, self.path(name))


def _lock(path: Path) -> int | None:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # released and removed by its holder between our open and our lock


def _lock_and_write(path: Path, value: bytes) -> int | None:
    """The locked descriptor holding ``value``, or None when another holds the lock. A
    write that fails lets the lock go with the descriptor: a lease not taken is held by
    nobody."""
    fd = _lock(path)
    if fd is None:
        return None
    try:
        _write(fd, value)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _let_go(taking: asyncio.Future[int | None]) -> None:
    """A lease taken for a caller that gave up meanwhile."""
    if not taking.cancelled() and taking.exception() is None:
        fd = taking.result()
        if fd is not None:
            os.close(fd)


def _write(fd: int, value: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, value, 0)


def _held_value(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_all(fd)
        return None  # nobody holds it (a file left by a holder that died)
    finally:
        os.close(fd)  # drops our shared lock too


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def remove_unheld(path: Path) -> bool | None:
    """Remove a file no process holds a lock on (lock files, and temp files, whose
    writers lock them). True when removed, False when held, None when the filesystem
    cannot tell (it refuses locks). For start-up clean-ups."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            return None
        # Removed while locked, so that a lock file's next holder finds it gone (`_lock`).
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


class RedisLease:
    def __init__(
        self, store: RedisStore, key: str, owner: bytes, ttl: float, here: FileLease | None
    ) -> None:
        self.store = store
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self.here = here
        self._lost = False

    async def publish(self, value: bytes) -> bool:
        if self.here is not None:
            await self.here.publish(value)
        renewed = await self.store.renew(self.key, self.owner, value, self.ttl)
        if renewed is False and not self._lost:
            self._lost = True
            log.info("lease %s lost (expired, and taken by another holder)", self.key)
        return renewed is not False  # Redis unreachable: ours as far as anyone can tell

    async def release(self) -> None:
        if self.here is not None:
            await self.here.release()
        await self.store.release(self.key, self.owner)


class RedisLeases:
    def __init__(self, store: RedisStore, local: FileLeases, ttl: float = TTL) -> None:
        self.store = store
        self.local = local
        self.ttl = ttl

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    async def acquire(self, name: str, value: bytes) -> Lease | None:
        owner = token()
        taken = await self.store.lease(name, owner, value, self.ttl)
        if taken is None:
            return await self.local.acquire(name, value)
        if not taken:
            return None
        # This host's lease too: a process here that loses sight of Redis (its breaker
        # open) then finds this holder instead of acting alone; and one that lost sight
        # of Redis before it took this host's lease holds it, alone: it is followed.
        try:
            here = await self.local.acquire(name, value)
        except BaseException:
            await self.store.release(name, owner)
            raise
        if here is None:
            await self.store.release(name, owner)
            return None
        return RedisLease(self.store, name, owner, self.ttl, here)

    async def holder(self, name: str) -> bytes | None:
        found = await self.store.holder(name)
        if found is None:  # nobody, or a process of this host that went on without Redis
            return await self.local.holder(name)
        owner, value = found
        if ended_here(owner):
            log.info("lease %s: its holder (%s) has ended; taking over", name, owner.decode())
            await self.store.release(name, owner)
            return None
        return value


def open_leases(store: object, directory: Path, ttl: float = TTL) -> Leases:
    """Redis's leases when the state is shared there, else this host's."""
    from proxy.edge.stores.redis_state import RedisStore

    local = FileLeases(directory)
    if isinstance(store, RedisStore):
        return RedisLeases(store, local, ttl=ttl)
    return local
