from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.edge.config import Settings
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def wheel_dir(tmp_path: Path) -> Path:
    path = tmp_path / "wheels"
    path.mkdir()
    return path


@pytest.fixture
def demo_wheel(wheel_dir: Path) -> Path:
    return build_wheel(
        WheelSpec("Demo_Pkg", "1.0", files={"demo_pkg/__init__.py": b"ANSWER = 42\n"}), wheel_dir
    )


@pytest.fixture
def make_proxy(tmp_path: Path) -> Iterator[object]:
    started: list[ProxyThread] = []

    def make(*upstreams: Upstream | str, **overrides: object) -> ProxyThread:
        urls = tuple(u if isinstance(u, str) else u.url for u in upstreams)
        settings = Settings(
            upstreams=urls,
            cache_dir=tmp_path / f"cache{len(started)}",
            **overrides,  # type: ignore[arg-type]
        )
        proxy = ProxyThread(settings).__enter__()
        started.append(proxy)
        return proxy

    yield make
    for proxy in reversed(started):
        proxy.__exit__(None, None, None)
