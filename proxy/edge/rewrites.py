"""Rewritten wheels: made once from the cached original, stored by their own sha256, served by name.

A rewrite is identified by its digest (`proxy.core.rewrite.rewrite_digest`: input
sha256, rewrite, rewrite version). What it produced is recorded in the state store
twice: by digest (``rewrite:<digest>``, for pages) and by file name
(``rewritten:<project>/<filename>``, for downloads). The record also says how to make
the file again, so a replica whose blob cache lacks it rebuilds the same bytes and
checks them against the recorded sha256. The regenerated ``.metadata`` is stored
like extracted metadata (``metadata:<sha256>``), so the metadata service serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from proxy.core.lru import LRU
from proxy.core.models import File, is_sha256
from proxy.core.rewrite import Rewrite, RewriteError, Rewritten, rewrite_digest, rewrite_wheel
from proxy.core.typed import holds_types
from proxy.edge.files import FileService
from proxy.edge.flight import Flights
from proxy.edge.stores import keys
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.state import StateStore
from proxy.errors import HostfitError, IntegrityError

log = logging.getLogger("hostfit.rewrites")

CONCURRENCY = 2
KEPT = 10_000  # rewrites made and failed, by digest; made ones are in the store too


@dataclass(frozen=True, slots=True)
class Done:
    filename: str
    sha256: str
    size: int
    metadata_sha256: str
    requires_python: str | None
    source_filename: str
    source_sha256: str
    source_url: str
    recipe: dict[str, Any]
    rules: tuple[str, ...]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def read(cls, data: bytes | None) -> Done | None:
        """A record from the store, or None for none fit to serve by: unreadable, or
        missing a field (a key a newer version added is left out, as in a rollback)."""
        if data is None:
            return None
        try:
            values = json.loads(data)
            known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
            done = cls(**{**known, "rules": tuple(known["rules"])})
            done.rewrite()  # its recipe must be one, as `ensure` rebuilds from it
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        digests = (done.sha256, done.metadata_sha256, done.source_sha256)
        return done if holds_types(done) and all(map(is_sha256, digests)) else None

    def rewrite(self) -> Rewrite:
        r = self.recipe
        return Rewrite(
            r["platform"], tuple(r["add_requires"]), frozenset(r["remove_requires"]),
            r["requires_python"], r.get("variant"), self.rules,
            frozenset(r.get("variant_properties", ())),
        )  # fmt: skip

    def served(self, original: File) -> File:
        """The page entry: the original's keys, with what the rewrite changed."""
        extra = {k: v for k, v in original.extra.items() if k != "provenance"}
        extra["size"] = self.size
        extra["core-metadata"] = extra["dist-info-metadata"] = {"sha256": self.metadata_sha256}
        if self.requires_python is None:
            extra.pop("requires-python", None)
        else:
            extra["requires-python"] = self.requires_python
        return File(self.filename, original.url, {"sha256": self.sha256}, extra)

    def download(self) -> File:
        """What the file service needs to serve the blob."""
        return File(self.filename, "", {"sha256": self.sha256}, {"size": self.size})


