"""Through the app: the page requests a worker starts in one turn of its event loop share
one answer of the stack (`proxy.edge.layers.turn.TurnMemo`), and each is still counted
as a page served, its hidden files included."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.edge.app import build_app
from proxy.edge.config import Settings
from proxy.edge.layers.turn import TurnMemo
from tests.edge.test_observability import parse, value
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

LINUX_HOST = {"X-Hostfit-Profile": "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.35"}


async def test_the_page_requests_of_one_turn_share_an_answer_and_each_is_counted(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"winonly/__init__.py": b""}
    windows = build_wheel(
        WheelSpec("winonly", "1.0", tag="py3-none-win_amd64", files=files), tmp_path
    )
    pure = build_wheel(WheelSpec("winonly", "0.9", files=files), tmp_path)
    upstream.add("winonly", windows)
    upstream.add("winonly", pure)
    app = build_app(Settings(upstreams=(upstream.url,), cache_dir=tmp_path / "cache"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://hostfit") as client,
    ):
        services = app.state.services
        assert isinstance(services.index, TurnMemo)
        first = await client.get("/simple/winonly/", headers=LINUX_HOST)
        assert first.status_code == 200 and windows.name not in first.text
        decisions = 0
        decided = services.filter.decided

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal decisions
            decisions += 1
            return await decided(*args, **kwargs)

        monkeypatch.setattr(services.filter, "decided", counted)
        # As a worker under load starts them: eight requests in one turn of its loop.
        answers = await asyncio.gather(
            *(client.get("/simple/winonly/", headers=LINUX_HOST) for _ in range(8))
        )
        assert {(a.status_code, a.text) for a in answers} == {(200, first.text)}
        assert decisions == 1, decisions  # the stack asked once for the eight
        await asyncio.sleep(0)
        again = await client.get("/simple/winonly/", headers=LINUX_HOST)  # a later turn
        assert again.text == first.text and decisions == 2
        samples = parse((await client.get("/metrics")).text)
    # Ten pages served, each hiding the Windows wheel from this Linux host.
    assert value(samples, "hostfit_files_hidden_total", reason="tags") == 10
