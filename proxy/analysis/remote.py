"""A remote file as a seekable, read-only file, read through HTTP range requests.

Reads are served from fixed-size blocks kept in a small LRU cache, with the blocks
it evicts kept in a temporary file, so no byte is fetched twice however often a
reader comes back (a deflated member may be inflated again from a snapshot); a read
that misses fetches all of its missing blocks in one request. ``fetched`` counts
every body byte received. A server that ignores ``Range`` (answers 200) is handled by
downloading the whole file once into a temporary file, still counted.

With an `Outbound` policy, every request (each redirect hop too) must go to an origin it
allows, and carries that origin's credentials and TLS settings (the server's workers pass
one; `hostfit inspect` fetches what its user names, trusting the system store).

Each request is retried on transient failures (`proxy.retry`: connect errors, resets,
502/503/504) before it counts as failed. Network trouble then raises `UpstreamError`: it
says nothing about the wheel, so it must never become a stored ``unanalysable`` report.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable
from typing import IO

import httpx

from proxy.analysis.bounds import GiB, MiB
from proxy.analysis.random_access import RandomAccessReader
from proxy.core.lru import LRU
from proxy.core.origins import Outbound
from proxy.errors import UpstreamError
from proxy.outbound import AS_STORED, sync_client, upstream_errors
from proxy.retry import RetryingSyncTransport

BLOCK = 16 * 1024
CACHE_BYTES = 32 * MiB
MAX_DOWNLOAD = 16 * GiB
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIABLE = re.compile(r"^bytes \*/(\d+)$")

Progress = Callable[[int, int], None]  # (bytes fetched, file size)


class RemoteFile(RandomAccessReader):
    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client | None = None,
        block_size: int = BLOCK,
        cache_bytes: int = CACHE_BYTES,
        max_download: int = MAX_DOWNLOAD,
        progress: Progress | None = None,
        outbound: Outbound | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.block_size = block_size
        self.fetched = 0
        self.requests = 0
        self.ranged = True
        self._own_client = client is None
        self._client = client or sync_client(outbound, timeout=TIMEOUT, wrap=RetryingSyncTransport)
        self._cache: LRU[int, bytes] = LRU(max(2, cache_bytes // block_size))
        self._spill: IO[bytes] | None = None  # blocks evicted from memory
        self._spilled: set[int] = set()
        self._max_download = max_download
        self._progress = progress
        self._pos = 0
        self._whole: IO[bytes] | None = None
        try:
            self.size = self._open()
        except BaseException:
            self.close()
            raise

    # io interface -----------------------------------------------------------

    def read_span(self, start: int, end: int) -> bytes:
        return self._read_range(start, end)

    def close(self) -> None:
        if self._whole is not None:
            self._whole.close()
            self._whole = None
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        if self._own_client:
            self._client.close()
        super().close()

    def whole_sha256(self) -> str | None:
        """The file's sha256 when it came whole (no Range support), else None."""
        if self._whole is None:
            return None
        self._whole.seek(0)
        digest = hashlib.sha256()
        while chunk := self._whole.read(1024 * 1024):
            digest.update(chunk)
        return digest.hexdigest()

    def held_sha256(self) -> str | None:
        """The file's sha256 when every byte of it has been fetched, however (the whole
        file, or ranges that cover it: a small wheel's analysis reads it all), else None.
        Nothing is fetched for it."""
        whole = self.whole_sha256()
        if whole is not None:
            return whole
        digest = hashlib.sha256()
        for index in range(-(-self.size // self.block_size)):
            block = self._cache.peek(index)
            if block is None and index in self._spilled and self._spill is not None:
                self._spill.seek(index * self.block_size)
                block = self._spill.read(self.block_size)
            if block is None:
                return None
            digest.update(block[: self.size - index * self.block_size])
        return digest.hexdigest()

    # ------------------------------------------------------------------------

    def _open(self) -> int:
        """Fetch the last block (where a zip keeps its directory) and learn the size."""
        request = self._client.build_request(
            "GET", self.url, headers={"Range": f"bytes=-{self.block_size}", **AS_STORED}
        )
        response = self._send(request)
        try:
            if response.status_code == 416:
                match = _UNSATISFIABLE.match(response.headers.get("content-range", ""))
                if match and int(match.group(1)) == 0:
                    return 0
                raise UpstreamError(self.url, "range not satisfiable")
            if response.status_code == 200:
                self.ranged = False
                return self._download(response)
            if response.status_code != 206:
                raise UpstreamError(self.url, f"HTTP {response.status_code}")
            start, end, total = self._content_range(response)
            body = self._body(response, end - start + 1)
        finally:
            response.close()
        self._store(start, body, total)
        return total

    def _download(self, response: httpx.Response) -> int:
        spool = self._whole = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        declared = response.headers.get("content-length")
        expected = int(declared) if declared and declared.isdigit() else 0
        with upstream_errors(self.url, "downloading"):
            for chunk in response.iter_bytes(1024 * 1024):
                self._count(len(chunk))
                spool.write(chunk)
                if self._progress is not None:
                    self._progress(self.fetched, max(expected, self.fetched))
        return spool.tell()

    def _read_range(self, start: int, end: int) -> bytes:
        if self._whole is not None:
            self._whole.seek(start)
            return self._whole.read(end - start)
        first, last = start // self.block_size, (end - 1) // self.block_size
        blocks: dict[int, bytes] = {}
        missing = []
        for index in range(first, last + 1):
            block = self._cached(index)
            if block is None:
                missing.append(index)
            else:
                blocks[index] = block
        for run_start, run_end in _runs(missing):
            blocks.update(self._fetch_blocks(run_start, run_end))
        for index in blocks:
            self._remember(index, blocks[index])
        data = b"".join(blocks[b] for b in range(first, last + 1))
        offset = start - first * self.block_size
        return data[offset : offset + (end - start)]

    def _fetch_blocks(self, first: int, last: int) -> dict[int, bytes]:
        start = first * self.block_size
        end = min((last + 1) * self.block_size, self.size) - 1
        request = self._client.build_request(
            "GET", self.url, headers={"Range": f"bytes={start}-{end}", **AS_STORED}
        )
        response = self._send(request)
        try:
            if response.status_code != 206:
                raise UpstreamError(self.url, f"HTTP {response.status_code} to a range request")
            got_start, got_end, total = self._content_range(response)
            if (got_start, got_end, total) != (start, end, self.size):
                raise UpstreamError(
                    self.url, f"asked bytes {start}-{end}, got {got_start}-{got_end}"
                )
            body = self._body(response, end - start + 1)
        finally:
            response.close()
        if self._progress is not None:
            self._progress(self.fetched, self.size)
        return {
            index: body[(index - first) * self.block_size : (index - first + 1) * self.block_size]
            for index in range(first, last + 1)
        }

    def _store(self, start: int, body: bytes, total: int) -> None:
        """Keep the whole blocks (and the file's last, short block) of a response."""
        first = -(-start // self.block_size)
        for index in range(first, -(-total // self.block_size)):
            begin = index * self.block_size
            block = body[begin - start : begin - start + self.block_size]
            if len(block) == min(self.block_size, total - begin):
                self._remember(index, block)

    def _remember(self, index: int, block: bytes) -> None:
        for evicted, data in self._cache.put(index, block):
            if evicted not in self._spilled:
                if self._spill is None:
                    self._spill = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
                self._spill.seek(evicted * self.block_size)
                self._spill.write(data)
                self._spilled.add(evicted)

    def _cached(self, index: int) -> bytes | None:
        block = self._cache.get(index)
        if block is None and index in self._spilled and self._spill is not None:
            self._spill.seek(index * self.block_size)
            block = self._spill.read(min(self.block_size, self.size - index * self.block_size))
        return block

    def _send(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        with upstream_errors(self.url, "requesting"):
            return self._client.send(request, stream=True)

    def _body(self, response: httpx.Response, expected: int) -> bytes:
        parts = []
        received = 0
        with upstream_errors(self.url, "reading a range"):
            for chunk in response.iter_bytes():
                received += len(chunk)
                self._count(len(chunk))
                if received > expected:
                    raise UpstreamError(self.url, f"range response longer than {expected} bytes")
                parts.append(chunk)
        if received != expected:
            raise UpstreamError(self.url, f"range response of {received}, not {expected} bytes")
        return b"".join(parts)

    def _content_range(self, response: httpx.Response) -> tuple[int, int, int]:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if not match or match.group(3) == "*":
            raise UpstreamError(self.url, "206 without a usable Content-Range")
        start, end, total = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if not start <= end < total:
            raise UpstreamError(self.url, f"impossible Content-Range {start}-{end}/{total}")
        return start, end, total

    def _count(self, amount: int) -> None:
        self.fetched += amount
        if self.fetched > self._max_download:
            raise UpstreamError(self.url, f"more than {self._max_download} bytes downloaded")


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted block numbers as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for index in indices:
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs
