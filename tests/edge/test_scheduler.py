"""The analysis scheduler: one analysis per wheel, bounded concurrency, listeners told,
and a download at the gate never queued behind walks."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from packaging.utils import canonicalize_name

from proxy.analysis.pool import AnalysisPool
from proxy.core.models import File, Page
from proxy.core.profile import HostProfile
from proxy.core.report import Report
from proxy.edge import scheduler as scheduler_module
from proxy.edge.config import Settings
from proxy.edge.gate import AnalysisUnavailable, DownloadGate
from proxy.edge.index import Context
from proxy.edge.layers.host_filter import HostFilter
from proxy.edge.reports import ReportService
from proxy.edge.scheduler import DID_NOT_RUN, AnalysisScheduler
from proxy.edge.services import open_services
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.embedded import EmbeddedStore
from proxy.edge.stores.leases import FileLeases
from tests.edge.test_reports import CountingAnalyzer


def wheel(n: int) -> File:
    name = f"w-{n}.0-py3-none-any.whl"
    return File(name, f"http://up/{name}", {"sha256": f"{n:064x}"})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    backend = EmbeddedStore(str(tmp_path / "state"))
    yield backend
    await backend.close()


async def test_one_analysis_per_wheel_and_listeners_told(
    store: EmbeddedStore, leases: FileLeases, tmp_path: Path
) -> None:
    analyzer = CountingAnalyzer()
    scheduler = AnalysisScheduler(ReportService(store, analyzer, leases), BlobStore(tmp_path / "b"))
    heard: list[str] = []
    scheduler.listen(lambda f, r: heard.append(f.filename))
    first, second = scheduler.submit(wheel(1)), scheduler.submit(wheel(1))
    assert first is second
    report = await first
    assert report.status == "ok" and analyzer.calls == ["http://up/w-1.0-py3-none-any.whl"]
    assert heard == ["w-1.0-py3-none-any.whl"]
    assert set(await scheduler.known([wheel(1), wheel(2)])) == {f"{1:064x}"}
    await scheduler.close()


async def test_concurrency_is_bounded(
    store: EmbeddedStore, leases: FileLeases, tmp_path: Path
) -> None:
    analyzer = CountingAnalyzer()
    analyzer.gate.clear()
    scheduler = AnalysisScheduler(
        ReportService(store, analyzer, leases), BlobStore(tmp_path / "b"), concurrency=2
    )
    futures = [scheduler.submit(wheel(n)) for n in range(5)]
    await asyncio.sleep(0.1)
    assert len(analyzer.calls) == 2
    analyzer.gate.set()
    await asyncio.gather(*futures)
    assert len(analyzer.calls) == 5
    await scheduler.close()


async def test_the_gate_overtakes_queued_walk_analyses(
    store: EmbeddedStore, leases: FileLeases, tmp_path: Path
) -> None:
    walks, urgent = CountingAnalyzer(), CountingAnalyzer()
    walks.gate.clear()  # the walk's analyses are stuck on gigabyte wheels
    scheduler = AnalysisScheduler(
        ReportService(store, walks, leases),
        BlobStore(tmp_path / "b"),
        concurrency=1,
        urgent=ReportService(store, urgent, leases),
    )
    scheduler.submit(wheel(1))  # running, stuck
    queued = scheduler.submit(wheel(2))  # queued behind it
    await asyncio.sleep(0.05)
    report = await asyncio.wait_for(scheduler.report(wheel(2)), 5)
    assert report.sha256 == f"{2:064x}"
    assert urgent.calls == ["http://up/w-2.0-py3-none-any.whl"]
    walks.gate.set()
    assert (await queued) == report  # the queued one found the stored report
    assert walks.calls == ["http://up/w-1.0-py3-none-any.whl"]
    await scheduler.close()


async def test_an_analysis_that_cannot_run_is_no_report(
    store: EmbeddedStore, leases: FileLeases, tmp_path: Path
) -> None:
    analyzer = CountingAnalyzer()
    analyzer.error = OSError("no workers")
    scheduler = AnalysisScheduler(ReportService(store, analyzer, leases), BlobStore(tmp_path / "b"))
    report: Report = await scheduler.report(wheel(3))
    assert report.status == "unanalysable" and report.reason is not None
    assert report.reason.startswith(DID_NOT_RUN)
    assert not scheduler.ran(report)
    assert await ReportService(store, analyzer, leases).cached(f"{3:064x}") is None  # never stored
    await scheduler.close()


async def test_an_analysis_that_keeps_failing_is_tried_less_and_less_often(
    store: EmbeddedStore, leases: FileLeases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each failure in a row doubles how long its stand-in answers, up to a cap; one that
    runs starts the count again."""
    monkeypatch.setattr(scheduler_module, "RETRY_SECONDS", 0.05)
    monkeypatch.setattr(scheduler_module, "RETRY_MAX_SECONDS", 0.2)
    analyzer = CountingAnalyzer()
    analyzer.error = OSError("the OOM killer")
    scheduler = AnalysisScheduler(ReportService(store, analyzer, leases), BlobStore(tmp_path / "b"))
    sha = f"{4:064x}"
    held = []
    for _ in range(4):
        await scheduler.submit(wheel(4))
        await asyncio.sleep(0)  # the flight's callbacks
        held.append(scheduler.retry_at(sha) - time.monotonic())
        assert scheduler.retry_at(sha) > 0 and set(await scheduler.known([wheel(4)])) == {sha}
    assert held == pytest.approx([0.05, 0.1, 0.2, 0.2], abs=0.03)
    assert len(analyzer.calls) == 4
    analyzer.error = None
    assert (await scheduler.submit(wheel(4))).status == "ok"
    await asyncio.sleep(0)
    assert scheduler.retry_at(sha) == 0.0
    await scheduler.close()


