"""The rewrite layer (`RewriteIndex` with its `RewriteService`): filtered pages list the
wheels the rules rewrite (metadata fixes, truthful platform tags) in place of the
originals, once made; until then the original is listed and the page is provisional."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from email.parser import BytesParser

import httpx
import pytest
from packaging.utils import NormalizedName, parse_wheel_filename

from proxy.core.models import Page
from proxy.core.rules import Rules, load_rules
from proxy.edge.files import FileService
from proxy.edge.index import UNIVERSAL
from proxy.edge.layers.rewrite import RewriteIndex
from proxy.edge.reports import ReportService
from proxy.edge.rewrites import Done, RewriteService
from proxy.edge.scheduler import AnalysisScheduler
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.leases import open_leases
from tests.unit.conftest import NEW_GLIBC, Wheels, cached, host
from tests.unit.fakes import FakeIndex, InProcessAnalyzer, MemoryStore

FIXME = NormalizedName("fixme")
FITPKG = NormalizedName("fitpkg")
RULES = load_rules(
    {
        "rules/fixes.toml": """
[sources]
ticket = "test ticket: fixme 1.0 declares a dependency that does not exist"

[[metadata]]
project = "fixme"
version = "==1.0"
remove_requires = ["no-such-dependency"]
source = "ticket"

[[retag]]
project = "fitpkg"
"""
    }
)
Make = Callable[..., RewriteIndex]


@pytest.fixture
async def scheduler(
    client: httpx.AsyncClient, store: MemoryStore, blobs: BlobStore
) -> AsyncIterator[AnalysisScheduler]:
    reports = ReportService(store, InProcessAnalyzer(client), open_leases(store, blobs.tmp))
    made = AnalysisScheduler(reports, blobs)
    yield made
    await made.close()


@pytest.fixture
async def make(
    index: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    files: FileService,
    scheduler: AnalysisScheduler,
) -> AsyncIterator[Make]:
    made: list[RewriteIndex] = []

    def make_one(blobs: BlobStore, rules: Rules = RULES) -> RewriteIndex:
        service = RewriteService(blobs, files, store)
        made.append(RewriteIndex(cached(index, client, store), lambda: rules, service, scheduler))
        return made[-1]

    yield make_one
    for layer in made:
        await layer.close()


async def settled(layer: RewriteIndex, name: NormalizedName) -> Page:
    deadline = time.monotonic() + 10
    while (page := await layer.page(name, host(NEW_GLIBC))).provisional:
        assert time.monotonic() < deadline, "the rewrite never settled"
        await asyncio.sleep(0.02)
    return page


def requirements(blobs: BlobStore, sha256: str) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(blobs.path(sha256).read_bytes())) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return BytesParser().parsebytes(archive.read(name)).get_all("Requires-Dist") or []


async def test_a_fixed_wheel_replaces_its_original_once_made(
    index: FakeIndex, make: Make, blobs: BlobStore, wheels: Wheels
) -> None:
    original = index.add("fixme", wheels.fixme)
    layer = make(blobs)
    first = await layer.page(FIXME, host(NEW_GLIBC))
    assert first.provisional and [f.filename for f in first.files] == [original.filename]
    page = await settled(layer, FIXME)
    (served,) = page.files
    _, version, build, _ = parse_wheel_filename(served.filename)
    assert str(version) == "1.0" and len(build) == 2 and build[1].startswith(".hf")
    assert served.sha256 != original.sha256 and served.sha256 is not None
    assert blobs.has(served.sha256)
    assert requirements(blobs, served.sha256) == []
    assert requirements(blobs, original.sha256) == ["no-such-dependency"]
    metadata = served.core_metadata
    assert isinstance(metadata, dict) and blobs.has(metadata["sha256"])
    assert page.revision != first.revision
    universal = await layer.page(FIXME, UNIVERSAL)  # never rewritten
    assert [(f.filename, f.sha256) for f in universal.files] == [
        (original.filename, original.sha256)
    ]


async def test_another_replica_lists_the_rewrite_without_making_it(
    index: FakeIndex, make: Make, blobs: BlobStore, wheels: Wheels
) -> None:
    index.add("fixme", wheels.fixme)
    made = await settled(make(blobs), FIXME)
    other = make(BlobStore(blobs.root.parent / "other-cache"))
    page = await other.page(FIXME, host(NEW_GLIBC))
    assert not page.provisional and page.files == made.files
    assert index.count(f"/files/{wheels.fixme.name}") == 1


GOOD_RECORD = {
    "filename": "fixme-1.0-0.hf0-py3-none-any.whl", "sha256": "ab" * 32, "size": 12,
    "metadata_sha256": "cd" * 32, "requires_python": None,
    "source_filename": "fixme-1.0-py3-none-any.whl", "source_sha256": "ef" * 32,
    "source_url": "https://files.test/fixme-1.0-py3-none-any.whl",
    "recipe": {"platform": None, "add_requires": [], "remove_requires": [],
               "requires_python": None},
    "rules": ["rules/fixes.toml"],
}  # fmt: skip


def _spoilt(change: dict[str, object]) -> bytes:
    return json.dumps({**GOOD_RECORD, **change}).encode()


def test_a_good_record_reads_back() -> None:
    """The spoilt records below differ from this one in one field each."""
    done = Done.read(_spoilt({}))
    assert done is not None and done.sha256 == "ab" * 32
    assert Done.read(_spoilt({"from_a_newer_version": 1})) == done


async def test_a_rewrite_listed_is_served_when_the_store_has_lost_it(
    index: FakeIndex, make: Make, blobs: BlobStore, store: MemoryStore, wheels: Wheels
) -> None:
    """A Redis lost, or back empty: the page lists what this process knows, and its
    downloads find it all the same (they were a 404 for the life of the process)."""
    index.add("fixme", wheels.fixme)
    layer = make(blobs)
    (served,) = (await settled(layer, FIXME)).files
    store.values.clear()
    universal = await layer.page(FIXME, UNIVERSAL)
    found, original = await layer.file(universal, served.filename)
    assert found is not None and found.sha256 == served.sha256
    assert original is not None and original.filename == wheels.fixme.name
    other = make(blobs)  # another process, which never listed it: not its to serve
    assert await other.file(universal, served.filename) == (None, None)


@pytest.mark.parametrize(
    "garbage",
    [b"{not json", b'{"filename": 3}', b"[]", b'{"filename": "x.whl"}', *(
        _spoilt({key: value}) for key, value in [
            ("sha256", "zz"), ("recipe", "x"), ("recipe", {}), ("requires_python", 5),
            ("rules", [1]), ("source_sha256", ""), ("size", "12"),
        ]
    )],
)  # fmt: skip
async def test_a_rewrite_record_that_is_none_is_a_miss(
    index: FakeIndex, make: Make, blobs: BlobStore, store: MemoryStore, wheels: Wheels,
    garbage: bytes,
) -> None:  # fmt: skip
    index.add("fixme", wheels.fixme)
    (served,) = (await settled(make(blobs), FIXME)).files
    for key in list(store.values):
        if key.startswith(("rewrite:", "rewritten:")):
            store.values[key] = (garbage, None)
    other = make(BlobStore(blobs.root.parent / "other-cache"))
    assert await other.file(await other.page(FIXME, UNIVERSAL), served.filename) == (None, None)
    assert (await settled(other, FIXME)).files == (served,)  # made again, the same bytes


async def test_a_rewrite_that_fails_leaves_the_original(
    index: FakeIndex, make: Make, blobs: BlobStore, wheels: Wheels
) -> None:
    original = index.add("fixme", wheels.fixme)
    index.status[f"/files/{original.filename}"] = 404
    page = await settled(make(blobs), FIXME)
    assert [(f.filename, f.sha256) for f in page.files] == [(original.filename, original.sha256)]


async def test_a_project_without_rules_passes_unchanged(
    index: FakeIndex, make: Make, blobs: BlobStore, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    layer = make(blobs)
    demo = NormalizedName("demo")
    page = await layer.page(demo, host(NEW_GLIBC))
    assert page == await layer.inner.page(demo, UNIVERSAL)
    assert index.count(f"/files/{wheels.demo_1.name}") == 0


async def test_a_plain_linux_wheel_is_served_under_its_truthful_tag(
    index: FakeIndex, make: Make, blobs: BlobStore, scheduler: AnalysisScheduler, wheels: Wheels
) -> None:
    original = index.add("fitpkg", wheels.linux)
    layer = make(blobs)
    page = await settled(layer, FITPKG)
    (served,) = page.files
    (listed,) = (await layer.inner.page(FITPKG, UNIVERSAL)).files
    report = (await scheduler.known([listed]))[original.sha256]
    # Its library needs GLIBC_2.25: the first manylinux policy that allows that.
    assert report.requires.glibc == "2.25"
    assert report.derived_platform_tag is not None
    assert report.derived_platform_tag.startswith("manylinux_2_2")
    tags = {str(t) for t in parse_wheel_filename(served.filename)[3]}
    assert tags == {f"cp311-cp311-{report.derived_platform_tag}"}
    assert served.sha256 != original.sha256
