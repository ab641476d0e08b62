"""Responses: a rendered page, in turns; for files, a cached blob (ranges, large chunks)
or a download being followed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.core.models import File
from proxy.core.ranges import Span, Unsatisfiable, requested_span
from proxy.edge.download import Download
from proxy.edge.logs import ended_short
from proxy.edge.stores.blobs import OpenBlob
from proxy.errors import HostfitError

log = logging.getLogger("hostfit.files")

IMMUTABLE = "public, max-age=31536000, immutable"


PAGE_SLICE = 256 * 1024


async def send_page(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """A rendered page, its body sent a slice at a time, each slice followed by a turn
    for the other requests. ``headers`` are the raw response headers, Content-Length
    included.

    A write hands the socket what it takes at once, and a local socket takes megabytes:
    a 2 MB page went out in one go, so with 64 clients asking at once some waited for
    many whole pages before their first byte (p99 at 64 connections was 3 to 5 times
    nginx's, whose writes are bounded per turn). In slices, every answer advances in
    turn, as nginx's do. A page up to one slice goes out in one message.
    """
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if len(body) <= PAGE_SLICE:
        await send({"type": "http.response.body", "body": body})
        return
    view = memoryview(body)
    for at in range(0, len(view), PAGE_SLICE):
        end = at + PAGE_SLICE
        more = end < len(view)
        await send({"type": "http.response.body", "body": view[at:end], "more_body": more})
        if more:
            await asyncio.sleep(0)


# The reason to cut a transfer short, or None to let its last bytes go.
Admit = Callable[[], Awaitable[str | None]]

# Held back until the verdict: at least this many of the last bytes sent.
HOLD = 64 * 1024
# Never sent before the verdict, trickle or not: with them missing the file has the
# wrong size and sha256, which installers check (and no zip end record).
KEEP = 1024
# Seconds between two trickled bytes: well inside installers' read timeouts (pip's
# default is 15 s, uv's 30).
KEEPALIVE = 2.0


class Withheld:
    """A transfer's body, for the download gate: without ``admit`` it goes out as it
    comes. With it, the verdict is asked for at once, everything but the last `HOLD`
    bytes goes out as it comes, and those wait for the verdict: while it is being made,
    one of them leaves every `KEEPALIVE` seconds, never the last `KEEP`. The transfer
    ends whole only once the verdict lets it.

    The verdict on a wheel not analysed yet is made from the whole cached file, once its
    last byte is in: about 20 s for a 900 MB torch wheel on two cores. An installer whose read
    brings nothing for that long gives up (pip after 15 s by default; pips before 25.1
    do not resume), so a wheel that fits failed to install. The trickle keeps the
    connection busy, and a misfit still never arrives whole.
    """

    def __init__(self, send: Send, file: File, admit: Admit | None) -> None:
        self.send = send
        self.file = file
        self.judging = asyncio.ensure_future(admit()) if admit is not None else None
        self.tail: collections.deque[bytes | memoryview] = collections.deque()
        self.held = 0
        self.trickled = False  # a byte sent while waiting for the verdict
        self.cut = False  # ended short by the verdict, on purpose

    async def chunk(self, data: bytes | memoryview) -> bool:
        """False when the transfer is to end here, cut short: judged a misfit already."""
        if self.judging is None:
            await _send_chunk(self.send, data)
            return True
        if self.judging.done() and self.judging.result() is not None:
            return await self.end()  # the rest of a misfit would be sent for nothing
        self.tail.append(data)
        self.held += len(data)
        if self.held > HOLD:  # (a download's chunk may be all it has written so far)
            await self._send_front(self.held - HOLD)
        return True

    async def end(self) -> bool:
        """Whether the transfer may end whole; sends the rest when it may."""
        if self.judging is None:
            return True
        while not (await asyncio.wait({self.judging}, timeout=KEEPALIVE))[0]:
            if self.held > KEEP:
                if not self.trickled:
                    log.info("holding the end of %s until it is judged", self.file.filename)
                self.trickled = True
                await self._send_front(1)
        refusal = self.judging.result()
        if refusal is not None:
            log.warning("cut short: %s", refusal)
            self.cut = True
            return False
        while self.tail:
            await _send_chunk(self.send, self.tail.popleft())
        return True

    def close(self) -> None:
        """However the transfer ended: a client that went away stops waiting (what the
        verdict awaits goes on, for the others who wait for it)."""
        if self.judging is not None:
            self.judging.cancel()  # (on a verdict that failed, this marks it retrieved)

    async def _send_front(self, count: int) -> None:
        """Sends the first ``count`` bytes held, a held chunk split where it must be."""
        while count > 0:
            first = self.tail[0]
            if len(first) > count:
                view = memoryview(first)
                first, self.tail[0] = view[:count], view[count:]
            else:
                self.tail.popleft()
            self.held -= len(first)
            count -= len(first)
            await _send_chunk(self.send, first)


def _file_headers(file: File) -> dict[str, str]:
    return {"Cache-Control": IMMUTABLE, "ETag": f'"{file.sha256}"'}


class BlobResponse(Response):
    """A cached blob, read through the descriptor opened when it was looked up, so a blob
    evicted meanwhile still arrives whole; one byte range is answered 206. The blob is
    closed when the response ends, however it ends."""

    # Fewer, larger reads: the event loop's cost is per chunk, not per byte.
    chunk_size = 1024 * 1024

    def __init__(self, blob: OpenBlob, file: File, admit: Admit | None = None) -> None:
        """``admit``: as `DownloadResponse`'s, for a cached wheel not judged yet."""
        self.blob = blob
        self.file = file
        self.admit = admit
        self.out: Withheld | None = None
        headers = _file_headers(file)
        headers["Accept-Ranges"] = "bytes"
        super().__init__(None, media_type="application/octet-stream", headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            self.blob.close()

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = self.blob.size
        request = Headers(scope=scope)
        if_range = request.get("if-range")
        header = request.get("range") if if_range in (None, f'"{self.file.sha256}"') else None
        try:
            span = requested_span(header, size)
        except Unsatisfiable:
            await Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})(
                scope, receive, send
            )
            return
        headers = MutableHeaders(raw=list(self.raw_headers))
        start, stop = (span.start, span.stop) if span is not None else (0, size)
        headers["Content-Length"] = str(stop - start)
        if span is not None:
            headers["Content-Range"] = span.content_range(size)
        status = 206 if span is not None else 200
        await send({"type": "http.response.start", "status": status, "headers": headers.raw})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        if await _until_disconnected(self._stream(send, start, stop), receive):
            await send({"type": "http.response.body", "body": b""})
        elif self.out is not None and self.out.cut:
            ended_short()  # in the request's own task, where uvicorn will complain

    async def _stream(self, send: Send, start: int, stop: int) -> bool:
        out = self.out = Withheld(send, self.file, self.admit)
        try:
            position = start
            while position < stop:
                size = min(self.chunk_size, stop - position)
                data = await asyncio.to_thread(os.pread, self.blob.fd, size, position)
                if not data:
                    log.warning("aborted transfer: %s: cache file shrank", self.file.filename)
                    return False
                position += len(data)
                if not await out.chunk(data):
                    return False
            return await out.end()
        finally:
            out.close()


