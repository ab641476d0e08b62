"""The host filter (`HostFilter`): a filtered page keeps only the files that install and
load on the asking host, judged by tags and by the wheels' reports (made by walks that
run the real analysis in-process here); the universal view is never filtered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from packaging.utils import NormalizedName

from proxy.core.models import Page
from proxy.core.origins import Outbound
from proxy.core.report import Report
from proxy.edge import scheduler as scheduler_module
from proxy.edge.files import FileService
from proxy.edge.index import UNIVERSAL, Context
from proxy.edge.layers import host_filter as host_filter_module
from proxy.edge.layers.host_filter import AnalysisPending, HostFilter, Policy
from proxy.edge.metadata import MetadataService
from proxy.edge.reports import ReportService
from proxy.edge.scheduler import AnalysisScheduler
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.leases import open_leases
from tests.unit.conftest import NEW_GLIBC, OLD_GLIBC, Wheels, cached, host
from tests.unit.fakes import FakeIndex, InProcessAnalyzer, MemoryStore

FITPKG = NormalizedName("fitpkg")
Make = Callable[..., HostFilter]


@pytest.fixture
def analyzer(client: httpx.AsyncClient) -> InProcessAnalyzer:
    return InProcessAnalyzer(client)


@pytest.fixture
async def scheduler(
    analyzer: InProcessAnalyzer, store: MemoryStore, blobs: BlobStore
) -> AsyncIterator[AnalysisScheduler]:
    made = AnalysisScheduler(ReportService(store, analyzer, open_leases(store, blobs.tmp)), blobs)
    yield made
    await made.close()


@pytest.fixture
async def make(
    index: FakeIndex,
    wheels: Wheels,
    client: httpx.AsyncClient,
    store: MemoryStore,
    blobs: BlobStore,
    files: FileService,
    scheduler: AnalysisScheduler,
) -> AsyncIterator[Make]:
    """A host filter over fitpkg's page: a manylinux_2_17 wheel whose library needs
    GLIBC_2.25, and a Windows wheel."""
    index.add("fitpkg", wheels.native)
    index.add("fitpkg", wheels.windows)
    metadata = MetadataService(blobs, files, client, store, Outbound.only(index.url))
    made: list[HostFilter] = []

    def make_one(*, policy: Policy = "optimistic", budget: float = 10.0) -> HostFilter:
        inner = cached(index, client, store)
        made.append(HostFilter(inner, scheduler, metadata=metadata, policy=policy, budget=budget))
        return made[-1]

    yield make_one
    for layer in made:
        await layer.close()
    await metadata.close()


def names(page: Page) -> list[str]:
    return [f.filename for f in page.files]


async def test_the_universal_view_is_not_filtered(
    make: Make, analyzer: InProcessAnalyzer, wheels: Wheels
) -> None:
    layer = make()
    page = await layer.page(FITPKG, UNIVERSAL)
    assert page == await layer.inner.page(FITPKG, UNIVERSAL)
    assert await layer.page(FITPKG, Context()) == page  # a host that tells nothing
    assert analyzer.calls == []


async def test_each_host_gets_the_wheels_that_load_there(
    make: Make, analyzer: InProcessAnalyzer, wheels: Wheels
) -> None:
    layer = make()
    old = await layer.page(FITPKG, host(OLD_GLIBC))
    new = await layer.page(FITPKG, host(NEW_GLIBC))
    assert names(old) == [] and not old.provisional
    assert names(new) == [wheels.native.name] and not new.provisional
    assert len(analyzer.calls) == 1  # one report, for every host
    decided = await layer.explain(FITPKG, host(OLD_GLIBC))
    verdicts = decided.verdicts
    assert [r.kind for r in verdicts[wheels.windows.name].reasons] == ["tags"]
    (needs,) = verdicts[wheels.native.name].reasons
    assert needs.kind == "glibc" and "2.25" in needs.message


async def test_decisions_kept_are_bounded_by_the_files_they_decide(
    make: Make, wheels: Wheels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client chooses its profile, so the decisions a flood of profiles leaves behind
    are bounded by what they weigh, not by their number."""
    monkeypatch.setattr(host_filter_module, "DECISION_FILES_KEPT", 20)
    layer = make()
    first = await layer.page(FITPKG, host(NEW_GLIBC))
    for minor in range(17, 60):
        await layer.page(FITPKG, host(NEW_GLIBC.replace("2.36", f"2.{minor}")))
    assert 0 < layer._decided.weight <= 20
    assert (await layer.page(FITPKG, host(NEW_GLIBC))).files == first.files  # still right


async def test_hosts_that_keep_the_same_files_share_a_revision(make: Make, wheels: Wheels) -> None:
    layer = make()
    newer = await layer.page(FITPKG, host(NEW_GLIBC))
    near = await layer.page(FITPKG, host(NEW_GLIBC.replace("2.36", "2.28")))
    old = await layer.page(FITPKG, host(OLD_GLIBC))
    universal = await layer.page(FITPKG, UNIVERSAL)
    assert newer.files == near.files and newer.revision == near.revision
    assert len({newer.revision, old.revision, universal.revision}) == 3


async def test_a_page_decided_before_its_reports_is_provisional(
    make: Make, analyzer: InProcessAnalyzer, wheels: Wheels
) -> None:
    analyzer.gate.clear()  # the analysis pool is busy
    layer = make(budget=0.05)
    early = await layer.page(FITPKG, host(OLD_GLIBC))
    assert early.provisional
    assert names(early) == [wheels.native.name]  # optimistic: its tags allow it, for now
    analyzer.gate.set()
    deadline = time.monotonic() + 10
    while (page := await layer.page(FITPKG, host(OLD_GLIBC))).provisional:
        assert time.monotonic() < deadline, "the walk never settled"
        await asyncio.sleep(0.02)
    assert names(page) == [] and page.revision != early.revision


async def test_strict_policy_refuses_a_page_until_it_is_decided(
    make: Make, analyzer: InProcessAnalyzer, wheels: Wheels
) -> None:
    analyzer.gate.clear()
    layer = make(policy="strict", budget=0.05)
    with pytest.raises(AnalysisPending, match="1 wheel") as caught:
        await layer.page(FITPKG, host(NEW_GLIBC))
    assert caught.value.status_code == 503 and caught.value.retry_after > 0
    analyzer.gate.set()
    deadline = time.monotonic() + 10
    while True:
        try:
            page = await layer.page(FITPKG, host(NEW_GLIBC))
            break
        except AnalysisPending:
            assert time.monotonic() < deadline, "the walk never settled"
            await asyncio.sleep(0.02)
    assert names(page) == [wheels.native.name]


async def test_the_download_gate_refuses_a_wheel_that_would_not_load(
    make: Make, scheduler: AnalysisScheduler, wheels: Wheels
) -> None:
    layer = make()
    page = await layer.page(FITPKG, UNIVERSAL)
    native = page.file(wheels.native.name)
    windows = page.file(wheels.windows.name)
    assert native is not None and windows is not None
    report = await scheduler.report(native)
    (refused,) = layer.refusal(page, native, report, host(OLD_GLIBC))
    assert refused.kind == "glibc"
    assert layer.refusal(page, native, report, host(NEW_GLIBC)) == ()
    # Tags are the installer's own check: a pinned download is not refused for them.
    windows_report = await scheduler.report(windows)
    assert layer.refusal(page, windows, windows_report, host(NEW_GLIBC)) == ()


async def test_a_report_that_follows_an_analysis_that_did_not_run_is_decided_with(
    make: Make,
    analyzer: InProcessAnalyzer,
    scheduler: AnalysisScheduler,
    wheels: Wheels,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An analysis that could not run leaves a stand-in report for a while. It vouches for
    nothing: the page stays unsettled (provisional) while it lasts, and once it expires
    the walk tries again and the real report decides (found by the soak: a decision
    settled on the stand-in kept a wheel the host cannot load)."""
    monkeypatch.setattr(scheduler_module, "RETRY_SECONDS", 0.2)
    real = analyzer.analyze_url
    failures = [OSError("the cached file went away")]

    async def once_failing(url: str, filename: str, sha256: str, **kw: Any) -> Report:
        if failures:
            raise failures.pop()
        return await real(url, filename, sha256, **kw)

    monkeypatch.setattr(analyzer, "analyze_url", once_failing)
    layer = make(budget=2.0)
    old_host = host(OLD_GLIBC)
    first = await layer.page(FITPKG, old_host)
    assert not failures and first.provisional  # not settled on the stand-in
    deadline = time.monotonic() + 10
    while (page := await layer.page(FITPKG, old_host)).provisional:
        assert time.monotonic() < deadline, "never tried again"
        await asyncio.sleep(0.02)
    assert names(page) == []  # the real report: the wheel needs a newer glibc
    native = (await layer.page(FITPKG, UNIVERSAL)).file(wheels.native.name)
    assert native is not None
    assert (await scheduler.report(native)).status == "ok"  # the real report, stored