class RewriteService:
    def __init__(self, blobs: BlobStore, files: FileService, store: StateStore) -> None:
        self.blobs = blobs
        self.files = files
        self.store = store
        self._done: LRU[str, Done] = LRU(KEPT)
        # (project, filename) -> the rewrite served under that name: a page lists what
        # this process knows, so its downloads must not depend on the store alone (a
        # Redis lost, or back empty, left every rewritten file listed and a 404).
        self._named: LRU[tuple[str, str], Done] = LRU(KEPT)
        self._failed: LRU[str, str] = LRU(KEPT)
        self._making: Flights[str, Done | None] = Flights()
        self._limit = asyncio.Semaphore(CONCURRENCY)

    async def known(self, digests: Iterable[str], project: str) -> dict[str, Done]:
        """The rewrites made, by digest, of files of ``project`` (whose pages list them)."""
        wanted = list(dict.fromkeys(digests))
        missing = [d for d in wanted if d not in self._done]
        if missing:
            values = await self.store.get_many([keys.rewrite(d) for d in missing])
            for digest, value in zip(missing, values, strict=True):
                done = Done.read(value)
                if done is not None:
                    self._done.put(digest, done)
        found = {d: self._done.get(d) for d in wanted}
        made = {d: done for d, done in found.items() if done is not None}
        for done in made.values():
            self._named.put((project, done.filename), done)
        return made

    def failed(self, digest: str) -> str | None:
        return self._failed.get(digest)

    def submit(self, file: File, rewrite: Rewrite, project: str) -> asyncio.Task[Done | None]:
        assert file.sha256 is not None
        digest = rewrite_digest(file.sha256, rewrite)
        return self._making.start(digest, lambda: self._make(file, rewrite, project, digest))

    async def by_name(self, project: str, filename: str) -> Done | None:
        named = self._named.get((project, filename))
        if named is not None:
            return named
        return Done.read(await self.store.get(keys.rewritten(project, filename)))

    def _made(self, digest: str, done: Done, project: str) -> None:
        self._done.put(digest, done)
        self._named.put((project, done.filename), done)

    async def ensure(self, done: Done, project: str) -> None:
        """Make sure the blob is here (another replica may have made it), and whole: one
        damaged on disk is removed by the check and made again."""
        if await self.blobs.check(done.sha256):
            return
        source = File(done.source_filename, done.source_url, {"sha256": done.source_sha256})
        # Shielded: a download given up must not cancel a rewrite others wait for.
        made = await asyncio.shield(self.submit(source, done.rewrite(), project))
        if made is None or made.sha256 != done.sha256:
            raise IntegrityError(f"{done.filename}: rebuilding it gave different bytes")

    async def _make(self, file: File, rewrite: Rewrite, project: str, digest: str) -> Done | None:
        try:
            async with self._limit:
                path = await self.files.fetch(file)
                result = await asyncio.to_thread(_rewrite_into, self.blobs, path, file, rewrite)
            metadata_sha256 = await self.blobs.put_bytes(result.metadata)
            done = Done(
                filename=result.filename,
                sha256=result.sha256,
                size=result.size,
                metadata_sha256=metadata_sha256,
                requires_python=BytesParser().parsebytes(result.metadata)["Requires-Python"],
                source_filename=file.filename,
                source_sha256=file.sha256 or "",
                source_url=file.url,
                recipe=rewrite.recipe(),
                rules=rewrite.rules,
            )
            await self.store.set(keys.metadata(done.sha256), metadata_sha256.encode())
            await self.store.set(keys.metadata_project(project), b"1")
            await self.store.set(keys.rewritten(project, done.filename), done.to_json())
            await self.store.set(keys.rewrite(digest), done.to_json())
        except (RewriteError, HostfitError, OSError) as exc:
            log.warning("not rewritten, the original is served: %s: %s", file.filename, exc)
            self._failed.put(digest, str(exc))
            return None
        except Exception as exc:
            # Hostile wheels find errors nobody listed (a corrupt LZMA member, a bug of
            # ours): recorded as failed all the same, or every page request would start
            # this rewrite again and the page would stay provisional for good.
            log.exception("not rewritten, the original is served: %s", file.filename)
            self._failed.put(digest, f"unexpected {type(exc).__name__}: {exc}")
            return None
        self._made(digest, done, project)
        log.info("rewrote %s as %s (%s)", file.filename, done.filename, rewrite.describe())
        return done

    async def close(self) -> None:
        await self._making.close()


def _rewrite_into(blobs: BlobStore, path: Path, file: File, rewrite: Rewrite) -> Rewritten:
    temp = blobs.tmp / f"rewrite.{secrets.token_hex(8)}.part"
    try:
        with path.open("rb") as source, temp.open("wb") as sink:
            result = rewrite_wheel(source, sink, file.filename, file.sha256 or "", rewrite)
            sink.flush()
            os.fsync(sink.fileno())
        final = blobs.path(result.sha256)
        final.parent.mkdir(exist_ok=True)
        os.replace(temp, final)
        return result
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
