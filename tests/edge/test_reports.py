"""Reports by sha256: computed once, shared, stored forever, recomputed when outdated."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.analysis.pool import AnalysisPool, Early, PoolLimits
from proxy.core.report import ANALYZER_VERSION, ElfFile, Report, Requires
from proxy.edge.reports import Decoded, ReportService, decode, encode
from proxy.edge.stores import keys
from proxy.edge.stores.embedded import EmbeddedStore
from proxy.edge.stores.leases import FileLeases, RedisLeases
from proxy.edge.stores.redis_state import RedisStore
from proxy.errors import UpstreamError
from tests.support.redis_server import RedisServer
from tests.support.waiting import until
from tests.support.wheels import WheelSpec, build_wheel

SHA = "a" * 64
OTHER = "b" * 64


class CountingAnalyzer:
    """Stands in for the worker pool: counts calls, can be held or made to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None

    async def _run(self, target: str, filename: str, sha256: str) -> Report:
        self.calls.append(target)
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return Report(filename=filename, sha256=sha256, requires=Requires(glibc="2.17"))

    async def analyze_file(
        self, path: str | os.PathLike[str], filename: str, sha256: str
    ) -> Report:
        return await self._run(os.fspath(path), filename, sha256)

    async def analyze_url(
        self, url: str, filename: str, sha256: str, *, early: Early | None = None
    ) -> Report:
        return await self._run(url, filename, sha256)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    backend = EmbeddedStore(str(tmp_path / "state"))
    yield backend
    await backend.close()


async def test_computed_once_then_read_from_the_store(
    store: EmbeddedStore, leases: FileLeases
) -> None:
    analyzer = CountingAnalyzer()
    service = ReportService(store, analyzer, leases)
    assert await service.cached(SHA) is None
    first = await service.for_url("http://x/w.whl", "w.whl", SHA)
    second = await service.for_file("/x/w.whl", "w.whl", SHA)
    assert first == second
    assert analyzer.calls == ["http://x/w.whl"]
    assert await service.cached(SHA) == first
    # a fresh service (a restart, another replica) finds it in the store
    again = ReportService(store, CountingAnalyzer(), leases)
    assert await again.for_url("http://x/w.whl", "w.whl", SHA) == first
    assert await store.get(keys.report(SHA)) == encode(first)


async def test_concurrent_requests_share_one_analysis(
    store: EmbeddedStore, leases: FileLeases
) -> None:
    analyzer = CountingAnalyzer()
    analyzer.gate.clear()
    service = ReportService(store, analyzer, leases)
    waiting = [asyncio.ensure_future(service.for_url("u", "w.whl", SHA)) for _ in range(10)]
    await asyncio.sleep(0.1)
    analyzer.gate.set()
    reports = await asyncio.gather(*waiting)
    assert len(analyzer.calls) == 1
    assert len(set(reports)) == 1


async def test_replicas_sharing_a_store_analyse_once(
    store: EmbeddedStore, leases: FileLeases
) -> None:
    first, second = CountingAnalyzer(), CountingAnalyzer()
    first.gate.clear()
    one = ReportService(store, first, leases, poll_interval=0.05)
    two = ReportService(store, second, leases, poll_interval=0.05)
    leader = asyncio.ensure_future(one.for_url("u", "w.whl", SHA))
    await asyncio.sleep(0.1)
    follower = asyncio.ensure_future(two.for_url("u", "w.whl", SHA))
    await asyncio.sleep(0.2)
    assert not follower.done()
    first.gate.set()
    assert await leader == await follower
    assert (len(first.calls), len(second.calls)) == (1, 0)


async def test_a_replica_that_gives_up_leaves_the_work_to_the_next(
    store: EmbeddedStore, leases: FileLeases
) -> None:
    failing, working = CountingAnalyzer(), CountingAnalyzer()
    failing.gate.clear()
    failing.error = UpstreamError("u", "down")
    one = ReportService(store, failing, leases, poll_interval=0.05)
    two = ReportService(store, working, leases, poll_interval=0.05)
    leader = asyncio.ensure_future(one.for_url("u", "w.whl", SHA))
    await asyncio.sleep(0.1)
    follower = asyncio.ensure_future(two.for_url("u", "w.whl", SHA))
    await asyncio.sleep(0.1)
    failing.gate.set()
    with pytest.raises(UpstreamError):
        await leader
    report = await follower
    assert report.status == "ok"
    assert len(working.calls) == 1


