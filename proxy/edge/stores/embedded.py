"""The embedded state store: one SQLite file, nothing to install, survives restarts.

SQLite calls run in a worker thread so they never block the event loop; WAL mode
lets several server processes share the file. `compact` purges expired rows (pages
past their TTL, leases) and VACUUMs when much of the file is free; the server runs it
at start and every hour.

What the store holds is made again when it is missing (pages are fetched, reports and
metadata made from the wheels, leases taken anew), but for one kind of record: the
sha256 first seen of a file its index publishes none for (``urlsha:``, see
deploy/OPERATIONS.md). So a file SQLite cannot read (not a database, or a damaged one:
a disk that failed, a copy cut short; found at start, or on a page first read while
serving) neither stops the server nor fails a request, and is not lost: it is set aside
beside the new one, named ``state.sqlite3.damaged-<time>-<pid>``, and the log says so
and how to read back what it still holds; the store starts empty. Processes that start
together over the same damaged file set it aside once, under a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("hostfit.state")

VACUUM_MIN_PAGES = 256  # below this, free pages are not worth a rewrite of the file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires REAL
)
"""


class EmbeddedStore:
    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "state.sqlite3")
        self._lock = threading.Lock()
        self._db, self._file = _open(self.path)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                if self._set_aside_elsewhere():
                    self._reopen()
                try:
                    return fn(self._db)
                except sqlite3.DatabaseError as exc:
                    if not _damaged(exc):
                        raise
                    # Found while serving (a page of the file SQLite never read at
                    # start): set aside as at start, and the operation done on the new
                    # file. Other processes follow at their next operation.
                    self._reopen(damage=exc)
                    return fn(self._db)

        return await asyncio.to_thread(locked)

    def _reopen(self, damage: sqlite3.DatabaseError | None = None) -> None:
        """The connection opened anew, on the file now at the path; with ``damage``, this
        one set aside first."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        if damage is not None:
            _said_aside(self.path, damage, _set_aside(self.path, self._file))
        self._db, self._file = _open(self.path)

    def _set_aside_elsewhere(self) -> bool:
        """Whether another process set this file aside (a stat: the threads' hop costs
        far more), so that every process goes on with the one new file at once."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False  # between the move and the new file: this one for now
        return not _same_file(now, self._file)

    async def get(self, key: str) -> bytes | None:
        def op(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT value, expires FROM kv WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            value, expires = row
            if expires is not None and expires <= time.time():
                db.execute("DELETE FROM kv WHERE key = ? AND expires = ?", (key, expires))
                return None
            return bytes(value)

        return await self._run(op)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        def op(db: sqlite3.Connection) -> list[bytes | None]:
            found: dict[str, bytes] = {}
            now = time.time()
            for start in range(0, len(keys), 500):
                batch = list(keys[start : start + 500])
                marks = ",".join("?" * len(batch))
                rows = db.execute(
                    f"SELECT key, value, expires FROM kv WHERE key IN ({marks})", batch
                )
                for key, value, expires in rows:
                    if expires is None or expires > now:
                        found[key] = bytes(value)
            return [found.get(k) for k in keys]

        return await self._run(op)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires = None if ttl is None else time.time() + ttl
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                (key, value, expires),
            )
        )

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        expires = None if ttl is None else time.time() + ttl

        def op(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT expires FROM kv WHERE key = ?", (key,)).fetchone()
                if row is not None and (row[0] is None or row[0] > time.time()):
                    return False
                db.execute(
                    "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                    (key, value, expires),
                )
                return True
            finally:
                db.execute("COMMIT")

        return await self._run(op)

    async def delete(self, key: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM kv WHERE key = ?", (key,)))

    async def compact(self) -> int:
        """Purge expired rows; VACUUM once a quarter of the file is free pages. Returns
        how many rows went."""

        def op(db: sqlite3.Connection) -> int:
            purged = db.execute(
                "DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (time.time(),)
            ).rowcount
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            if pages and free * 4 >= pages and pages > VACUUM_MIN_PAGES:
                db.execute("VACUUM")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return int(purged)

        return await self._run(op)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self._run(lambda db: db.close())


# SQLite's words for a file that is not a database it can read. Others (locked, a
# directory it may not write, a full disk) are the host's to fix, and said as they are.
_DAMAGED = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})


def _open(path: str) -> tuple[sqlite3.Connection, os.stat_result]:
    """The store's connection, and the file it opened; a damaged file is set aside
    first (`_set_aside`)."""
    try:
        before = os.stat(path)
    except FileNotFoundError:
        before = None
    try:
        # Shared: no process connects while another sets the file aside, when it could
        # meet the new file with the old one's WAL (two WALs for one database then).
        with _recovery_lock(path, fcntl.LOCK_SH):
            return _connect(path), before or os.stat(path)  # made by connecting, if new
    except sqlite3.DatabaseError as exc:
        if not _damaged(exc):
            raise
        _said_aside(path, exc, _set_aside(path, before))
    with _recovery_lock(path, fcntl.LOCK_SH):
        return _connect(path), os.stat(path)


def _same_file(one: os.stat_result, other: os.stat_result) -> bool:
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    return getattr(exc, "sqlite_errorname", None) in _DAMAGED


def _said_aside(path: str, exc: sqlite3.DatabaseError, aside: str | None) -> None:
    if aside is None:
        return  # another process set it aside, and said so
    log.error(
        "state store %s cannot be read (%s): set aside as %s; starting with an empty"
        " store (pages, reports and metadata are made again as asked for; digests of"
        " files published without one can be read back from it with"
        " `sqlite3 <file> .recover`)",
        path,
        exc,
        aside,
    )


_BUSY_SECONDS = 5.0


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        # First: other processes may be opening it.
        db.execute(f"PRAGMA busy_timeout={int(_BUSY_SECONDS * 1000)}")
        _write_ahead(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        db.execute("SELECT 1 FROM kv LIMIT 1").fetchall()  # the table's root page reads
    except BaseException:
        db.close()
        raise
    return db


def _write_ahead(db: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another connection holds the lock it
    needs. Turning a new database to WAL takes an exclusive lock, and where waiting for
    it could deadlock SQLite answers "database is locked" at once, busy timeout or not:
    the workers of one server opening a new store together met that (27 of 1,200
    connections opened six at a time)."""
    deadline = time.monotonic() + _BUSY_SECONDS
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", None) == "SQLITE_BUSY"
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.1)


@contextlib.contextmanager
def _recovery_lock(path: str, kind: int) -> Iterator[None]:
    with open(path + ".recover-lock", "a") as lock:
        fcntl.flock(lock, kind)
        yield


def _set_aside(path: str, opened: os.stat_result | None) -> str | None:
    """Move the damaged file (and its WAL, which must never meet a new database) out of
    the way; None when another process already did, since this one opened it."""
    with _recovery_lock(path, fcntl.LOCK_EX):
        try:
            now = os.stat(path)
        except FileNotFoundError:
            return None
        if opened is not None and not _same_file(now, opened):
            return None  # set aside by another process: the file there is its new one
        aside = f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path + suffix, aside + suffix)
        return aside
