"""Prometheus metrics, one registry per application (so tests can run several apps).

Conventions: counters end in ``_total`` (the client adds it), durations are histograms in
seconds, sizes are bytes, and every label takes a bounded set of values: route templates
(never raw paths), status codes, upstream origins (only configured ones are contacted,
credentials redacted), reason kinds, outcomes.

Two registries: ``registry`` holds what is counted or set as it happens; ``live`` holds
what is read when scraped (the cache's size). With ``--workers N``, `proxy.cli.serve`
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start: what ``registry`` holds then
goes through prometheus_client's files in that directory and every scrape sums all
workers (`MultiProcessCollector`). So each component tells its changes as they happen
(the downloads in progress, the analysis queue, the bytes analyses read, rules
reloads, downloads by outcome, evictions), and a worker's levels (``livesum`` gauges)
leave the sum when it stops (`Metrics.close`). The cache is shared: its size reads the
same from any worker.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from proxy import __version__

if TYPE_CHECKING:
    from proxy.analysis.pool import AnalysisPool
    from proxy.edge.files import FileService
    from proxy.edge.rules_loader import ActiveRules
    from proxy.edge.scheduler import AnalysisScheduler
    from proxy.edge.stores.blobs import BlobStore


M = TypeVar("M", Counter, Gauge, Histogram)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Tally:
    """What the requests of one turn of the event loop add to the request metrics.

    With --workers, each increment of a prometheus_client value is a locked write to a
    shared file, and a cached page's request made about six (15-25 µs of a 50-90 µs
    request). Requests add to these dictionaries instead, and `Metrics.flush` writes
    the sums at the next turn of the loop: once for all the requests that turn served.
    A scrape flushes its own worker first; another worker's requests are written at its
    next turn, before it reads another request.
    """

    __slots__ = ("due", "hidden", "responses", "seconds", "sent")

    def __init__(self) -> None:
        self.responses: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.sent: defaultdict[str, int] = defaultdict(int)
        self.seconds: defaultdict[str, list[float]] = defaultdict(list)
        self.hidden: defaultdict[str, int] = defaultdict(int)
        self.due: asyncio.AbstractEventLoop | None = None  # where its flush was asked


def observe_all(histogram: Histogram, values: list[float]) -> None:
    """``histogram.observe(v)`` for each value, with one write per bucket touched and one
    for the sum. prometheus_client has no public call for that: its child's ``_sum``,
    ``_buckets`` and ``_upper_bounds`` are used where present (observe counts an amount
    in the first bucket whose bound is at least it: ``bisect_left``), else each value is
    observed (tests/unit/test_metrics_tally.py holds both to the same exposition)."""
    total = getattr(histogram, "_sum", None)
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    if total is None or buckets is None or bounds is None or len(buckets) != len(bounds):
        for value in values:
            histogram.observe(value)
        return
    counts: defaultdict[int, int] = defaultdict(int)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    total.inc(sum(values))
    for index, count in counts.items():
        buckets[index].inc(count)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}
        self._tally = _Tally()
        self.live = CollectorRegistry()
        self.page_not_modified = Counter(
            "hostfit_page_not_modified", "Page requests answered 304", registry=self.registry
        )
        self.file_hits = Counter(
            "hostfit_file_cache_hits", "File requests served from the cache", registry=self.registry
        )
        self.file_misses = Counter(
            "hostfit_file_cache_misses",
            "File requests streamed from upstream",
            registry=self.registry,
        )
        self.responses = Counter(
            "hostfit_responses",
            "Responses by route template and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "hostfit_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by route template",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.response_bytes = Counter(
            "hostfit_response_bytes",
            "Response body bytes served, by route template",
            ["route"],
            registry=self.registry,
        )
        self.upstream_requests = Counter(
            "hostfit_upstream_requests",
            'Requests sent upstream (each retry counts), by origin and status ("error": no answer)',
            ["origin", "status"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "hostfit_upstream_errors",
            "Upstream requests that got no answer, by origin and error class",
            ["origin", "error"],
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "hostfit_upstream_request_duration_seconds",
            "Time from sending an upstream request to its answer's headers, by origin",
            ["origin"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.upstream_file_bytes = Counter(
            "hostfit_upstream_file_bytes",
            "Bytes of files downloaded from upstream (as they came over the wire, retries and "
            "resumptions included), by origin",
            ["origin"],
            registry=self.registry,
        )
        self.hidden = Counter(
            "hostfit_files_hidden",
            "Files hidden from the filtered pages served, by reason kind (a file hidden for "
            "several kinds of reason counts under each)",
            ["reason"],
            registry=self.registry,
        )
        self.stale_pages = Counter(
            "hostfit_stale_pages_served",
            "Project pages served from the cache because their upstream failed",
            registry=self.registry,
        )
        self.analyses = Counter(
            "hostfit_analyses",
            'Wheel analyses by outcome (a report\'s status, or "did_not_run")',
            ["outcome"],
            registry=self.registry,
        )
        self.analysis_seconds = Histogram(
            "hostfit_analysis_duration_seconds",
            "Time one wheel analysis took (a stored report is quick), by outcome",
            ["outcome"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self.refusals = Counter(
            "hostfit_download_refusals",
            "Wheel downloads the gate refused, by reason kind (a refusal with several "
            'reasons counts under each; "unanalysed": held back until analysed)',
            ["reason"],
            registry=self.registry,
        )
        # Counted as they happen, so that with --workers every scrape sums all workers.
        self.file_downloads = Counter(
            "hostfit_file_downloads",
            "File downloads by how they ended: cached (downloaded from upstream here), "
            "followed (another process or replica downloaded it, this one streamed its "
            "bytes), uncached (streamed only: no room in the cache), failed, timed_out "
            "(the file deadline), abandoned (no client left)",
            ["outcome"],
            registry=self.registry,
        )
        self.evictions = Counter(
            "hostfit_cache_evictions", "Files evicted from the cache", registry=self.registry
        )
        self.evicted_bytes = Counter(
            "hostfit_cache_evicted_bytes", "Bytes evicted from the cache", registry=self.registry
        )
        # Levels each worker sets as they change; a scrape sums the running workers'.
        self.downloads_active = Gauge(
            "hostfit_file_downloads_active",
            "Upstream file downloads in progress",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.analysis_queue = Gauge(
            "hostfit_analysis_queue_depth",
            "Wheels waiting for an analysis slot (frontier walks and downloads; the gate's "
            "analyses never wait)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.analyses_running = Gauge(
            "hostfit_analyses_running",
            "Wheel analyses running",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # A total shown as a gauge since its first release; each worker's counts, stopped
        # workers' included.
        self.analysis_fetched = Gauge(
            "hostfit_analysis_fetched_bytes",
            "Bytes analyses by URL read from upstreams since start",
            registry=self.registry,
            multiprocess_mode="sum",
        )
        self.rules_reloads = Counter(
            "hostfit_rules_reloads", "Rules reloads by outcome", ["outcome"], registry=self.registry
        )
        for outcome in ("ok", "failed"):
            self.rules_reloads.labels(outcome=outcome)
        build = Gauge(
            "hostfit_build_info",
            "hostfit's version",
            ["version"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        build.labels(version=__version__).set(1)

    def analysed(self, outcome: str, seconds: float) -> None:
        self.analyses.labels(outcome=outcome).inc()
        self.analysis_seconds.labels(outcome=outcome).observe(seconds)

    def count_hidden(self, kinds: Mapping[str, int]) -> None:
        """One filtered page served: its hidden files, by reason kind
        (`proxy.core.decide.hidden_by_kind`, worked out once per decision)."""
        tally = self._tally
        for kind, count in kinds.items():
            tally.hidden[kind] += count
        self._due()

    def responded(self, route: str, status: int, seconds: float, sent: int) -> None:
        """One response ended: counted by route and status, with its time and body bytes."""
        tally = self._tally
        tally.responses[route, str(status)] += 1
        tally.seconds[route].append(seconds)
        tally.sent[route] += sent
        self._due()

    def flush(self) -> None:
        """Write what the requests since the last flush added (`_Tally`)."""
        tally, self._tally = self._tally, _Tally()
        for (route, status), count in tally.responses.items():
            self.labelled(self.responses, route, status).inc(count)
        for route, values in tally.seconds.items():
            observe_all(self.labelled(self.request_seconds, route), values)
        for route, sent in tally.sent.items():
            self.labelled(self.response_bytes, route).inc(sent)
        for kind, count in tally.hidden.items():
            self.labelled(self.hidden, kind).inc(count)

    def _due(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop here: nothing to wait for
            self.flush()
            return
        # Asked again where a loop stopped before its flush ran (another app's, in tests).
        if self._tally.due is not loop:
            self._tally.due = loop
            loop.call_soon(self.flush)

    def labelled(self, metric: M, *values: str) -> M:
        """``metric.labels(*values)``, remembered: labels() takes a lock and builds a key,
        and the hot paths ask for the same few children on every request. Bounded by
        the label values hostfit uses (routes, statuses, reason kinds)."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return cast(M, child)

    def watch_rules(self, rules: ActiveRules) -> None:
        rules.on_reloaded.append(lambda outcome: self.rules_reloads.labels(outcome=outcome).inc())

    def watch_analysis(self, pools: Iterable[AnalysisPool]) -> None:
        for pool in pools:
            self.analysis_fetched.inc(pool.fetched)
            pool.on_fetched.append(self.analysis_fetched.inc)

    def watch_cache(self, blobs: BlobStore, files: FileService) -> None:
        self.live.register(_CacheCollector(blobs))
        for outcome in files.outcomes:  # every outcome shown, from zero
            self.file_downloads.labels(outcome=outcome)
        files.on_ended.append(lambda outcome: self.file_downloads.labels(outcome=outcome).inc())
        blobs.on_evicted.append(self._evicted)
        self.downloads_active.set(files.active)
        files.on_active.append(self.downloads_active.set)

    def _evicted(self, count: int, size: int) -> None:
        self.evictions.inc(count)
        self.evicted_bytes.inc(size)

    def watch_analysis_queue(self, scheduler: AnalysisScheduler) -> None:
        self._load(scheduler.queued, scheduler.running)
        scheduler.on_load.append(self._load)

    def _load(self, queued: int, running: int) -> None:
        self.analysis_queue.set(queued)
        self.analyses_running.set(running)

    def close(self) -> None:
        """This process stops: with --workers, its levels leave the scrapes' sums (its
        counts and totals stay in them)."""
        self.flush()
        if multiprocess_dir() is not None:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def render(self) -> tuple[bytes, str]:
        self.flush()
        counted = self.registry
        directory = multiprocess_dir()
        if directory is not None:
            self._forget_dead_workers(directory)
            counted = CollectorRegistry()
            MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
        return generate_latest(counted) + generate_latest(self.live), CONTENT_TYPE_LATEST

    def _forget_dead_workers(self, directory: str) -> None:
        """A worker killed outright (uvicorn's health check, the OOM killer) never closed:
        its levels would stay in every sum. Dropped at the next scrape."""
        for path in Path(directory).glob("gauge_live*_*.db"):
            pid = path.stem.rpartition("_")[2]
            if pid.isdigit() and not _running(int(pid)):
                mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True


class _CacheCollector(Collector):
    """The file cache, read when scraped: shared by the workers, the same from any."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def collect(self) -> Iterator[Metric]:
        blobs = self.blobs
        yield GaugeMetricFamily(
            "hostfit_cache_bytes", "Bytes of files in the cache", value=blobs.used
        )
        yield GaugeMetricFamily("hostfit_cache_files", "Files in the cache", value=blobs.count)
        if blobs.max_size is not None:
            yield GaugeMetricFamily(
                "hostfit_cache_max_bytes", "The cache budget (--cache-max-size)", blobs.max_size
            )
