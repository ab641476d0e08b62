"""The side-by-side bench (bench/compare_bench.py) runs every workload: its short mode,
as CI runs it. The figures are not checked, only that each was measured, on nginx,
nginx proxy_cache and hostfit, and that proxpi was measured or said to be missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEASURED_BY_ALL = (
    "page_html",
    "page_json",
    "page_json_p99",
    "page_json_gzip",
    "file_cached",
    "cold_median",
    "cold_grpcio",
    "range_uncached",
    "small_1w",
    "pip_warm",
    "pip_cold",
    "uv_warm",
    "uv_cold",
)
LABELS = (
    "cached page, HTML",
    "JSON p99",
    "cold page, median of 5 projects",
    "Range on a file not cached yet",
    "small page for pip, 2 workers",
    "uv pip compile, 7 pins, cold",
)


@pytest.mark.heavy
def test_every_workload_runs_in_the_short_mode(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    command = [sys.executable, "bench/compare_bench.py", "--quick", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(out.read_text())
    figures = data["figures"]
    assert data["mode"] == "quick"

    for workload in MEASURED_BY_ALL:
        cells = figures[workload]
        for server in ("nginx", "nginx-cache", "hostfit"):
            assert isinstance(cells[server], int | float), (workload, server, cells[server])
        assert isinstance(cells["proxpi"], int | float) or cells["proxpi"] == "not installed", (
            workload,
            cells["proxpi"],
        )
    # Worker counts other than the run's are started for hostfit and nginx alone.
    for server in ("nginx", "hostfit"):
        assert isinstance(figures["small_2w"][server], int | float), figures["small_2w"]
    for server, status in figures["range_uncached"].items():
        assert status in (200, 206, "not installed"), (server, status)
    assert isinstance(figures["file_rss_cached_mib"]["hostfit"], float)
    # the floor: measured on the cold pages, and on nothing else
    assert isinstance(figures["cold_median"]["floor"], float), figures["cold_median"]
    assert [w for w, cells in figures.items() if "floor" in cells] == [
        w for w in figures if w.startswith("cold_")
    ]

    assert "Ratios to the upstream nginx" in done.stdout
    for label in LABELS:
        assert label in done.stdout
    installed = figures["page_json"]["proxpi"] != "not installed"
    assert installed or "proxpi: not installed" in done.stdout
