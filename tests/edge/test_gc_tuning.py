import gc
from pathlib import Path

import httpx

from proxy.edge import gc_tuning
from proxy.edge.app import build_app
from proxy.edge.config import Settings
from proxy.edge.gc_tuning import tuned_gc
from tests.support.upstream import Upstream


def test_tuned_gc_freezes_start_up_and_restores_the_collector() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with tuned_gc():
        assert gc.get_threshold() == (gc_tuning.YOUNG_THRESHOLD, *gc_tuning.OLDER_THRESHOLDS)
        assert gc.get_freeze_count() > 0
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # cyclic garbage made after start-up still goes
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_two_apps_at_once_leave_the_collector_as_it_was() -> None:
    before = gc.get_threshold()
    first, second = tuned_gc(), tuned_gc()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # not the last: still tuned for the other
    assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_the_app_runs_tuned_while_it_serves(tmp_path: Path, upstream: Upstream) -> None:
    before = gc.get_threshold()
    app = build_app(Settings(upstreams=(upstream.url,), cache_dir=tmp_path))
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hostfit"
        ) as client:
            assert (await client.get("/healthz")).status_code == 200
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
