"""Files: served from the blob cache, or streamed to clients while being cached.

One upstream download per file, however many clients, workers and replicas ask at once:

- In a process, one `Download` per file, which every client of the process follows
  (`proxy.edge.download`): each reads what has been written and waits for more.
- Among the processes sharing the cache directory (``--workers N``, replicas sharing a
  volume and, on several hosts, a Redis), the first to take the file's lease
  (``download:<sha256>``, `proxy.edge.stores.leases`) downloads it into a temp file
  of the shared ``tmp`` directory and publishes its name (`proxy.edge.follow.Holding`).
  The others follow that growing file and hand its bytes to their own clients, each
  checking the digest of every byte it handed on before the last one leaves
  (`proxy.edge.follow`). While another process's clients follow a download, it goes
  on even if its own clients left.
- A leader that dies loses its lease (at once on one host; within the lease's TTL
  through Redis), and a follower takes over: it copies the bytes the dead leader left
  into a temp file of its own and asks the upstream for the rest with a ``Range``
  request. A leader that fails tells its followers why (``download-failed:<sha256>``,
  for a few seconds), so they fail with it instead of asking the upstream again each.

The last byte is held back until the digest is verified, so a client can never
complete a transfer of bytes that do not match the index; on a mismatch or a
truncated upstream body every client's transfer is aborted and nothing is cached.

Bounds on a download:

- **A total deadline** (``deadline`` seconds, from the first request to the verified
  last byte): an upstream that drips bytes cannot hold clients for ever. Past it the
  download fails as a timeout: 504 for a client that has no byte yet, a cut-off
  transfer for the others; nothing is cached.
- **Nobody left, nothing fetched.** A download that no client has followed for
  ``linger`` seconds stops, and its temp file is removed (`proxy.edge.download`).
  The price: a file whose clients all left is not cached, and the analysis that a
  completed download would have fed is made from the upstream's ranges instead.
- **A body cut short** (a reset, a close before Content-Length) is asked for again
  where no client can notice: from the start while no byte has arrived, else from the
  byte reached with a ``Range`` request when the upstream serves ranges (the sha256
  still covers the whole file). Otherwise a transfer that began fails visibly.
  Failures before the answer's headers (connection errors, 502/503/504) are the
  client transport's to retry, not this module's.
- **A cache that cannot take the file** (over the budget, or a disk that refuses a
  write) does not stop the transfer: the temp file is removed, and the rest of the
  bytes reach the download's followers in this process through a bounded window in
  memory, paced by the slowest. Bytes already on disk stay readable through the
  download's open descriptor. Nothing is cached; a later request downloads the file
  again, and the followers in other processes download it for themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from proxy.core.models import File
from proxy.edge.compression import codings
from proxy.edge.download import CHUNK, LINGER, Download
from proxy.edge.follow import Follower, Holding
from proxy.edge.observe import KIND
from proxy.edge.stores import keys
from proxy.edge.stores.blobs import BlobStore, BlobWriter, CacheFull, OpenBlob, disk_reason
from proxy.edge.stores.leases import Lease, Leases, open_leases
from proxy.edge.stores.state import StateStore
from proxy.errors import HostfitError, IntegrityError, UpstreamError, UpstreamTimeout
from proxy.outbound import AS_STORED, upstream_error

__all__ = ["Download", "FileService"]

log = logging.getLogger("hostfit.files")

DEADLINE = 1800.0  # seconds a download may take in all
ATTEMPTS = 3  # requests per download: the first, then restarts or resumptions
BACKOFF = 0.25  # seconds before asking again, doubled each time, jittered
FAILED_SECONDS = 5.0  # a failed leader's error is kept this long for its followers
WAIT = 0.1  # seconds between looks while a lease changes hands
TELL_EVERY = 1.0  # seconds between a follower's words to the leader that it still follows
# A body cut short. Timeouts are not asked again: the upstream had its chance, and the
# deadline bounds the whole download.
_CUT_SHORT = (httpx.ReadError, httpx.RemoteProtocolError)
_FILE = {KIND: "file"}  # counted as file bytes fetched (`proxy.edge.observe`)


def _coded(response: httpx.Response) -> bool:
    """Sent in a content coding although `AS_STORED` asked for none."""
    return bool(codings(response.headers.get("content-encoding")))


_OUTCOMES = ("cached", "followed", "uncached", "failed", "timed_out", "abandoned")


class PeerFailed(HostfitError):
    """The download another process led failed; its message and status, passed on."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass
