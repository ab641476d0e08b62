"""The origin filter (`OriginFilter`): links to origins hostfit may not contact leave the
page before anything downstream can fetch them, each with why."""

from __future__ import annotations

import logging

import httpx
import pytest
from packaging.utils import NormalizedName

from proxy.core.origins import Origin, origin_of
from proxy.edge.index import UNIVERSAL
from proxy.edge.layers.origins import OriginFilter
from tests.unit.conftest import Wheels, cached
from tests.unit.fakes import FakeIndex, MemoryStore

DEMO = NormalizedName("demo")
ELSEWHERE = "http://elsewhere.test"
METADATA_ADDRESS = "http://169.254.169.254"


def allowing(*urls: str) -> frozenset[Origin]:
    found = {origin_of(u) for u in urls}
    return frozenset(o for o in found if o is not None)


@pytest.fixture
def linked(index: FakeIndex, wheels: Wheels) -> FakeIndex:
    """demo 1.0 on the index's own origin, 2.0 elsewhere, and a file on a metadata address."""
    index.add("demo", wheels.demo_1)
    index.add("demo", wheels.demo_2)
    index.add("demo", wheels.windows)
    index.links[wheels.demo_2.name] = f"{ELSEWHERE}/files/{wheels.demo_2.name}"
    index.links[wheels.windows.name] = f"{METADATA_ADDRESS}/latest/{wheels.windows.name}"
    return index


async def test_links_to_other_origins_are_withheld_with_why(
    linked: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    layer = OriginFilter(cached(linked, client, store), allowing(linked.url))
    page = await layer.page(DEMO, UNIVERSAL)
    assert [f.filename for f in page.files] == [wheels.demo_1.name]
    why = {f.filename: reason for f, reason in page.withheld}
    assert set(why) == {wheels.demo_2.name, wheels.windows.name}
    assert "elsewhere.test" in why[wheels.demo_2.name]
    assert "not an upstream or allowed file origin" in why[wheels.demo_2.name]
    assert "link-local or cloud metadata" in why[wheels.windows.name]
    assert page.revision  # the page below's: its content is told apart by `withheld`


async def test_an_allowed_file_origin_keeps_its_links(
    linked: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    layer = OriginFilter(cached(linked, client, store), allowing(linked.url, ELSEWHERE))
    page = await layer.page(DEMO, UNIVERSAL)
    assert [f.filename for f in page.files] == [wheels.demo_1.name, wheels.demo_2.name]
    assert [f.filename for f, _ in page.withheld] == [wheels.windows.name]


async def test_a_page_with_only_allowed_links_passes_unchanged(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    inner = cached(index, client, store)
    page = await OriginFilter(inner, allowing(index.url)).page(DEMO, UNIVERSAL)
    assert page == await inner.page(DEMO, UNIVERSAL)
    assert page.withheld == ()


async def test_each_page_revision_is_reported_once(
    linked: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = OriginFilter(cached(linked, client, store), allowing(linked.url))
    with caplog.at_level(logging.WARNING, logger="hostfit.origins"):
        first = await layer.page(DEMO, UNIVERSAL)
        again = await layer.page(DEMO, UNIVERSAL)
    assert again == first
    (record,) = caplog.records
    assert record.getMessage().count("(1 file(s), e.g. ") == 2  # each refusal, once
    assert "elsewhere.test" in record.getMessage()


async def test_the_project_list_passes_through(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore
) -> None:
    index.add_project("Demo")
    layer = OriginFilter(cached(index, client, store), allowing(index.url))
    assert (await layer.projects()).names == ("Demo",)
