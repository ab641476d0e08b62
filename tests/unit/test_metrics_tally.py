"""Request metrics gathered per turn of the event loop (`proxy.edge.metrics._Tally`): the
exposition they lead to is the one counting each request at once would give."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.edge.metrics import Metrics, observe_all

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample but the creation times (each registry made its own)."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    metric = Histogram("t_seconds", "t", ["route"], registry=registry, buckets=BUCKETS)
    return registry, metric


def test_observe_all_is_observe_each() -> None:
    rng = random.Random(7)
    # Bounds themselves (observe counts an amount in the first bucket whose bound is at
    # least it), either side of each, zero, and past the last finite bound.
    values = [*BUCKETS, *(math.nextafter(b, 0) for b in BUCKETS)]
    values += [math.nextafter(b, math.inf) for b in BUCKETS] + [0.0, 1e9]
    values += [rng.expovariate(10) for _ in range(500)]
    rng.shuffle(values)
    each_registry, each = _histogram()
    all_registry, together = _histogram()
    for value in values:
        each.labels(route="/a").observe(value)
    observe_all(together.labels(route="/a"), values[:300])
    observe_all(together.labels(route="/a"), values[300:])
    observe_all(together.labels(route="/b"), [])
    each.labels(route="/b")
    together_samples, each_samples = _samples(all_registry), _samples(each_registry)
    total = ("t_seconds_sum", frozenset({("route", "/a")}))
    # One addition of the batch's sum, where observe adds each value to the running
    # total: the same to the last bits or so (sum() is compensated from Python 3.12).
    assert together_samples.pop(total) == pytest.approx(each_samples.pop(total), rel=1e-12)
    assert together_samples == each_samples
    counts = _samples(all_registry)
    assert counts[("t_seconds_count", frozenset({("route", "/a")}))] == len(values)


def test_observe_all_without_the_buckets_observes_each() -> None:
    """Where prometheus_client's child lacks the attributes the fast path writes."""

    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, value: float) -> None:
            self.seen.append(value)

    plain = Plain()
    observe_all(plain, [0.5, 2.0, 0.5])  # type: ignore[arg-type]
    assert plain.seen == [0.5, 2.0, 0.5]


def _counted(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return _samples(metrics.registry)


def _responses(metrics: Metrics, route: str, status: str) -> float:
    key = ("hostfit_responses_total", frozenset({("route", route), ("status", status)}))
    return _counted(metrics).get(key, 0.0)


def test_requests_of_one_turn_are_written_at_the_next() -> None:
    async def main() -> None:
        metrics = Metrics()
        for _ in range(3):
            metrics.responded("/simple/{project}/", 200, 0.002, 100)
        metrics.responded("/simple/{project}/", 404, 0.3, 10)
        metrics.count_hidden({"glibc": 2, "tags": 5})
        metrics.count_hidden({"glibc": 1})
        assert _responses(metrics, "/simple/{project}/", "200") == 0  # not yet written
        await asyncio.sleep(0)  # the loop turns
        samples = _counted(metrics)
        route = frozenset({("route", "/simple/{project}/")})
        assert _responses(metrics, "/simple/{project}/", "200") == 3
        assert _responses(metrics, "/simple/{project}/", "404") == 1
        assert samples[("hostfit_response_bytes_total", route)] == 310
        assert samples[("hostfit_request_duration_seconds_count", route)] == 4
        assert samples[("hostfit_request_duration_seconds_sum", route)] == 0.306
        fast = frozenset({*route, ("le", "0.005")})
        assert samples[("hostfit_request_duration_seconds_bucket", fast)] == 3
        hidden = "hostfit_files_hidden_total"
        assert samples[(hidden, frozenset({("reason", "glibc")}))] == 3
        assert samples[(hidden, frozenset({("reason", "tags")}))] == 5
        # Another turn's requests are added to those.
        metrics.responded("/simple/{project}/", 200, 0.002, 100)
        await asyncio.sleep(0)
        assert _responses(metrics, "/simple/{project}/", "200") == 4

    asyncio.run(main())


def test_a_scrape_writes_its_own_requests_first() -> None:
    async def main() -> None:
        metrics = Metrics()
        metrics.responded("/healthz", 200, 0.001, 3)
        text = metrics.render()[0].decode()  # in the same turn
        assert 'hostfit_responses_total{route="/healthz",status="200"} 1.0' in text

    asyncio.run(main())


def test_without_an_event_loop_each_request_is_written_at_once() -> None:
    metrics = Metrics()
    metrics.responded("/healthz", 200, 0.001, 3)
    assert _responses(metrics, "/healthz", "200") == 1
