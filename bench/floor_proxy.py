"""The floor of a cold page for a Python proxy on hostfit's stack: the work no such proxy
can skip, and nothing else.

``python bench/floor_proxy.py UPSTREAM PORT``: a bare ASGI app under uvicorn (as
`hostfit serve` runs, one process) that answers ``/simple/<project>/`` by fetching the
upstream's JSON page with httpx, inflating it (ISA-L), parsing it (orjson), pointing
each file's URL at itself, writing it (orjson) and compressing it (ISA-L level 1, as
hostfit does) when the client accepts gzip. Every request is cold: nothing is cached.

It checks nothing (names, hashes, URLs, duplicates), applies no rule, keeps no page and
serves no file: it is no proxy anyone should run. The comparison runs it on the cold
pages only, so that hostfit's cold figures can be read against the least a proxy
written in Python has to spend on the same page on the same machine.
"""

from __future__ import annotations

import gzip
import re
import sys
import zlib
from typing import Any

import httpx
import orjson
import uvicorn

try:  # as hostfit: ISA-L where it has a wheel, zlib elsewhere
    from isal import igzip, isal_zlib

    def inflated(data: bytes) -> bytes:
        return isal_zlib.decompress(data, 31)

    def deflated(data: bytes) -> bytes:
        return igzip.compress(data, 1, mtime=0)

except ImportError:

    def inflated(data: bytes) -> bytes:
        return zlib.decompress(data, 31)

    def deflated(data: bytes) -> bytes:
        return gzip.compress(data, 1, mtime=0)


JSON_V1 = "application/vnd.pypi.simple.v1+json"
_PAGE = re.compile(r"/simple/([^/]+)/")


class Floor:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        found = _PAGE.fullmatch(scope["path"])
        if found is None or self.client is None:
            await _answer(send, 200, b"{}", [])
            return
        name = found.group(1)
        async with self.client.stream(
            "GET", f"{self.upstream}{name}/", headers={"Accept": JSON_V1}
        ) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            coding = response.headers.get("content-encoding", "")
        body = inflated(raw) if coding == "gzip" else raw
        page = orjson.loads(body)
        folder = f"../../files/{name}/"
        for file in page["files"]:
            file["url"] = folder + file["filename"]
        out = orjson.dumps(page)
        headers = [(b"content-type", JSON_V1.encode())]
        if b"gzip" in dict(scope["headers"]).get(b"accept-encoding", b""):
            out = deflated(out)
            headers.append((b"content-encoding", b"gzip"))
        await _answer(send, 200, out, headers)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = httpx.AsyncClient(headers={"Accept-Encoding": "gzip"})
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    upstream, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(Floor(upstream), host="127.0.0.1", port=port, log_level="warning", access_log=False)