async def test_failures_are_not_stored(store: EmbeddedStore, leases: FileLeases) -> None:
    analyzer = CountingAnalyzer()
    analyzer.error = UpstreamError("u", "unreachable")
    service = ReportService(store, analyzer, leases)
    with pytest.raises(UpstreamError):
        await service.for_url("u", "w.whl", SHA)
    analyzer.error = None
    assert (await service.for_url("u", "w.whl", SHA)).status == "ok"
    assert len(analyzer.calls) == 2


async def test_unanalysable_reports_are_stored(store: EmbeddedStore, leases: FileLeases) -> None:
    service = ReportService(store, CountingAnalyzer(), leases)
    bad = Report.unanalysable("w.whl", SHA, "zip bomb")
    await store.set(keys.report(SHA), encode(bad))
    assert await service.for_url("u", "w.whl", SHA) == bad


def _mutated(**changes: object) -> bytes:
    data = json.loads(encode(Report("w.whl", SHA, requires=Requires(glibc="2.17"))))
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "stored",
    [
        *(
            encode(replace(Report("w.whl", SHA), analyzer_version=version))
            for version in range(ANALYZER_VERSION - 3, ANALYZER_VERSION)
        ),
        b"{not json",
        b'{"filename": 3}',
        b"[1, 2]",
        b"\xff\xfe",
        # what another version or a fault could leave: each read as no report at all
        _mutated(analyzer_version="7"),
        _mutated(analyzer_version=None),
        _mutated(status="maybe"),
        _mutated(native_files=[{}]),
        _mutated(elf_files=[{"path": "a.so"}]),
        _mutated(elf_files=[{"path": "a.so", "machine": "x86_64", "needed": [5]}]),
        _mutated(requires={"glibc": 2.28}),
        _mutated(requires={"gpu_sms": "8.0"}),
        _mutated(bundled_libraries="libz.so"),
        # another wheel's report, made from its checked file, under this wheel's key
        _mutated(sha256=OTHER, made_from="file"),
    ],
)
async def test_outdated_or_unreadable_reports_are_recomputed(
    store: EmbeddedStore, leases: FileLeases, stored: bytes
) -> None:
    analyzer = CountingAnalyzer()
    await store.set(keys.report(SHA), stored)
    service = ReportService(store, analyzer, leases)
    assert await service.cached(SHA) is None
    report = await service.for_url("u", "w.whl", SHA)
    assert report.analyzer_version == ANALYZER_VERSION
    assert len(analyzer.calls) == 1


async def test_a_cancelled_client_does_not_cancel_the_analysis(
    store: EmbeddedStore, leases: FileLeases
) -> None:
    analyzer = CountingAnalyzer()
    analyzer.gate.clear()
    service = ReportService(store, analyzer, leases)
    impatient = asyncio.ensure_future(service.for_url("u", "w.whl", SHA))
    await asyncio.sleep(0.05)
    impatient.cancel()
    analyzer.gate.set()
    for _ in range(100):
        if await service.cached(SHA) is not None:
            break
        await asyncio.sleep(0.02)
    assert await service.cached(SHA) is not None


async def test_cached_many(store: EmbeddedStore, leases: FileLeases) -> None:
    analyzer = CountingAnalyzer()
    service = ReportService(store, analyzer, leases)
    assert await service.cached_many([SHA, OTHER]) == {}
    await service.for_url("u", "w.whl", SHA)
    assert set(await service.cached_many([SHA, OTHER])) == {SHA}


async def test_sha256_is_checked(store: EmbeddedStore, leases: FileLeases) -> None:
    service = ReportService(store, CountingAnalyzer(), leases)
    with pytest.raises(ValueError, match="sha256"):
        await service.for_url("u", "w.whl", "../../etc")


async def test_with_the_real_pool(store: EmbeddedStore, leases: FileLeases, tmp_path: Path) -> None:
    wheel = build_wheel(WheelSpec("pure", "1.0", files={"pure/__init__.py": b""}), tmp_path)
    async with AnalysisPool(PoolLimits(workers=1)) as pool:
        service = ReportService(store, pool, leases)
        report = await service.for_file(wheel, wheel.name, SHA)
    assert report.status == "ok"
    assert report.elf_files == ()
    assert await service.cached(SHA) == report


