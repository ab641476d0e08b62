"""The page route served in front of Starlette's router (`proxy.edge.app.Hostfit`)
answers as every other route does: a bug is a plain 500, counted under the route's name,
and the server goes on; other methods and forms of the path are Starlette's as before."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.exceptions import HTTPException

from proxy.core.models import Page
from proxy.core.negotiate import JSON_V1
from proxy.edge.app import build_app
from proxy.edge.config import Settings
from proxy.edge.index import Context
from proxy.edge.render import Rendered
from tests.edge.test_observability import parse, value
from tests.support.upstream import Upstream


async def test_a_bug_on_the_page_route_is_answered_and_counted_as_on_any_route(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.add("demo-pkg", demo_wheel)
    app = build_app(Settings(upstreams=(upstream.url,), cache_dir=tmp_path / "cache"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://hostfit") as client,
    ):
        index = app.state.services.index

        async def broken(name: str, ctx: Context) -> Page:
            raise RuntimeError("a bug")

        async def refused(name: str, ctx: Context) -> Page:
            raise HTTPException(418, "short and stout")

        # In front of the router, and through it (the same route under a mount).
        paths = ("/simple/demo-pkg/", "/universal/simple/demo-pkg/")
        with monkeypatch.context() as patched:
            patched.setattr(index, "page", broken)
            for path in paths:
                answer = await client.get(path)
                assert (answer.status_code, answer.text) == (500, "Internal Server Error")
            patched.setattr(index, "page", refused)
            for path in paths:
                answer = await client.get(path)
                assert (answer.status_code, answer.text) == (418, "short and stout")
        page = await client.get("/simple/demo-pkg/", headers={"Accept": JSON_V1})
        assert page.status_code == 200 and page.json()["name"] == "demo-pkg"
        assert "x-request-id" in page.headers
        assert (await client.post("/simple/demo-pkg/")).status_code == 405
        redirected = await client.get("/simple/Demo_Pkg/")
        assert redirected.status_code == 301
        assert redirected.headers["location"].endswith("/simple/demo-pkg/")
        missing = await client.get("/simple/no-such-project/")
        assert missing.status_code == 404 and "no-such-project" in missing.text

        samples = parse((await client.get("/metrics")).text)
    responses = "hostfit_responses_total"
    for route in ("/simple/{project}/", "/universal/simple/{project}/"):
        assert value(samples, responses, route=route, status="500") == 1
    page_route = "/simple/{project}/"
    assert value(samples, responses, route=page_route, status="200") == 1
    assert value(samples, responses, route=page_route, status="301") == 1
    assert value(samples, responses, route=page_route, status="404") == 1
    assert value(samples, responses, route=page_route, status="405") == 1
    assert value(samples, responses, route=page_route, status="418") == 1


async def test_a_cold_page_is_rendered_and_tagged_off_the_event_loop(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.add("demo-pkg", demo_wheel)
    made_on: list[int] = []
    made = Rendered.__init__

    def watched(self: Rendered, body: bytes, resized: Callable[[], None] | None = None) -> None:
        made_on.append(threading.get_ident())
        made(self, body, resized)

    monkeypatch.setattr(Rendered, "__init__", watched)
    app = build_app(Settings(upstreams=(upstream.url,), cache_dir=tmp_path / "cache"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://hostfit") as client,
    ):
        page = await client.get("/simple/demo-pkg/", headers={"Accept": JSON_V1})
    assert page.status_code == 200 and page.headers["etag"]
    assert made_on and threading.get_ident() not in made_on
