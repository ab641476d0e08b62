"""The worker pool: isolation, limits, replacement of lost workers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from proxy.analysis.pool import AnalysisFailed, AnalysisPool, PoolLimits
from proxy.analysis.wheel import analyze_wheel
from proxy.core.origins import plan_origins
from proxy.errors import UpstreamError
from tests.support.upstream import Upstream

SHA = "0" * 64
MISBEHAVING = "tests.analysis.misbehaving_worker"


def limits(**overrides: Any) -> PoolLimits:
    return PoolLimits(**{"workers": 2, "worker_module": MISBEHAVING, **overrides})


async def started(pool: AnalysisPool) -> None:
    """Until the pool has a worker process (it starts on the first task)."""
    for _ in range(400):
        if pool.worker_pids():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no worker started")


async def test_analysis_in_a_worker_equals_analysis_in_process(glibc_wheel: Path) -> None:
    with glibc_wheel.open("rb") as source:
        expected = analyze_wheel(source, glibc_wheel.name, SHA)
    async with AnalysisPool(PoolLimits(workers=2)) as pool:
        reports = await asyncio.gather(
            *(pool.analyze_file(glibc_wheel, glibc_wheel.name, SHA) for _ in range(4))
        )
        assert len(pool.worker_pids()) <= 2
    assert all(report == expected for report in reports)


async def test_analysis_by_url(glibc_wheel: Path) -> None:
    with Upstream() as server:
        server.add("fx-glibc", glibc_wheel)
        async with AnalysisPool(PoolLimits(workers=1)) as pool:
            # A small wheel is read whole by URL, and its bytes checked: its own sha256.
            real = sha256_of(glibc_wheel)
            report = await pool.analyze_url(server.file_url(glibc_wheel.name), "w.whl", real)
            with pytest.raises(UpstreamError, match="not 0000"):
                await pool.analyze_url(server.file_url(glibc_wheel.name), "w.whl", SHA)
            with pytest.raises(UpstreamError, match="HTTP 404"):
                await pool.analyze_url(server.file_url("missing.whl"), "missing.whl", SHA)
    assert report.status == "ok"
    assert report.requires.glibc == "2.25"


@pytest.mark.parametrize(
    ("filename", "overrides", "reason"),
    [
        ("spin.whl", {"cpu_seconds": 1}, "exceeded its CPU time limit"),
        ("hog.whl", {"memory": 1024 * 1024 * 1024}, "exceeded its memory limit"),
        ("segv.whl", {}, "crashed (SIGSEGV)"),
    ],
)
async def test_a_lost_worker_becomes_an_unanalysable_report(
    filename: str, overrides: dict[str, Any], reason: str, glibc_wheel: Path
) -> None:
    async with AnalysisPool(limits(workers=1, **overrides)) as pool:
        report = await pool.analyze_file(glibc_wheel, filename, SHA)
        assert report.status == "unanalysable"
        assert reason in (report.reason or "")
        assert report.filename == filename
        # the pool carries on with a fresh worker
        after = await pool.analyze_file(glibc_wheel, glibc_wheel.name, SHA)
        assert after.status == "ok"


@pytest.mark.parametrize(
    ("sent", "said"),
    [(signal.SIGKILL, r"killed \(memory or an operator\)"), (signal.SIGTERM, "SIGTERM")],
)
async def test_a_worker_killed_from_outside_says_nothing_of_the_wheel(
    glibc_wheel: Path, sent: signal.Signals, said: str
) -> None:
    """The OOM killer, an operator, a service stopping: the analysis did not run, and is
    not stored as the wheel's unanalysable report (its gate would then go by tags)."""
    async with AnalysisPool(limits(workers=1)) as pool:
        task = asyncio.ensure_future(pool.analyze_file(glibc_wheel, "sleep.whl", SHA))
        await started(pool)
        await asyncio.sleep(0.5)
        os.kill(pool.worker_pids()[0], sent)
        with pytest.raises(AnalysisFailed, match=said):
            await task
        assert pool.replaced == 1
        assert (await pool.analyze_file(glibc_wheel, glibc_wheel.name, SHA)).status == "ok"