class _Role:
    """This process's part in a download: what it publishes while it leads."""

    holding: Holding
    lease: Lease | None = None  # None: following, or downloading alone
    keeper: asyncio.Task[None] | None = None

    async def publish(self, **changes: object) -> None:
        if changes:
            self.holding = replace(self.holding, **changes)  # type: ignore[arg-type]
        if self.lease is not None:
            await self.lease.publish(self.holding.encode())


class FileService:
    def __init__(
        self,
        blobs: BlobStore,
        client: httpx.AsyncClient,
        store: StateStore,
        deadline: float = DEADLINE,
        linger: float = LINGER,
        leases: Leases | None = None,
    ) -> None:
        self.blobs = blobs
        self.client = client
        self.store = store
        self.deadline = deadline
        self.linger = linger
        self.leases = leases or open_leases(store, blobs.tmp)
        self._downloads: dict[str, Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._told: dict[str, float] = {}  # sha256 -> when the leader was last told
        self.on_cached: list[Callable[[File], None]] = []  # told of every file committed here
        # How downloads ended, for metrics: cached (downloaded here), followed (another
        # process downloaded it), uncached, failed, timed_out, abandoned.
        self.outcomes: dict[str, int] = dict.fromkeys(_OUTCOMES, 0)
        self.on_ended: list[Callable[[str], None]] = []  # told each download's outcome
        self.on_active: list[Callable[[int], None]] = []  # told the count when it changes

    @property
    def active(self) -> int:
        return len(self._downloads)

    def _tell_active(self) -> None:
        for tell in self.on_active:
            tell(len(self._downloads))

    async def open(self, file: File) -> OpenBlob | Download:
        """The cached blob, opened (the caller closes it), or the download to follow."""
        sha256 = file.sha256
        if sha256 is None:
            raise IntegrityError(f"{file.filename}: the index gives no sha256 to verify it")
        blob = self.blobs.open(sha256)
        if blob is not None and await self.blobs.checked(blob):
            return blob
        download = self._downloads.get(sha256)
        if download is None or not download.joinable:
            download = Download(file, self.linger)
            self._downloads[sha256] = download
            self._tell_active()
            task = asyncio.create_task(self._download(download, sha256))
            download.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        download.promise()
        return download

    async def digest_of(self, file: File) -> str:
        """Download a file the index gives no sha256 for, cache it, and return its digest.

        Trust on first use: the first bytes seen become the file's identity, and every
        later download is verified against them.
        """
        try:
            async with asyncio.timeout(self.deadline):
                async with self.client.stream(
                    "GET", file.url, headers=AS_STORED, extensions=_FILE
                ) as response:
                    if response.status_code != 200:
                        raise UpstreamError(
                            file.url, f"HTTP {response.status_code} for {file.filename}"
                        )
                    if _coded(response):
                        # Its first bytes become its identity: not bytes httpx decoded,
                        # which it takes whole when cut short (`content_decoded`).
                        raise UpstreamError(
                            file.url,
                            f"{file.filename}: sent in a content coding "
                            f"({response.headers['content-encoding']}), not as stored; "
                            "the index gives no sha256 to check the decoded bytes against",
                        )
                    async with self.blobs.writer(None) as writer:
                        async for chunk in response.aiter_bytes(CHUNK):
                            await writer.write(chunk)
                        await writer.commit()
        except TimeoutError:
            raise UpstreamTimeout(file.url, f"downloading {file.filename}: timed out") from None
        except httpx.HTTPError as exc:
            raise upstream_error(file.url, f"downloading {file.filename}", exc) from None
        await self.blobs.enforce()
        assert writer.sha256 is not None
        return writer.sha256

    async def fetch(self, file: File) -> Path:
        """The cached path of a file, downloading it first if needed; `CacheFull` (503)
        when the cache could not take it."""
        blob = await self.fetch_blob(file)
        blob.close()
        return blob.path

    async def fetch_blob(self, file: File) -> OpenBlob:
        """Like `fetch`, the blob opened (the caller closes it)."""
        blob = await self.fetch_within(file, None)
        assert blob is not None  # with no limit, raised rather than None
        return blob

    async def fetch_within(self, file: File, limit: int | None) -> OpenBlob | None:
        """Like `fetch_blob`, where the upstream's size for the file is within ``limit``
        bytes; None where it is not (a listed size may lie) or the cache did not take it:
        the caller reads it some other way, and the download goes on only for whoever
        follows it. With no limit, a cache that did not take it is `CacheFull`."""
        opened = await self.open(file)
        if isinstance(opened, OpenBlob):
            return opened
        if limit is not None:
            await opened.wait_started()
            if opened.size is None or opened.size > limit:
                return None
        await opened.wait_done()
        if opened.error is not None:
            raise opened.error
        blob = self.blobs.open(file.sha256 or "")
        if blob is not None and await self.blobs.checked(blob):
            return blob
        if limit is not None:
            return None
        reason = opened.uncached or "evicted (or damaged) as soon as it arrived"
        raise CacheFull(f"{file.filename} is not in the cache: {reason}")

    async def _download(self, download: Download, sha256: str) -> None:
        file = download.file
        outcome = "failed"
        role = _Role(Holding(self.blobs.temp_name(sha256)))
        try:
            async with asyncio.timeout(self.deadline):
                await self._obtain(download, sha256, role)
            led = role.lease is not None or role.keeper is not None
            if download.final_path is not None and not led:
                outcome = "followed"
            elif download.final_path is not None:
                outcome = "cached"
                for listener in self.on_cached:
                    listener(file)
            else:
                outcome = "uncached"
        except TimeoutError:
            outcome = "timed_out"
            download.error = UpstreamTimeout(
                file.url,
                f"{file.filename} not downloaded within the file deadline "
                f"({self.deadline:g} s; {download.written} bytes arrived)",
            )
        except asyncio.CancelledError:
            if not download.abandoned:
                download.error = HostfitError(f"{file.filename}: download cancelled")
                raise
            outcome = "abandoned"
            download.error = HostfitError(f"{file.filename}: download stopped, no client left")
        except PeerFailed as exc:
            download.error = exc
        except IntegrityError as exc:
            download.error = IntegrityError(f"{file.filename}: {exc}")
        except httpx.HTTPError as exc:
            download.error = upstream_error(file.url, f"downloading {file.filename}", exc)
        except HostfitError as exc:
            download.error = exc
        except Exception as exc:  # never leave followers waiting on a dead task
            log.exception("download of %s failed", file.filename)
            download.error = HostfitError(f"{file.filename}: {exc}")
        finally:
            self.outcomes[outcome] += 1
            for tell in self.on_ended:
                tell(outcome)
            if outcome == "abandoned":
                log.info("stopped downloading %s: no client left", file.filename)
            elif download.error is not None:
                log.warning("not cached: %s", download.error)
            download.finish()
            try:
                await self._step_down(role, sha256, download.error, outcome)
            finally:
                if self._downloads.get(sha256) is download:
                    del self._downloads[sha256]
                    self._tell_active()
                self._told.pop(sha256, None)
        if outcome == "cached":
            try:
                await self.blobs.enforce()
            except OSError as exc:
                log.warning("cache eviction failed: %s", exc)

    async def _obtain(self, download: Download, sha256: str, role: _Role) -> None:
        """Until the file is committed (here or by another process) or streamed
        uncached: lead its download, or follow another process's, taking over when
        that one's leader goes."""
        follower = Follower(download, self.blobs, sha256)
        try:
            while True:
                if follower.committed():
                    try:
                        await follower.finish()
                        return
                    except FileNotFoundError:
                        continue  # evicted at once: another round
                try:
                    role.lease = await self.leases.acquire(
                        keys.download(sha256), role.holding.encode()
                    )
                except OSError as exc:
                    # The lock file cannot be made or written (a full or read-only disk):
                    # downloaded here without one, as a file that cannot be cached is.
                    log.warning(
                        "%s: no download lease (%s); downloading without one",
                        download.file.filename,
                        disk_reason(exc),
                    )
                    await self._lead(download, sha256, role, follower)
                    return
                if role.lease is not None:
                    if follower.committed():  # committed between our look and our lease
                        await role.lease.release()
                        role.lease = None
                        continue
                    await self._lead(download, sha256, role, follower)
                    return
                holding = await self._holding(sha256)
                if holding is None:
                    await self._failed_elsewhere(sha256)
                    await asyncio.sleep(WAIT)
                elif not holding.caching:
                    log.info(
                        "%s: the process downloading it keeps no file to follow; "
                        "downloading it here too",
                        download.file.filename,
                    )
                    await self._lead(download, sha256, role, follower)
                    return
                else:
                    await follower.follow(holding, lambda: self._holding(sha256, download))
                    if not follower.committed():
                        await self._failed_elsewhere(sha256)
        finally:
            follower.close()

    async def _holding(self, sha256: str, following: Download | None = None) -> Holding | None:
        """What the leader of this file's download publishes now; when ``following``
        has clients here, the leader is told it is followed (once a second or so)."""
        if following is not None and following.wanted:
            now = asyncio.get_running_loop().time()
            if now - self._told.get(sha256, 0.0) >= TELL_EVERY:
                self._told[sha256] = now
                await self.store.set(keys.download_followed(sha256), b"1", ttl=self.linger)
        return Holding.decode(await self.leases.holder(keys.download(sha256)))

    async def _failed_elsewhere(self, sha256: str) -> None:
        """Raise what the leader that just gave up failed with, if it failed."""
        told = await self.store.get(keys.download_failed(sha256))
        if told is None:
            return
        try:
            failure = json.loads(told)
            message, status = str(failure["message"]), int(failure["status"])
        except (ValueError, TypeError, KeyError):
            return
        if not 400 <= status <= 599:
            # No leader fails with anything else: a record another version or a damaged
            # store left. Never an answer that would pass for the file.
            status = 502
        raise PeerFailed(message, status)

    async def _lead(self, download: Download, sha256: str, role: _Role, follower: Follower) -> None:
        role.keeper = asyncio.create_task(self._keep(download, sha256, role))
        await self._fetch(download, sha256, role, follower.prefix())

    async def _keep(self, download: Download, sha256: str, role: _Role) -> None:
        """While leading: renew the lease, keep the temp file's age fresh (start-ups
        elsewhere remove temp files untouched for long), and hear of followers."""
        temp = self.blobs.tmp / role.holding.temp
        # Often enough to hear of followers before `linger` would stop the download.
        every = min(self.leases.renew_every, self.linger / 3)
        while True:
            await asyncio.sleep(every)
            await role.publish()
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.utime, temp)
            if await self.store.get(keys.download_followed(sha256)) is not None:
                download.followed_elsewhere(self.linger)

    async def _step_down(
        self, role: _Role, sha256: str, error: HostfitError | None, outcome: str
    ) -> None:
        """Stop leading: followers are told why it failed before the lease goes."""
        if role.keeper is not None:
            role.keeper.cancel()
        if role.lease is None:
            return
        if error is not None and outcome in ("failed", "timed_out"):
            told = {"message": str(error), "status": error.status_code}
            await self.store.set(
                keys.download_failed(sha256), json.dumps(told).encode(), FAILED_SECONDS
            )
        await role.lease.release()

    async def _fetch(
        self, download: Download, sha256: str, role: _Role, prefix: tuple[int, int] | None
    ) -> None:
        """Requests until every byte is here and verified; retries and resumptions as the
        module's doc says. ``prefix``: bytes a leader gone left, to carry on from."""
        file = download.file
        writer: BlobWriter | None = None
        etag: str | None = None
        resumable = False
        try:
            if prefix is not None:
                writer = await self._carry_on(download, sha256, role, prefix)
                resumable = True  # asked with a Range from the first request on
            for attempt in range(ATTEMPTS):
                headers = dict(AS_STORED)
                if download.written:
                    headers["Range"] = f"bytes={download.written}-"
                    if etag:
                        headers["If-Range"] = etag
                answered = False
                try:
                    request = self.client.stream("GET", file.url, headers=headers, extensions=_FILE)
                    async with request as response:
                        _check_status(download, response)
                        answered = True
                        if writer is None:
                            length = response.headers.get("content-length")
                            coded = _coded(response)  # all the same (httpx decodes it)
                            download.size = (
                                int(length)
                                if length and length.isdigit() and not coded
                                else file.size
                            )
                            tag = response.headers.get("etag")
                            etag = tag if tag and not tag.startswith("W/") else None
                            # After coded bytes too: the written ones are the file's own, and a
                            # range of them comes as stored (a coded 206 is refused).
                            resumable = response.headers.get("accept-ranges") == "bytes"
                            writer = await self._writer(download, sha256, role)
                        # As the bytes come: a drip reaches clients as it drips.
                        async for chunk in response.aiter_bytes():
                            await self._take(download, writer, chunk, role)
                    break
                except _CUT_SHORT as exc:
                    more = download.written == 0 or (resumable and download.size is not None)
                    if not answered or attempt + 1 >= ATTEMPTS or not more:
                        raise
                    again = f"resuming at byte {download.written}" if download.written else "again"
                    log.info("%s cut short, asking %s: %s", file.filename, again, exc)
                    await asyncio.sleep(BACKOFF * 2**attempt * random.uniform(0.5, 1.5))
            assert writer is not None
            if writer.attached:
                try:
                    download.final_path = await writer.commit()
                except CacheFull as exc:  # the bytes are all here, on the open descriptor
                    await self._not_caching(download, role, str(exc), download.written)
            else:
                writer.verify()
        finally:
            if writer is not None and download.final_path is None:
                await writer.discard()

    async def _writer(
        self, download: Download, sha256: str, role: _Role, attach: bool = True
    ) -> BlobWriter:
        """The temp file this download is written to, its name the one published;
        ``attach``: the clients here read from it at once."""
        reservation = None
        reason: str | None = None
        try:
            reservation = await self.blobs.reserve(download.size)
        except CacheFull as exc:
            reason = str(exc)
        writer = self.blobs.writer(sha256, download.size, reservation, role.holding.temp)
        if reason is None:
            try:
                await writer.open()
                if attach:
                    download.attach(writer.temp_path)
            except (CacheFull, OSError) as exc:
                reason = str(exc)
        if reason is not None:
            await writer.detach()
            await self._not_caching(download, role, reason, download.written)
        else:
            await role.publish(started=True, size=download.size)
        return writer

    async def _carry_on(
        self, download: Download, sha256: str, role: _Role, prefix: tuple[int, int]
    ) -> BlobWriter:
        """A temp file of our own that begins with the bytes a leader gone left (the
        clients here may have some of them already)."""
        source, length = prefix
        log.info("%s: taking over its download at byte %d", download.file.filename, length)
        writer = await self._writer(download, sha256, role, attach=False)
        position = 0
        while position < length:
            data = await asyncio.to_thread(
                os.pread, source, min(CHUNK, length - position), position
            )
            if not data:
                raise IntegrityError(f"the download taken over shrank below {length} bytes")
            if writer.attached:
                try:
                    await writer.write(data)
                except CacheFull as exc:
                    # Readers here go on reading the old file up to what they were given.
                    await writer.detach()
                    await self._not_caching(download, role, str(exc), download.written)
            if not writer.attached:
                await writer.write(data)  # hashed only
            new = position + len(data) - download.written
            if new > 0:
                download.add(data[len(data) - new :])
            position += len(data)
        if writer.attached:
            download.attach(writer.temp_path)
        return writer

    async def _take(
        self, download: Download, writer: BlobWriter, chunk: bytes, role: _Role
    ) -> None:
        size = download.size
        if size is not None and download.written + len(chunk) > size:
            # Unframed (no Content-Length) past what the index or upstream announced: an
            # endless body would fill the disk before the deadline ended it.
            raise IntegrityError(f"more than the {size} bytes announced")
        limit = self.blobs.max_size
        if writer.attached and limit is not None and writer.written + len(chunk) > limit:
            reason = f"more than the cache budget ({limit} bytes)"
            await self._detach(download, writer, reason, role)
        if writer.attached:
            try:
                await writer.write(chunk)
            except CacheFull as exc:
                await self._detach(download, writer, str(exc), role)
        if not writer.attached:
            await writer.write(chunk)  # hashed only
        download.add(chunk)
        await download.pace()

    async def _detach(
        self, download: Download, writer: BlobWriter, reason: str, role: _Role
    ) -> None:
        disk_end = writer.written
        await writer.detach()
        await self._not_caching(download, role, reason, disk_end)

    @staticmethod
    async def _not_caching(download: Download, role: _Role, reason: str, disk_end: int) -> None:
        log.warning(
            "not caching %s: %s; streaming it to its clients only", download.file.filename, reason
        )
        download.stop_caching(reason, disk_end)
        # Followers elsewhere have no file to follow any more: they download it themselves.
        await role.publish(started=True, size=download.size, caching=False)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _check_status(download: Download, response: httpx.Response) -> None:
    file = download.file
    status = response.status_code
    expected = 206 if download.written else 200
    if status == expected:
        if expected == 206:
            start = response.headers.get("content-range", "").removeprefix("bytes ")
            if not start.startswith(f"{download.written}-"):
                raise UpstreamError(file.url, f"{file.filename}: resumed at the wrong byte")
            if _coded(response):  # a range of coded bytes: not the rest of the file
                raise UpstreamError(
                    file.url, f"{file.filename}: resumed in a content coding, not as stored"
                )
        return
    if download.written:
        raise UpstreamError(
            file.url,
            f"{file.filename}: cut short at byte {download.written}, and resuming it "
            f"was answered HTTP {status}",
        )
    raise UpstreamError(file.url, f"HTTP {status} for {file.filename}")
