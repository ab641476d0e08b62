"""Shared fixtures of the unit tier: a fake network of indexes, an in-memory state store,
a blob store in a temp directory, the file service over them, and real wheels built once
per session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from proxy.core.profile import parse_profile
from proxy.edge.files import FileService
from proxy.edge.index import Context
from proxy.edge.layers.page_cache import CachedUpstream
from proxy.edge.layers.upstream import HttpUpstream
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.state import StateStore
from tests.fixtures.elf.recipes import source
from tests.support.wheels import WheelSpec, build_wheel, compile_shared_object
from tests.unit.fakes import Clock, FakeIndex, MemoryStore, Network

HOST = "arch=x86_64,impl=cp,python=3.11"
OLD_GLIBC = f"{HOST},libc=glibc-2.17"
NEW_GLIBC = f"{HOST},libc=glibc-2.36"


def host(profile: str) -> Context:
    """The filtered view for a host of this profile string."""
    return Context(profile=parse_profile(profile, "url"))


def cached(index: FakeIndex, client: httpx.AsyncClient, store: StateStore) -> CachedUpstream:
    """The bottom of the stack over one fake index: its pages, cached."""
    return CachedUpstream(HttpUpstream(index.url, client), store, ttl=60.0)


@dataclass(frozen=True)
class Wheels:
    demo_1: Path  # demo 1.0, pure Python
    demo_2: Path  # demo 2.0, pure Python
    native: Path  # fitpkg 1.0 for manylinux_2_17 whose library needs GLIBC_2.25
    windows: Path  # fitpkg 1.0 for win_amd64
    linux: Path  # fitpkg 1.0 tagged plain linux_x86_64, the same library in it
    fixme: Path  # fixme 1.0, requiring a project that does not exist


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    out = tmp_path_factory.mktemp("unit-wheels")
    library = compile_shared_object(source("getrandom.c"), out / "build" / "_random.so")

    def demo(version: str) -> Path:
        files = {"demo/__init__.py": f"VERSION = {version!r}\n".encode()}
        return build_wheel(WheelSpec("demo", version, files=files), out)

    native_files = {"fitpkg/__init__.py": b"", "fitpkg/_random.so": library.read_bytes()}
    return Wheels(
        demo_1=demo("1.0"),
        demo_2=demo("2.0"),
        native=build_wheel(
            WheelSpec("fitpkg", "1.0", "cp311-cp311-manylinux_2_17_x86_64", files=native_files),
            out,
        ),
        windows=build_wheel(
            WheelSpec("fitpkg", "1.0", "cp311-cp311-win_amd64", files={"fitpkg/w.py": b""}), out
        ),
        linux=build_wheel(
            WheelSpec("fitpkg", "1.0", "cp311-cp311-linux_x86_64", files=native_files), out
        ),
        fixme=build_wheel(
            WheelSpec(
                "fixme",
                "1.0",
                files={"fixme/__init__.py": b""},
                requires_dist=["no-such-dependency"],
            ),
            out,
        ),
    )


@pytest.fixture
def net() -> Network:
    return Network()


@pytest.fixture
def index(net: Network) -> FakeIndex:
    return net.index("http://index.test")


@pytest.fixture
async def client(net: Network) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=net.transport()) as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "files")


@pytest.fixture
async def files(
    blobs: BlobStore, client: httpx.AsyncClient, store: MemoryStore
) -> AsyncIterator[FileService]:
    service = FileService(blobs, client, store)
    yield service
    await service.close()
