"""The operator's policies as a layer (`PolicyIndex`): files they hide leave every view,
the served revision follows the rules, quarantine releases files as time passes, and what
was hidden is kept with its reasons for explain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from packaging.utils import NormalizedName

from proxy.core.origins import origin_of
from proxy.core.rules import EMPTY, Rules, load_rules
from proxy.edge.index import UNIVERSAL, Index
from proxy.edge.layers.origins import OriginFilter
from proxy.edge.layers.policy import PolicyIndex
from tests.unit.conftest import OLD_GLIBC, Wheels, cached, host
from tests.unit.fakes import FakeIndex, MemoryStore

DEMO = NormalizedName("demo")
POLICY = "rules/policy.toml"
DENY_OLD = '[[deny]]\nproject = "demo"\nversion = "<2"\nreason = "CVE-0000-0001"\n'
DENY_ALL = '[[deny]]\nproject = "demo"\n'
QUARANTINE = '[quarantine]\nmin_age = "7d"\n'
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


class Reloadable:
    """What the server hands the layer: the rules in force now, reloaded at will."""

    def __init__(self, text: str = "") -> None:
        self.rules = load_rules({POLICY: text}) if text else EMPTY

    def __call__(self) -> Rules:
        return self.rules

    def load(self, text: str) -> None:
        self.rules = load_rules({POLICY: text})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_a_denied_version_leaves_every_view(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    index.add("demo", wheels.demo_2)
    inner = cached(index, client, store)
    layer = PolicyIndex(inner, Reloadable(DENY_OLD))
    for ctx in (UNIVERSAL, host(OLD_GLIBC)):
        page = await layer.page(DEMO, ctx)
        assert [f.filename for f in page.files] == [wheels.demo_2.name]
    filtered = layer.hidden_from(page)
    assert filtered is not None
    (reason,) = filtered.hidden[wheels.demo_1.name]
    assert reason.kind == "rule" and "CVE-0000-0001" in reason.message
    assert f"{POLICY}: deny[0]" in reason.message
    assert [f.filename for f in filtered.before.files] == [wheels.demo_1.name, wheels.demo_2.name]
    assert page.revision != (await inner.page(DEMO, UNIVERSAL)).revision


async def test_the_revision_follows_the_rules(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    index.add("demo", wheels.demo_2)
    rules = Reloadable(DENY_OLD)
    layer = PolicyIndex(cached(index, client, store), rules)
    before = await layer.page(DEMO, UNIVERSAL)
    # Other rules that keep the same files: same files, yet another revision.
    rules.load(DENY_OLD + "# reworded\n")
    reworded = await layer.page(DEMO, UNIVERSAL)
    assert reworded.files == before.files and reworded.revision != before.revision
    rules.load('[[deny]]\nproject = "demo"\nversion = ">=2"\n')
    flipped = await layer.page(DEMO, UNIVERSAL)
    assert [f.filename for f in flipped.files] == [wheels.demo_1.name]
    assert index.count("/simple/demo/") == 1  # a reload needs no refetch


async def test_a_project_denied_whole_leaves_the_project_list(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    index.add_project("Other")
    layer = PolicyIndex(cached(index, client, store), Reloadable(DENY_ALL))
    assert (await layer.projects()).names == ("Other",)
    assert (await layer.page(DEMO, UNIVERSAL)).files == ()


async def test_quarantine_releases_a_file_once_it_is_old_enough(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1, upload_time=stamp(NOW - timedelta(days=30)))
    index.add("demo", wheels.demo_2, upload_time=stamp(NOW - timedelta(days=1)))
    clock = Clock()
    layer = PolicyIndex(cached(index, client, store), Reloadable(QUARANTINE), clock=clock)
    held = await layer.page(DEMO, UNIVERSAL)
    assert [f.filename for f in held.files] == [wheels.demo_1.name]
    filtered = layer.hidden_from(held)
    assert filtered is not None
    assert "quarantined until 7d old" in filtered.hidden[wheels.demo_2.name][0].message
    clock.now += timedelta(days=5)
    assert (await layer.page(DEMO, UNIVERSAL)).files == held.files
    clock.now += timedelta(days=1, seconds=1)
    released = await layer.page(DEMO, UNIVERSAL)
    assert [f.filename for f in released.files] == [wheels.demo_1.name, wheels.demo_2.name]
    assert released.revision != held.revision


async def test_files_withheld_for_their_origin_are_reported_as_hidden(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    index.add("demo", wheels.demo_2)
    index.links[wheels.demo_2.name] = f"http://elsewhere.test/{wheels.demo_2.name}"
    allowed = origin_of(index.url)
    assert allowed is not None
    screened: Index = OriginFilter(cached(index, client, store), frozenset({allowed}))
    layer = PolicyIndex(screened, Reloadable())  # no rules at all
    page = await layer.page(DEMO, UNIVERSAL)
    assert [f.filename for f in page.files] == [wheels.demo_1.name] and page.withheld == ()
    filtered = layer.hidden_from(page)
    assert filtered is not None
    (reason,) = filtered.hidden[wheels.demo_2.name]
    assert reason.kind == "origin" and "elsewhere.test" in reason.message
    assert {f.filename for f in filtered.before.files} == {wheels.demo_1.name, wheels.demo_2.name}


async def test_without_rules_a_page_passes_unchanged(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    index.add_project("Other")
    inner = cached(index, client, store)
    layer = PolicyIndex(inner, Reloadable())
    assert await layer.page(DEMO, UNIVERSAL) == await inner.page(DEMO, UNIVERSAL)
    assert (await layer.projects()).names == ("demo", "Other")
