"""The fleet recorder: noting a request is cheap and bounded; summaries come when someone looks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from packaging.utils import NormalizedName

from proxy.core.decide import Reason, Verdict
from proxy.core.models import File, Page
from proxy.core.profile import parse_profile
from proxy.edge.fleet import Fleet, Summary, summarise
from proxy.edge.index import UNIVERSAL, Context
from proxy.errors import NotFound

OLD = "arch=x86_64,libc=glibc-2.17,python=3.11"
NEW = "arch=x86_64,libc=glibc-2.36,python=3.11"


def ctx(profile: str) -> Context:
    return Context(profile=parse_profile(profile, "url"))


def page(*names: str) -> Page:
    return Page(NormalizedName("demo"), tuple(File(n, f"u/{n}", {}) for n in names))


GLIBC = Reason("glibc", "glibc: needs 2.34, host has 2.17")
TAGS = Reason("tags", "tags: not for this platform")


def summariser(calls: list[tuple[str, str]]) -> Callable[[str, Context], Awaitable[Summary]]:
    async def summarise_one(project: str, context: Context) -> Summary:
        calls.append((project, context.profile.to_string()))
        if project == "gone":
            raise NotFound("gone")
        hidden = context.profile.to_string() == OLD
        verdicts = {
            "demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl": Verdict((GLIBC,) if hidden else ()),
            "demo-2.0-cp311-cp311-win_amd64.whl": Verdict((TAGS,)),
            "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl": Verdict(),
        }
        return summarise(page(*verdicts), verdicts, settled=not hidden, wanted=2 * hidden)

    return summarise_one


async def test_only_hosts_that_tell_something_are_noted() -> None:
    fleet = Fleet()
    fleet.saw("demo", UNIVERSAL)
    fleet.saw("demo", Context())
    assert len(fleet) == 0
    fleet.saw("demo", ctx(OLD))
    fleet.saw("demo", ctx(OLD))
    fleet.saw("other", ctx(OLD))
    assert len(fleet) == 2
    [host] = fleet.host_classes()
    assert (host.profile, host.requests, host.projects, host.latest_project) == (
        OLD,
        3,
        2,
        "other",
    )


async def test_bounded_oldest_forgotten() -> None:
    fleet = Fleet(capacity=3)
    for n in range(5):
        fleet.saw(f"p{n}", ctx(OLD))
    fleet.saw("p2", ctx(OLD))  # seen again: kept as the newest
    fleet.saw("p5", ctx(OLD))
    assert len(fleet) == 3
    assert fleet.host_classes()[0].latest_project == "p5"
    assert {key[0] for key in fleet._seen} == {"p2", "p4", "p5"}


async def test_summaries_when_someone_looks() -> None:
    fleet = Fleet()
    calls: list[tuple[str, str]] = []
    fleet.saw("demo", ctx(OLD))
    fleet.saw("demo", ctx(NEW))
    fleet.saw("gone", ctx(NEW))
    assert fleet.hidden_by_reason() == []  # nothing summarised yet
    await fleet.refresh(summariser(calls))
    assert sorted(calls) == sorted([("gone", NEW), ("demo", NEW), ("demo", OLD)])
    reasons = {r.kind: (r.files, r.hosts) for r in fleet.hidden_by_reason()}
    assert reasons == {"tags": (2, 2), "glibc": (1, 1)}
    [affected] = fleet.most_affected()
    assert (affected.project, affected.hosts, affected.refused, affected.hidden) == (
        "demo",
        1,
        1,
        3,
    )
    refused = fleet.refusals("demo", "demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert refused == [(OLD, (GLIBC.message,))]
    assert fleet.refusals("demo", "demo-2.0-cp311-cp311-win_amd64.whl") == []  # tags only
    assert fleet.unsettled() == (1, 2)
    # Nothing new since: no summary made again.
    calls.clear()
    await fleet.refresh(summariser(calls))
    assert calls == []
    fleet.saw("demo", ctx(OLD))
    await fleet.refresh(summariser(calls))
    assert calls == [("demo", OLD)]


async def test_refresh_is_bounded() -> None:
    fleet = Fleet()
    calls: list[tuple[str, str]] = []
    for n in range(10):
        fleet.saw(f"p{n}", ctx(OLD))
    await fleet.refresh(summariser(calls), limit=4)
    assert [c[0] for c in calls] == ["p9", "p8", "p7", "p6"]  # newest first


async def test_refresh_stops_at_its_time_budget() -> None:
    fleet = Fleet()
    calls: list[tuple[str, str]] = []
    for n in range(5):
        fleet.saw(f"p{n}", ctx(OLD))
    slow = summariser(calls)

    async def slowly(project: str, context: Context) -> Summary:
        await asyncio.sleep(0.05)
        return await slow(project, context)

    await fleet.refresh(slowly, budget=0.01)
    assert len(calls) == 1  # the first always runs; the rest wait for the next look
    await fleet.refresh(slowly)
    assert len(calls) == 5


def test_noting_a_request_is_cheap() -> None:
    fleet = Fleet()
    contexts = [ctx(f"arch=x86_64,libc=glibc-2.{n},python=3.11") for n in range(17, 40)]
    start = time.perf_counter()
    for n in range(20_000):
        fleet.saw(f"p{n % 700}", contexts[n % len(contexts)])
    per_call = (time.perf_counter() - start) / 20_000
    assert per_call < 50e-6, per_call
    assert len(fleet) <= fleet.capacity
