from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.edge.config import Settings
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding a test marked ``heavy`` first, then the others by their number of
    tests, most first. scripts/test hands whole files to two processes in this order: a
    minute-long test taken last would run alone at the end while the other process idles
    (xdist's own reordering, by number of tests only, put the soak and the 2 GB file last)."""
    per_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        per_file.setdefault(item.nodeid.split("::")[0], []).append(item)

    def weight(tests: list[pytest.Item]) -> tuple[bool, int]:
        heavy = any(item.get_closest_marker("heavy") for item in tests)
        return not heavy, -len(tests)

    items[:] = [item for tests in sorted(per_file.values(), key=weight) for item in tests]


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