class DownloadResponse(Response):
    """Streams a download in progress; aborts the transfer if the bytes prove wrong.

    ``admit``, when given, is asked once the bytes to send have arrived, and answered
    before their last ones leave (`Withheld`); a reason it returns cuts the transfer
    short (the download gate).
    """

    def __init__(
        self,
        download: Download,
        admit: Admit | None = None,
        span: Span | None = None,
    ) -> None:
        """``span``: one byte range, answered 206 as the bytes arrive (needs a known size)."""
        self.download = download
        self.admit = admit
        self.span = span
        self.out: Withheld | None = None
        headers = _file_headers(download.file)
        headers["Accept-Ranges"] = "bytes"
        if span is not None and download.size is not None:
            headers["Content-Range"] = span.content_range(download.size)
            headers["Content-Length"] = str(span.stop - span.start)
        elif download.size is not None:
            headers["Content-Length"] = str(download.size)
        super().__init__(None, media_type="application/octet-stream", headers=headers)
        if "Content-Length" not in headers:
            # Starlette sizes a body of None as 0 bytes: an empty 200 the client takes
            # as the whole file. Unsized, the server sends it chunked.
            self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 206 if self.span is not None else 200
        await send({"type": "http.response.start", "status": status, "headers": self.raw_headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        if await _until_disconnected(self._stream(send), receive):
            await send({"type": "http.response.body", "body": b""})
        elif self.out is not None and self.out.cut:
            ended_short()  # in the request's own task, where uvicorn will complain

    async def _stream(self, send: Send) -> bool:
        out = self.out = Withheld(send, self.download.file, self.admit)
        try:
            # aclosing: a client that goes away mid-file must not leave the reader's
            # file handle to the garbage collector.
            start, stop = (self.span.start, self.span.stop) if self.span else (0, None)
            async with contextlib.aclosing(self.download.chunks(start, stop)) as chunks:
                async for chunk in chunks:
                    if not await out.chunk(chunk):
                        return False
            return await out.end()
        except HostfitError as exc:
            # Ending without the final message makes the server drop the connection, so
            # the client sees a short body and rejects the file.
            log.warning("aborted transfer: %s", exc)
            return False
        finally:
            out.close()


async def _send_chunk(send: Send, chunk: bytes | memoryview) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _until_disconnected(streaming: Coroutine[Any, Any, bool], receive: Receive) -> bool:
    """Runs ``streaming`` until it ends or the client goes; True when it sent everything."""
    stream = asyncio.create_task(streaming)
    watch = asyncio.create_task(_disconnected(receive))
    done, _ = await asyncio.wait({stream, watch}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stream, watch):
        task.cancel()
    await asyncio.gather(stream, watch, return_exceptions=True)
    if stream in done and not stream.cancelled():
        return stream.result()  # raises what the stream raised
    return False


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