async def test_the_gate_tells_when_a_failing_analysis_is_tried_again(
    store: EmbeddedStore, leases: FileLeases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retry-After says the gate's 10 s at least, and the back-off's wait once it is
    longer: a client asking sooner would only be held back again."""
    monkeypatch.setattr(scheduler_module, "RETRY_SECONDS", 8.0)
    analyzer = CountingAnalyzer()
    analyzer.error = OSError("the OOM killer")
    scheduler = AnalysisScheduler(ReportService(store, analyzer, leases), BlobStore(tmp_path / "b"))
    gate = DownloadGate(cast(HostFilter, None), scheduler)  # held back before any filtering
    page = Page(name=canonicalize_name("w"), files=(wheel(5),))
    waits = []
    for _ in range(3):
        report = await scheduler.submit(wheel(5))
        await asyncio.sleep(0)
        with pytest.raises(AnalysisUnavailable) as held:
            gate.enforce(page, wheel(5), wheel(5), report, Context(profile=HostProfile()))
        waits.append(held.value.retry_after)
    assert waits == [10, 16, 32]
    await scheduler.close()


async def test_a_report_made_by_url_is_made_again_from_the_checked_file(
    store: EmbeddedStore, leases: FileLeases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For the gate: once the file is cached (its sha256 checked), its report is made from
    it and replaces the one made by URL; made once, and not tried again on every request
    while an analysis that could not run is held back; never from bytes not cached."""
    monkeypatch.setattr(scheduler_module, "RETRY_SECONDS", 60.0)
    analyzer = CountingAnalyzer()
    blobs = BlobStore(tmp_path / "b")
    scheduler = AnalysisScheduler(ReportService(store, analyzer, leases), blobs)
    heard: list[str | None] = []
    scheduler.listen(lambda f, r: heard.append(r.made_from))
    content = b"the wheel's bytes"
    sha = hashlib.sha256(content).hexdigest()
    cached = File("w-6.0-py3-none-any.whl", "http://up/w-6.whl", {"sha256": sha})
    other = wheel(7)  # never cached
    for each in (cached, other):
        assert (await scheduler.submit(each)).made_from == "url"  # by the walk, by URL
    assert await blobs.put_bytes(content) == sha  # then downloaded
    analyzer.error = OSError("the OOM killer")
    for _ in range(3):
        held = await scheduler.verified(cached)
        assert not scheduler.ran(held)
    assert analyzer.calls.count(str(blobs.path(sha))) == 1  # held back after one try
    analyzer.error = None
    scheduler._recent.pop(sha)  # the back-off over
    made = await scheduler.verified(cached)
    assert made.made_from == "file" and scheduler.ran(made)
    assert await scheduler.verified(cached) == made  # stored: not made again
    assert analyzer.calls.count(str(blobs.path(sha))) == 2
    assert (await ReportService(store, analyzer, leases).cached(sha)) == made
    assert heard[-1] == "file"
    missing = await scheduler.verified(other)
    assert not scheduler.ran(missing) and "did not reach the file cache" in (missing.reason or "")
    await scheduler.close()


@pytest.mark.parametrize("workers", [1, 3])
async def test_downloads_at_the_gate_have_as_many_workers_as_walks(
    tmp_path: Path, workers: int
) -> None:
    """An installer downloads many wheels at once, and each waits at the gate for its
    report: they are analysed side by side, as many at a time as the walks' analyses."""
    settings = Settings(
        upstreams=("http://127.0.0.1:9/simple/",), cache_dir=tmp_path, analysis_workers=workers
    )
    async with open_services(settings) as services:
        scheduler = services.gate.scheduler
        pools = [scheduler.service.analyzer, scheduler.urgent.analyzer]
        assert all(isinstance(pool, AnalysisPool) for pool in pools)
        walks, urgent = cast(list[AnalysisPool], pools)
        assert urgent is not walks
        assert urgent.limits.workers == walks.limits.workers == workers