async def test_a_worker_that_exits_without_a_reply_says_nothing_of_the_wheel(
    glibc_wheel: Path,
) -> None:
    """A worker that cannot start (a hard limit below its own, its module missing) exits
    without answering, for every wheel alike: no wheel's report is to be made of it."""
    async with AnalysisPool(limits(workers=1)) as pool:
        with pytest.raises(AnalysisFailed, match="exited with status 1"):
            await pool.analyze_file(glibc_wheel, "exit.whl", SHA)
        assert (await pool.analyze_file(glibc_wheel, glibc_wheel.name, SHA)).status == "ok"


async def test_a_file_analysis_that_times_out_is_not_stored_as_a_fact(
    glibc_wheel: Path,
) -> None:
    """Wall-clock time is the machine's load as much as the wheel's bytes (their own
    measure is the CPU limit, above)."""
    async with AnalysisPool(limits(workers=1, timeout=1.0)) as pool:
        with pytest.raises(AnalysisFailed, match="took longer than 1 seconds"):
            await pool.analyze_file(glibc_wheel, "sleep.whl", SHA)
        assert pool.replaced == 1
        assert (await pool.analyze_file(glibc_wheel, glibc_wheel.name, SHA)).status == "ok"


async def test_a_crash_does_not_disturb_other_workers(glibc_wheel: Path) -> None:
    async with AnalysisPool(limits(workers=2)) as pool:
        good, bad = await asyncio.gather(
            pool.analyze_file(glibc_wheel, f"nap-{glibc_wheel.name}", SHA),
            pool.analyze_file(glibc_wheel, "segv.whl", SHA),
        )
    assert good.status == "ok"
    assert good.requires.glibc == "2.25"
    assert bad.status == "unanalysable"


async def test_failures_that_say_nothing_about_the_wheel_raise(tmp_path: Path) -> None:
    async with AnalysisPool(PoolLimits(workers=1)) as pool:
        with pytest.raises(AnalysisFailed, match="FileNotFoundError"):
            await pool.analyze_file(tmp_path / "absent.whl", "absent.whl", SHA)
    with pytest.raises(AnalysisFailed, match="closed"):
        await pool.analyze_file(tmp_path / "absent.whl", "absent.whl", SHA)


async def test_cancelling_a_request_kills_its_worker(glibc_wheel: Path) -> None:
    async with AnalysisPool(limits(workers=1)) as pool:
        task = asyncio.ensure_future(pool.analyze_file(glibc_wheel, "sleep.whl", SHA))
        await started(pool)
        (pid,) = pool.worker_pids()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.worker_pids() == []
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert (await pool.analyze_file(glibc_wheel, glibc_wheel.name, SHA)).status == "ok"


async def test_a_url_analysis_that_times_out_is_not_stored_as_a_fact() -> None:
    # Over the network, slowness may be the upstream's: raise rather than report.
    async with AnalysisPool(limits(workers=1, timeout=1.0)) as pool:
        with pytest.raises(AnalysisFailed, match="took longer than 1 seconds"):
            await pool.analyze_url("http://127.0.0.1:9/sleep.whl", "sleep.whl", SHA)
        assert pool.replaced == 1


async def test_analysis_by_url_stays_on_the_allowed_origins(glibc_wheel: Path) -> None:
    """Workers send the credentials of the origin, and refuse a redirect elsewhere,
    with the server's policy or, without one, to anything but the URL's own origin."""
    with Upstream() as server, Upstream() as elsewhere:
        server.basic_auth = ("reader", "pa55")
        server.add("fx-glibc", glibc_wheel)
        elsewhere.add("fx-glibc", glibc_wheel)
        moved = f"/files/moved-{glibc_wheel.name}"
        server.redirects[moved] = elsewhere.file_url(glibc_wheel.name)
        outbound = plan_origins([server.credentialed_url]).outbound
        real = sha256_of(glibc_wheel)
        async with AnalysisPool(PoolLimits(workers=1), outbound) as pool:
            report = await pool.analyze_url(server.file_url(glibc_wheel.name), "w.whl", real)
            assert report.status == "ok"
            with pytest.raises(UpstreamError, match=f"refused {elsewhere.origin}"):
                await pool.analyze_url(server.origin + moved, "w.whl", SHA)
        server.basic_auth = None
        async with AnalysisPool(PoolLimits(workers=1)) as pool:
            with pytest.raises(UpstreamError, match=f"refused {elsewhere.origin}"):
                await pool.analyze_url(server.origin + moved, "w.whl", SHA)
        assert elsewhere.requests == []
        assert all(r.status != 401 for r in server.requests)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
