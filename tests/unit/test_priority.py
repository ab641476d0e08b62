"""Priority between upstreams (`PriorityIndex`): a project comes whole from the first
upstream that has it; a failing upstream is never skipped."""

from __future__ import annotations

import httpx
import pytest
from packaging.utils import NormalizedName

from proxy.edge.index import UNIVERSAL
from proxy.edge.layers.priority import PriorityIndex
from proxy.errors import NotFound, UpstreamError
from tests.unit.conftest import Wheels, cached
from tests.unit.fakes import FakeIndex, MemoryStore, Network

DEMO = NormalizedName("demo")


@pytest.fixture
def private(net: Network) -> FakeIndex:
    return net.index("http://private.test")


@pytest.fixture
def public(net: Network) -> FakeIndex:
    return net.index("http://public.test")


@pytest.fixture
def both(
    private: FakeIndex, public: FakeIndex, client: httpx.AsyncClient, store: MemoryStore
) -> PriorityIndex:
    return PriorityIndex([cached(private, client, store), cached(public, client, store)])


async def test_a_project_comes_whole_from_the_first_upstream_that_has_it(
    private: FakeIndex, public: FakeIndex, both: PriorityIndex, wheels: Wheels
) -> None:
    private.add("demo", wheels.demo_1)
    public.add("demo", wheels.demo_1)
    public.add("demo", wheels.demo_2)  # a newer public release does not shadow the private one
    page = await both.page(DEMO, UNIVERSAL)
    assert [f.filename for f in page.files] == [wheels.demo_1.name]
    assert page.upstream == private.url
    assert page.files[0].url.startswith(private.origin)
    assert public.requests == []


async def test_a_project_the_first_lacks_comes_from_the_next(
    private: FakeIndex, public: FakeIndex, both: PriorityIndex, wheels: Wheels
) -> None:
    public.add("demo", wheels.demo_2)
    page = await both.page(DEMO, UNIVERSAL)
    assert page.upstream == public.url
    assert [f.filename for f in page.files] == [wheels.demo_2.name]
    assert private.count("/simple/demo/") == 1


async def test_a_failing_upstream_is_not_skipped(
    private: FakeIndex, public: FakeIndex, both: PriorityIndex, wheels: Wheels
) -> None:
    private.add("demo", wheels.demo_1)
    private.status["/simple/demo/"] = 503
    public.add("demo", wheels.demo_2)
    with pytest.raises(UpstreamError, match="HTTP 503"):
        await both.page(DEMO, UNIVERSAL)
    assert public.requests == []  # falling through would be the dependency-confusion hole


async def test_a_project_no_upstream_has_is_not_found(
    private: FakeIndex, public: FakeIndex, both: PriorityIndex
) -> None:
    with pytest.raises(NotFound):
        await both.page(DEMO, UNIVERSAL)
    assert private.count("/simple/demo/") == public.count("/simple/demo/") == 1


async def test_the_project_list_is_every_upstreams_first_spelling_wins(
    private: FakeIndex, public: FakeIndex, both: PriorityIndex
) -> None:
    private.add_project("Our.Lib")
    public.add_project("our-lib")
    public.add_project("Other")
    assert (await both.projects()).names == ("Our.Lib", "Other")