async def test_replicas_sharing_redis_analyse_once_and_a_lost_lease_stays_lost(
    tmp_path: Path,
) -> None:
    """Three replicas, each on its own host (its own lock directory), sharing one real
    redis-server: one analysis at a time, and a holder whose lease ran out and was taken
    neither releases nor renews the new holder's lease."""
    server = RedisServer(tmp_path / "redis").start()
    store = RedisStore(server.url, timeout=1.0)
    try:
        replicas, analyzers = [], []
        for host in ("a", "b", "c"):
            (tmp_path / host).mkdir()
            analyzer = CountingAnalyzer()
            analyzer.gate.clear()
            leases = RedisLeases(store, FileLeases(tmp_path / host), ttl=3.0)
            replicas.append(ReportService(store, analyzer, leases, poll_interval=0.05))
            analyzers.append(analyzer)
        one, two, three = replicas
        lock = keys.report_lock(SHA)
        first = asyncio.ensure_future(one.for_url("u", "w.whl", SHA))
        await until(lambda: bool(analyzers[0].calls))
        held_by_one = await store.holder(lock)
        assert held_by_one is not None
        await store.delete(lock)  # as if one's lease had run out unrenewed
        second = asyncio.ensure_future(two.for_url("u", "w.whl", SHA))
        await until(lambda: bool(analyzers[1].calls))
        held_by_two = await store.holder(lock)
        assert held_by_two is not None and held_by_two != held_by_one
        analyzers[0].error = UpstreamError("u", "down")
        analyzers[0].gate.set()
        with pytest.raises(UpstreamError):  # one ends with no report, and releases only
            await first  # a lease that is still its own
        assert await store.holder(lock) == held_by_two
        third = asyncio.ensure_future(three.for_url("u", "w.whl", SHA))
        await asyncio.sleep(0.3)
        assert not third.done() and analyzers[2].calls == []  # waits for two
        analyzers[1].gate.set()
        await asyncio.gather(second, third)
        assert [len(a.calls) for a in analyzers] == [1, 1, 0]
        assert await store.holder(lock) is None
    finally:
        await store.close()
        server.stop()


async def test_where_no_lease_can_be_taken_the_analysis_runs_without(
    store: EmbeddedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock directory that refuses locks or writes (here: a file where the directory
    should be) costs the lease, not the analysis."""
    (tmp_path / "not-a-directory").write_bytes(b"")
    analyzer = CountingAnalyzer()
    service = ReportService(store, analyzer, FileLeases(tmp_path / "not-a-directory"))
    report = await service.for_url("u", "w.whl", SHA)
    assert report.status == "ok" and len(analyzer.calls) == 1
    assert await service.cached(SHA) == report
    assert "no lease" in caplog.text


def test_a_report_with_requires_keys_of_a_newer_analyzer_reads_without_them() -> None:
    """After a rollback an older version reads the newer reports it can: a fact it does
    not know is left out, the others are judged (not the whole wheel analysed again)."""
    newer = json.loads(encode(Report("w.whl", SHA, requires=Requires(glibc="2.28"))))
    newer["requires"]["some_future_fact"] = True
    newer["analyzer_version"] = ANALYZER_VERSION + 1
    report = decode(json.dumps(newer).encode())
    assert report is not None and report.requires == Requires(glibc="2.28")


def test_a_report_with_elf_file_keys_of_a_newer_analyzer_reads_without_them() -> None:
    elf = ElfFile("pkg/_ext.so", "x86_64", needed=("libc.so.6",))
    newer = json.loads(encode(Report("w.whl", SHA, elf_files=(elf,))))
    newer["elf_files"][0]["some_future_fact"] = True
    newer["analyzer_version"] = ANALYZER_VERSION + 1
    report = decode(json.dumps(newer).encode())
    assert report is not None and report.elf_files == (elf,)


def test_decoded_reports_serve_only_the_bytes_they_came_from() -> None:
    """Remembered by sha256, but a report stored again (made from the checked file where
    it was made by URL) is decoded again, never answered from the earlier bytes."""
    decoded = Decoded()
    by_url = encode(replace(Report("w.whl", SHA, requires=Requires(glibc="2.17")), made_from="url"))
    by_file = encode(
        replace(Report("w.whl", SHA, requires=Requires(glibc="2.34")), made_from="file")
    )
    first = decoded.decode(SHA, by_url)
    assert first is not None and first.requires.glibc == "2.17"
    assert decoded.decode(SHA, by_url) is first  # remembered
    second = decoded.decode(SHA, by_file)
    assert second is not None and second.requires.glibc == "2.34" and second.made_from == "file"
    assert decoded.decode(SHA, b"{not json") is None


async def test_a_report_the_store_cannot_keep_is_still_the_report(
    store: EmbeddedStore, leases: FileLeases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded store's disk refuses writes: the analysis ran and its report stands
    (it was a "did not run" stand-in, and every fitting wheel a 503, for as long)."""

    async def refused(key: str, value: bytes, ttl: float | None = None) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "set", refused)
    service = ReportService(store, CountingAnalyzer(), leases)
    report = await service.for_url("u", "w.whl", SHA)
    assert report.status == "ok" and report.requires.glibc == "2.17"
    assert await service.cached(SHA) is None  # not kept: made again if asked again
