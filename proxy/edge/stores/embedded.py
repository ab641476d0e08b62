"""The embedded state store: one SQLite file, nothing to install, survives restarts.

SQLite calls run in a worker thread so they never block the event loop; WAL mode
lets several server processes share the file. `compact` purges expired rows (pages
past their TTL, leases) and VACUUMs when much of the file is free; the server runs it
at start and every hour.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

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
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._db)

        return await asyncio.to_thread(locked)

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
