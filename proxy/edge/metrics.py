"""Prometheus metrics, one registry per application (so tests can run several apps)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from proxy.edge.blobs import BlobStore
    from proxy.edge.files import FileService


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "Responses by route kind and status",
            ["route", "status"],
            registry=self.registry,
        )

    def watch_analysis(self, fetched: Callable[[], float]) -> None:
        gauge = Gauge(
            "hostfit_analysis_fetched_bytes",
            "Bytes analyses by URL read from upstreams since start",
            registry=self.registry,
        )
        gauge.set_function(fetched)

    def watch_cache(self, blobs: BlobStore, files: FileService) -> None:
        self.registry.register(_CacheCollector(blobs, files))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _CacheCollector(Collector):
    """The file cache and its downloads, read when scraped."""

    def __init__(self, blobs: BlobStore, files: FileService) -> None:
        self.blobs = blobs
        self.files = files

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
        yield CounterMetricFamily(
            "hostfit_cache_evictions", "Files evicted from the cache", value=blobs.evicted
        )
        yield CounterMetricFamily(
            "hostfit_cache_evicted_bytes",
            "Bytes evicted from the cache",
            value=blobs.evicted_bytes,
        )
        yield GaugeMetricFamily(
            "hostfit_file_downloads_active",
            "Upstream file downloads in progress",
            self.files.active,
        )
        downloads = CounterMetricFamily(
            "hostfit_file_downloads",
            "Upstream file downloads by how they ended: cached, uncached (streamed only: "
            "no room in the cache), failed, timed_out (the file deadline), abandoned "
            "(no client left)",
            labels=["outcome"],
        )
        for outcome, count in self.files.outcomes.items():
            downloads.add_metric([outcome], count)
        yield downloads
