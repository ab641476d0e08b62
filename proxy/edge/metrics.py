"""Prometheus metrics, one registry per application (so tests can run several apps)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)


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

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
