"""Serving imports nothing once warm: an import that fails (a missing optional module a
library asks for on every call) scans every directory of ``sys.path`` each time."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

MakeProxy = Callable[..., ProxyThread]


class Looked(importlib.abc.MetaPathFinder):
    """Every module name looked for outside ``sys.modules``; finds nothing itself."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        self.names.append(fullname)


@pytest.fixture
def looked() -> Iterator[Looked]:
    finder = Looked()
    sys.meta_path.insert(0, finder)
    yield finder
    sys.meta_path.remove(finder)


def test_cold_and_cached_pages_and_downloads_import_nothing(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path, looked: Looked
) -> None:
    for name in ("first", "second", "third"):
        wheel = build_wheel(WheelSpec(name, "1.0", files={f"{name}/__init__.py": b""}), wheel_dir)
        upstream.add(name, wheel)
    proxy = make_proxy(upstream)

    def serve(name: str) -> None:
        page = httpx.get(f"{proxy.url}simple/{name}/", headers={"Accept": JSON_V1})
        assert page.status_code == 200
        (entry,) = page.json()["files"]
        file = httpx.get(f"{proxy.url}simple/{name}/{entry['url']}")
        assert file.status_code == 200
        cached = httpx.get(f"{proxy.url}simple/{name}/", headers={"Accept": "text/html"})
        assert cached.status_code == 200

    serve("first")  # what is imported on first use, once
    looked.names.clear()
    serve("second")
    serve("third")
    assert looked.names == []
