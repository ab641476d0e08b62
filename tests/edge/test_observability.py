"""What hostfit tells about its traffic: /metrics after mixed traffic, request ids, and
`hostfit serve`'s JSON log lines carrying them."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy import __version__
from proxy.core.decide import Reason, Verdict, hidden_by_kind
from proxy.edge.config import load_settings
from proxy.edge.logs import JsonFormatter, RequestIdFilter, TextFormatter, request_id
from proxy.edge.metrics import Metrics
from proxy.edge.observe import agent_class, incoming_id
from proxy.edge.rules_loader import ActiveRules
from proxy.errors import ConfigError
from tests.analysis.test_native import pe
from tests.edge.test_gate import HOST, settled_files
from tests.support.proxy import ProxyProcess, ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import NEEDS_GLIBC_2_34, WheelSpec, build_wheel, extension_wheel

MakeProxy = Callable[..., ProxyThread]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scrape(proxy: ProxyThread | ProxyProcess) -> Samples:
    return parse(httpx.get(proxy.url + "metrics").text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def mixed_projects(upstream: Upstream, tmp_path: Path) -> tuple[Path, Path]:
    """Project "mixed": a pure 1.0, and a 2.0 whose pure wheel carries only a Windows DLL
    beside a Linux wheel needing glibc 2.34; project "broken". (1.0, the DLL wheel.)"""
    older = build_wheel(WheelSpec("mixed", "1.0", files={"mixed/__init__.py": b""}), tmp_path)
    files = {"mixed/__init__.py": b"import ctypes\n", "mixed/native.dll": pe()}
    dll = build_wheel(WheelSpec("mixed", "2.0", files=files), tmp_path)
    linux = extension_wheel(
        "mixed", "2.0", tmp_path, tag="cp311-cp311-manylinux_2_17_x86_64", extra_c=NEEDS_GLIBC_2_34
    )
    for wheel in (older, dll, linux):
        upstream.add("mixed", wheel)
    upstream.add("broken", build_wheel(WheelSpec("broken", "1.0"), tmp_path))
    return older, dll


def test_metrics_after_mixed_traffic(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    older, dll = mixed_projects(upstream, tmp_path)
    proxy = make_proxy(upstream)

    assert httpx.get(proxy.url + "simple/mixed/").status_code == 200
    for _ in range(2):  # a miss, then a hit
        got = httpx.get(proxy.url + f"files/mixed/{older.name}")
        assert got.status_code == 200 and got.content == older.read_bytes()
    assert httpx.get(proxy.url + "simple/no-such-project/").status_code == 404
    upstream.errors["/simple/broken/"] = 500
    assert httpx.get(proxy.url + "simple/broken/").status_code == 502
    old = f"{HOST},libc=glibc-2.17"
    assert settled_files(proxy, "mixed", old) == {older.name}
    refused = httpx.get(proxy.url + f"p/{old}/files/mixed/{dll.name}", timeout=60)
    assert refused.status_code == 403

    samples = scrape(proxy)
    page = "/simple/{project}/"
    assert value(samples, "hostfit_responses_total", route=page, status="200") >= 1
    assert value(samples, "hostfit_responses_total", route=page, status="404") == 1
    assert value(samples, "hostfit_responses_total", route=page, status="502") == 1
    files_route = "/files/{project}/{filename}"
    assert value(samples, "hostfit_responses_total", route=files_route, status="200") == 2
    assert (
        value(samples, "hostfit_responses_total", route="/p/{profile}" + files_route, status="403")
        == 1
    )
    assert value(samples, "hostfit_request_duration_seconds_count", route=files_route) == 2
    assert value(samples, "hostfit_request_duration_seconds_sum", route=files_route) > 0
    served = value(samples, "hostfit_response_bytes_total", route=files_route)
    assert served == 2 * older.stat().st_size
    # No raw path ever becomes a label.
    routes = {dict(ls).get("route") for (n, ls) in samples if n == "hostfit_responses_total"}
    assert not any(r and "mixed" in r for r in routes), routes

    origin = upstream.origin
    assert value(samples, "hostfit_upstream_requests_total", origin=origin, status="200") >= 2
    assert value(samples, "hostfit_upstream_requests_total", origin=origin, status="500") >= 1
    assert value(samples, "hostfit_upstream_request_duration_seconds_count", origin=origin) >= 3
    assert value(samples, "hostfit_file_cache_hits_total") == 1
    assert value(samples, "hostfit_file_cache_misses_total") == 1
    assert value(samples, "hostfit_download_refusals_total", reason="native") == 1
    assert value(samples, "hostfit_analyses_total", outcome="ok") >= 2
    assert value(samples, "hostfit_analysis_duration_seconds_count", outcome="ok") >= 2
    assert value(samples, "hostfit_build_info", version=__version__) == 1
    assert value(samples, "hostfit_stale_pages_served_total") == 0


def test_a_stale_page_and_an_unreachable_upstream_are_counted(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    upstream.add("stale", build_wheel(WheelSpec("stale", "1.0"), tmp_path))
    proxy = make_proxy(upstream, page_ttl=0.0)
    assert httpx.get(proxy.url + "simple/stale/").status_code == 200
    upstream.down = True
    stale = httpx.get(proxy.url + "simple/stale/")
    assert stale.status_code == 200 and "Stale" in stale.headers["Warning"]
    samples = scrape(proxy)
    assert value(samples, "hostfit_stale_pages_served_total") == 1
    origin = upstream.origin
    assert value(samples, "hostfit_upstream_requests_total", origin=origin, status="503") >= 1


def test_an_unreachable_upstream_is_an_error(make_proxy: MakeProxy) -> None:
    with Upstream() as gone:
        url = gone.url
        origin = gone.origin
    proxy = make_proxy(url)
    assert httpx.get(proxy.url + "simple/anything/").status_code == 502
    samples = scrape(proxy)
    assert value(samples, "hostfit_upstream_requests_total", origin=origin, status="error") >= 1
    assert value(samples, "hostfit_upstream_errors_total", origin=origin, error="ConnectError") >= 1


def test_request_ids_are_made_or_taken_and_echoed(
    upstream: Upstream, make_proxy: MakeProxy
) -> None:
    proxy = make_proxy(upstream)
    made = httpx.get(proxy.url + "healthz").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert httpx.get(proxy.url + "healthz").headers["X-Request-Id"] != made
    taken = httpx.get(proxy.url + "healthz", headers={"X-Request-Id": "lb-1234.abc"})
    assert taken.headers["X-Request-Id"] == "lb-1234.abc"
    hostile = httpx.get(proxy.url + "healthz", headers={"X-Request-Id": 'a b"<script>'})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-Id"])
    missing = httpx.get(proxy.url + "no/such/route")
    assert missing.status_code == 404 and missing.headers["X-Request-Id"]
    samples = scrape(proxy)
    assert value(samples, "hostfit_responses_total", route="unmatched", status="404") == 1


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc-123", True), ("x" * 64, True), ("x" * 65, False), ("", False), ("a\nb", False)],
)
def test_incoming_ids(given: str, kept: bool) -> None:
    assert (incoming_id(given) == given) is kept


def test_agent_classes() -> None:
    assert agent_class('pip/24.0 {"installer": {"name": "pip"}}') == "pip"
    assert agent_class("uv/0.4.0") == "uv"
    assert agent_class("Mozilla/5.0 (X11; Linux x86_64)") == "browser"
    assert agent_class("curl/8.0") == "other"
    assert agent_class("") == "other"


def test_formatters_carry_the_request_id_and_extras() -> None:
    record = logging.LogRecord("hostfit.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.status = 200
    token = request_id.set("rid-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you" and line["request_id"] == "rid-1"
    assert line["level"] == "info" and line["logger"] == "hostfit.x" and line["status"] == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])
    text = TextFormatter().format(record)
    assert text.endswith("INFO hostfit.x [rid-1] hello you")


def test_json_lines_hold_every_extra_in_order_and_anything_upstream_sent() -> None:
    logger = logging.getLogger("hostfit.test.extras")
    extra = {"route": "/simple/{project}/", "status": 200, "_private": 1, "pid": "not mine"}
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "m", (), None, extra=extra)
    line = json.loads(JsonFormatter().format(record))
    assert list(line)[-2:] == ["route", "status"]  # after the line's own keys, in order
    assert "_private" not in line and line["pid"] == os.getpid()  # an extra adds, never hides
    # What orjson refuses (past 64 bits, a lone surrogate), and json too (a tuple key, a
    # cycle), still makes one valid JSON line.
    cycle: list[object] = []
    cycle.append(cycle)
    for odd in (2**70, "bad \udc80 path", {1: object()}, {(1, 2): "t"}, cycle):
        record = logger.makeRecord(logger.name, 20, __file__, 1, "m", (), None, extra={"x": odd})
        text = JsonFormatter().format(record)
        assert "\n" not in text and json.loads(text)["message"] == "m"
    record = logger.makeRecord(logger.name, 20, __file__, 1, "m", (), None, extra={"x": 2**70})
    assert json.loads(JsonFormatter().format(record))["x"] == 2**70
    # A dataclass is written as its str, as json's default wrote it: never field by field,
    # which would show what its repr hides.
    secret = Secretive("visible", "hunter2")
    record = logger.makeRecord(logger.name, 20, __file__, 1, "m", (), None, extra={"x": secret})
    text = JsonFormatter().format(record)
    assert "hunter2" not in text and json.loads(text)["x"] == str(secret)


@dataclasses.dataclass
class Secretive:
    name: str
    token: str = dataclasses.field(repr=False)


def test_serve_logs_json_lines_with_request_ids(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add("logged", build_wheel(WheelSpec("logged", "1.0"), tmp_path))
    with ProxyProcess(
        "--upstream", upstream.url, cache_dir=tmp_path / "cache", env={"HOSTFIT_LOG_FORMAT": ""}
    ) as proxy:
        response = httpx.get(proxy.url + "simple/logged/", headers={"User-Agent": "pip/24.0"})
        assert response.status_code == 200
        rid = response.headers["X-Request-Id"]
        deadline = time.monotonic() + 10
        while rid not in proxy.output() and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [json.loads(line) for line in proxy.output().splitlines() if line.strip()]
    assert all({"timestamp", "level", "logger", "message", "request_id"} <= set(x) for x in lines)
    fetches = [x for x in lines if x["logger"] == "hostfit.upstream" and x["request_id"] == rid]
    assert fetches and "/simple/logged/" in fetches[0]["message"]
    assert fetches[0]["origin"] == upstream.origin
    # --no-access-log (ProxyProcess's default): no access lines, hostfit's or uvicorn's.
    assert not [x for x in lines if x["logger"] in ("hostfit.access", "uvicorn.access")]


def test_serve_access_log(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add("logged", build_wheel(WheelSpec("logged", "1.0"), tmp_path))
    proxy = ProxyProcess("--upstream", upstream.url, cache_dir=tmp_path / "cache")
    proxy.args.remove("--no-access-log")
    proxy.args += ["--log-format", "json"]
    with proxy:
        agent = 'pip/24.0 {"installer": {"name": "pip"}, "python": "3.11.4"}'
        response = httpx.get(
            proxy.url + "p/libc=glibc-2.28/simple/logged/", headers={"User-Agent": agent}
        )
        rid = response.headers["X-Request-Id"]
        deadline = time.monotonic() + 10
        while '"hostfit.access"' not in proxy.output() and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [json.loads(line) for line in proxy.output().splitlines() if line.strip()]
    access = [x for x in lines if x["logger"] == "hostfit.access" and x["request_id"] == rid]
    assert len(access) == 1, lines
    line = access[0]
    assert line["route"] == "/p/{profile}/simple/{project}/" and line["status"] == 200
    assert line["method"] == "GET" and line["user_agent"] == "pip"
    assert line["bytes"] == int(response.headers["Content-Length"]) and line["duration_ms"] >= 0
    assert line["profile"] == "libc=glibc-2.28"  # the URL's profile wins over the agent's
    assert not [x for x in lines if x["logger"] == "uvicorn.access"]


def test_log_format_setting(tmp_path: Path) -> None:
    assert load_settings({}, {}).log_format == "auto"
    assert load_settings({}, {"HOSTFIT_LOG_FORMAT": "json"}).log_format == "json"
    config = tmp_path / "hostfit.toml"
    config.write_text('[hostfit]\nlog-format = "text"\n')
    assert load_settings({"config": config}, {}).log_format == "text"
    assert load_settings({"log_format": "json", "config": config}, {}).log_format == "json"
    with pytest.raises(ConfigError, match="log format"):
        load_settings({}, {"HOSTFIT_LOG_FORMAT": "xml"})


def test_metrics_sum_every_worker(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add("shared", build_wheel(WheelSpec("shared", "1.0"), tmp_path))
    proxy = ProxyProcess("--upstream", upstream.url, "--workers", "2", cache_dir=tmp_path / "c")
    proxy.args.remove("--no-access-log")
    with proxy:
        for _ in range(40):  # a new connection each: either worker may take it
            assert httpx.get(proxy.url + "healthz").status_code == 200
        assert httpx.get(proxy.url + "simple/shared/").status_code == 200
        for _ in range(10):
            text = httpx.get(proxy.url + "metrics").text
            samples = parse(text)
            assert value(samples, "hostfit_responses_total", route="/healthz") == 40
            assert value(samples, "hostfit_request_duration_seconds_count", route="/healthz") == 40
            assert value(samples, "hostfit_build_info", version=__version__) == 1
            assert value(samples, "hostfit_upstream_requests_total", status="200") >= 1
            assert "hostfit_cache_files" in text  # the answering worker's live values
    lines = [json.loads(line) for line in proxy.output().splitlines() if line.strip()]
    access = [x for x in lines if x["logger"] == "hostfit.access"]
    served = {x["pid"] for x in access if x["route"] == "/healthz"}
    assert len(served) == 2  # both workers answered, and every scrape saw all 40
    assert any(x["logger"] == "hostfit.upstream" for x in lines)  # workers' lines survive


@pytest.mark.heavy
def test_levels_sum_every_worker(upstream: Upstream, tmp_path: Path) -> None:
    """Downloads in progress, each on a connection of its own so both workers take some:
    every scrape, whichever worker answers it, counts them all (each worker sets its own
    level as it changes; a scrape sums the running workers')."""
    names = []
    for i in range(8):
        wheel = build_wheel(WheelSpec(f"slow{i}", "1.0"), tmp_path)
        upstream.add(f"slow{i}", wheel)
        upstream.slow_files[wheel.name] = 6.0  # its one chunk after 6 s
        names.append((f"slow{i}", wheel.name))
    proxy = ProxyProcess("--upstream", upstream.url, "--workers", "2", cache_dir=tmp_path / "c")
    with proxy, ThreadPoolExecutor(len(names)) as pool:
        for project, _ in names:  # the pages first, so the downloads start together
            assert httpx.get(proxy.url + f"simple/{project}/").status_code == 200
        gets = [
            pool.submit(httpx.get, proxy.url + f"files/{project}/{name}", timeout=60)
            for project, name in names
        ]
        deadline = time.monotonic() + 5
        while value(scrape(proxy), "hostfit_file_downloads_active") != len(names):
            assert time.monotonic() < deadline, "the downloads in progress were never all seen"
            time.sleep(0.1)
        for _ in range(10):
            assert value(scrape(proxy), "hostfit_file_downloads_active") == len(names)
        assert all(get.result().status_code == 200 for get in gets)
        for _ in range(10):
            samples = scrape(proxy)
            assert value(samples, "hostfit_file_downloads_active") == 0
            assert value(samples, "hostfit_file_downloads_total", outcome="cached") == len(names)


def test_rules_reloads_are_counted_by_outcome(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.toml").write_text("")
    active = ActiveRules(rules)
    metrics = Metrics()
    metrics.watch_rules(active)
    assert value(scraped(metrics), "hostfit_rules_reloads_total", outcome="ok") == 0
    assert active.reload()
    (rules / "site.toml").write_text("not = [toml")
    assert not active.reload()
    samples = scraped(metrics)
    assert value(samples, "hostfit_rules_reloads_total", outcome="ok") == 1
    assert value(samples, "hostfit_rules_reloads_total", outcome="failed") == 1


def scraped(metrics: Metrics) -> Samples:
    return parse(metrics.render()[0].decode())


def test_a_stopped_worker_leaves_the_levels_and_keeps_its_totals(tmp_path: Path) -> None:
    """prometheus_client's multiprocess files, as with --workers: what a process set
    leaves the sum when it closes; what it counted stays."""
    script = """
import sys
from prometheus_client.parser import text_string_to_metric_families
from proxy.edge.metrics import Metrics

def read(metrics, name):
    text = metrics.render()[0].decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return sum(s.value for s in samples if s.name == name)

first = Metrics()
first.downloads_active.set(3)
first.analysis_fetched.inc(1000)
first.rules_reloads.labels(outcome="ok").inc()
print(read(first, "hostfit_file_downloads_active"), read(first, "hostfit_analysis_fetched_bytes"))
first.close()
second = Metrics()
print(read(second, "hostfit_file_downloads_active"), read(second, "hostfit_analysis_fetched_bytes"),
      read(second, "hostfit_rules_reloads_total"))
"""
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    before, after = ([float(x) for x in line.split()] for line in done.stdout.splitlines())
    assert before == [3, 1000]
    assert after == [0, 1000, 1]  # the level gone, the total and the count kept
    # A worker killed outright never closes: the next scrape drops its levels.
    killed = "import os\nfrom proxy.edge.metrics import Metrics\n"
    killed += "m = Metrics()\nm.downloads_active.set(5)\nm.analysis_fetched.inc(7)\nos._exit(0)\n"
    subprocess.run([sys.executable, "-c", killed], env=env, check=True, timeout=60)
    assert list(directory.glob("gauge_livesum_*.db")), "the killed worker left its levels"
    read = script.split("first = Metrics()")[0] + (
        "m = Metrics()\nprint(read(m, 'hostfit_file_downloads_active'),"
        " read(m, 'hostfit_analysis_fetched_bytes'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", read], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [float(x) for x in done.stdout.split()] == [0, 1007]


def test_metrics_after_mixed_traffic_with_two_workers(upstream: Upstream, tmp_path: Path) -> None:
    """Each request on a connection of its own, so both workers serve; every scrape,
    whichever worker answers it, sums them both."""
    older, dll = mixed_projects(upstream, tmp_path)
    upstream.errors["/simple/broken/"] = 500
    # Walks read by URL: the one file downloaded is the one asked for (below).
    args: tuple[str, ...] = ("--upstream", upstream.url, "--workers", "2")
    args += ("--analysis-workers", "1", "--analysis-download-max", "0")
    with ProxyProcess(*args, cache_dir=tmp_path / "cache") as proxy:
        url = proxy.url
        for _ in range(6):
            assert httpx.get(url + "simple/mixed/").status_code == 200
        assert httpx.get(url + "simple/no-such-project/").status_code == 404
        assert httpx.get(url + "simple/broken/").status_code == 502
        for _ in range(4):  # a miss, then hits (in either worker: the cache is shared)
            got = httpx.get(url + f"files/mixed/{older.name}", timeout=30)
            assert got.status_code == 200 and got.content == older.read_bytes()
        old = f"{HOST},libc=glibc-2.17"
        assert settled_files(proxy, "mixed", old) == {older.name}  # type: ignore[arg-type]
        refused = httpx.get(url + f"p/{old}/files/mixed/{dll.name}", timeout=60)
        assert refused.status_code == 403
        # Analyses go on after the page settled (an early answer can settle it before the
        # report is in): wait until both workers are at rest.
        deadline = time.monotonic() + 60
        while any(
            value(s, "hostfit_analyses_running") or value(s, "hostfit_analysis_queue_depth")
            for s in [scrape(proxy) for _ in range(4)]
        ):
            assert time.monotonic() < deadline, "analyses never came to rest"
            time.sleep(0.2)
        scrapes = [scrape(proxy) for _ in range(6)]
    for samples in scrapes:  # whichever worker answered
        page = "/simple/{project}/"
        assert value(samples, "hostfit_responses_total", route=page, status="200") >= 6
        assert value(samples, "hostfit_responses_total", route=page, status="404") == 1
        assert value(samples, "hostfit_responses_total", route=page, status="502") == 1
        files_route = "/files/{project}/{filename}"
        assert value(samples, "hostfit_responses_total", route=files_route, status="200") == 4
        assert value(samples, "hostfit_request_duration_seconds_count", route=files_route) == 4
        served = value(samples, "hostfit_response_bytes_total", route=files_route)
        assert served == 4 * older.stat().st_size
        assert value(samples, "hostfit_file_cache_hits_total") == 3
        assert value(samples, "hostfit_file_cache_misses_total") == 1
        origin = upstream.origin
        # The one file downloaded, once, whichever worker asked: its bytes, over the wire.
        fetched = value(samples, "hostfit_upstream_file_bytes_total", origin=origin)
        assert fetched == older.stat().st_size
        assert set(dict(ls).get("origin") for (n, ls) in samples if "file_bytes" in n) == {origin}
        assert value(samples, "hostfit_upstream_requests_total", origin=origin, status="500") >= 1
        assert value(samples, "hostfit_download_refusals_total", reason="native") == 1
        # The old host's pages hid the newer wheel (glibc) and the Windows-only one.
        assert value(samples, "hostfit_files_hidden_total", reason="glibc") >= 1
        assert value(samples, "hostfit_files_hidden_total", reason="native") >= 1
        assert value(samples, "hostfit_analyses_total", outcome="ok") >= 1
        assert value(samples, "hostfit_build_info", version=__version__) == 1
        # The queue is read from the answering worker; at rest it is empty.
        assert value(samples, "hostfit_analysis_queue_depth") == 0
        assert value(samples, "hostfit_analyses_running") == 0
        # Counted as they happen: the one download, whichever worker made it or answers.
        assert value(samples, "hostfit_file_downloads_total", outcome="cached") == 1
        assert value(samples, "hostfit_file_downloads_total", outcome="failed") == 0


def test_hidden_files_are_counted_by_reason_kind() -> None:
    metrics = Metrics()
    glibc = Reason("glibc", "glibc: needs 2.34, host has 2.17")
    native = Reason("native", "carries only Windows binaries")
    metrics.count_hidden(
        hidden_by_kind(
            {
                "kept.whl": Verdict(),
                "old-glibc.whl": Verdict((glibc,)),
                "both.whl": Verdict((glibc, native, Reason("glibc", "glibc: a second need"))),
            }
        )
    )
    metrics.count_hidden(hidden_by_kind({"kept.whl": Verdict()}))
    samples = parse(metrics.render()[0].decode())
    assert value(samples, "hostfit_files_hidden_total", reason="glibc") == 2
    assert value(samples, "hostfit_files_hidden_total", reason="native") == 1
    assert value(samples, "hostfit_files_hidden_total") == 3
