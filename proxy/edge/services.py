"""Start-up: open the stores and clients, stack the index layers, close it all on the way out.

Read top to bottom, this is the whole server as it is assembled:

1. the state store, the blob store and the outbound client (one check per origin);
2. the file service, the analysis pools and the one analysis scheduler;
3. the index stack, built from `STACK`, the one ordered list of layers;
4. the download gate and what the web interface and metrics watch.

Everything opened is registered on one `AsyncExitStack`, so a failed start-up closes
what it opened, and one close that fails skips none of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from proxy import __version__
from proxy.analysis.pool import AnalysisPool, PoolLimits
from proxy.core.models import File, ProjectList
from proxy.core.origins import OriginPlan
from proxy.core.profile import HostProfile, parse_profile
from proxy.core.rules import Rules
from proxy.edge.config import Settings
from proxy.edge.files import FileService
from proxy.edge.fleet import Fleet
from proxy.edge.gate import DownloadGate
from proxy.edge.index import Index, IndexLayer
from proxy.edge.layers.hash_fill import HashFillIndex
from proxy.edge.layers.host_filter import HostFilter, WalkLimits
from proxy.edge.layers.origins import OriginFilter, origin_plan
from proxy.edge.layers.page_cache import CachedUpstream
from proxy.edge.layers.policy import PolicyIndex
from proxy.edge.layers.priority import PriorityIndex
from proxy.edge.layers.rewrite import RewriteIndex
from proxy.edge.layers.routes import RoutedIndex
from proxy.edge.layers.routes import Upstream as RoutedUpstream
from proxy.edge.layers.turn import TurnMemo
from proxy.edge.layers.upstream import HttpUpstream
from proxy.edge.layers.variants import VariantIndex
from proxy.edge.metadata import MetadataService
from proxy.edge.metrics import Metrics
from proxy.edge.observe import ObservedTransport
from proxy.edge.render import RenderCache, Rendered
from proxy.edge.reports import Decoded, ReportService
from proxy.edge.rewrites import RewriteService
from proxy.edge.rules_loader import ActiveRules
from proxy.edge.scheduler import AnalysisScheduler
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.embedded import EmbeddedStore
from proxy.edge.stores.leases import open_leases
from proxy.edge.stores.state import StateStore, open_store
from proxy.edge.upstreams_config import table_for, upstream_routes
from proxy.edge.variants import VariantService
from proxy.outbound import async_client
from proxy.retry import RetryingTransport

log = logging.getLogger("hostfit")

COMPACT_SECONDS = 3600.0


@dataclass(frozen=True)
class Parts:
    """What the index layers are built from: opened once, before the stack."""

    settings: Settings
    origins: OriginPlan
    client: httpx.AsyncClient
    store: StateStore
    blobs: BlobStore
    files: FileService
    reports: AnalysisScheduler
    metadata: MetadataService
    rules: Callable[[], Rules]
    metrics: Metrics


Layer = Callable[[Parts, Index], Index]


def upstreams(parts: Parts) -> Index:
    """The bottom of the stack: each upstream fetched (`HttpUpstream`), its pages cached
    and revalidated (`CachedUpstream`), links to other origins dropped (`OriginFilter`);
    then a project taken whole from the first upstream that has it (`PriorityIndex`), or,
    where upstreams own projects, from its owner or its owner's family (`RoutedIndex`)."""
    settings = parts.settings
    indexes: list[Index] = [
        OriginFilter(
            CachedUpstream(
                HttpUpstream(u.url, parts.client, settings.upstream_deadline),
                parts.store,
                settings.page_ttl,
            ),
            u.files,
        )
        for u in parts.origins.upstreams
    ]
    tables = settings.upstream_tables
    routes = upstream_routes(settings.upstreams, tables)
    if not routes.routed:
        return PriorityIndex(indexes)
    return RoutedIndex(
        routes,
        [
            RoutedUpstream(index, url, table.build if table else None)
            for index, url in zip(indexes, settings.upstreams, strict=True)
            for table in (table_for(url, tables),)
        ],
    )


def _host_filter(parts: Parts, inner: Index) -> Index:
    settings = parts.settings
    return HostFilter(
        inner,
        parts.reports,
        policy=settings.analysis,
        budget=settings.analysis_budget,
        limits=WalkLimits(
            keep=settings.frontier_keep,
            max_bytes=settings.frontier_max_bytes,
            max_seconds=settings.frontier_max_seconds,
        ),
        hide_sdists_without_wheels=settings.hide_sdists_without_wheels,
        rules=parts.rules,
        metadata=parts.metadata,
        served=parts.metrics.count_hidden,
    )


def _rewrite(parts: Parts, inner: Index) -> Index:
    service = RewriteService(parts.blobs, parts.files, parts.store)
    return RewriteIndex(inner, parts.rules, service, parts.reports)


def _variants(parts: Parts, inner: Index) -> Index:
    # Rewritten best variants are made and found (downloads) by the rewrite layer's service.
    (rewrites,) = layers_of(inner, RewriteIndex)
    service = VariantService(parts.blobs, parts.files, parts.store, parts.origins.outbound)
    return VariantIndex(
        inner, service, rewrites.service, parts.rules, budget=parts.settings.analysis_budget
    )


# The index stack above `upstreams`, bottom to top: each entry wraps what the entries
# before it built. The contract every layer keeps is in `proxy.edge.index`.
STACK: tuple[Layer, ...] = (
    lambda parts, inner: HashFillIndex(inner, parts.files, parts.store),
    lambda parts, inner: PolicyIndex(inner, parts.rules),
    _host_filter,
    _rewrite,
    _variants,
    lambda parts, inner: TurnMemo(inner),
)


def compose_index(parts: Parts, stack: tuple[Layer, ...] = STACK) -> Index:
    index = upstreams(parts)
    for layer in stack:
        index = layer(parts, index)
    return index


def layers(index: Index) -> list[Index]:
    """Every index in the stack under ``index`` (itself included), top first."""
    found: list[Index] = []
    todo: list[Index] = [index]
    while todo:
        current = todo.pop(0)
        found.append(current)
        if isinstance(current, IndexLayer):
            todo.append(current.inner)
        elif isinstance(current, PriorityIndex):
            todo.extend(current.indexes)
        elif isinstance(current, RoutedIndex):
            todo.extend(upstream.index for upstream in current.upstreams)
    return found


L = TypeVar("L")


def layers_of(index: Index, kind: type[L]) -> list[L]:
    return [layer for layer in layers(index) if isinstance(layer, kind)]


@dataclass
class Services:
    settings: Settings
    store: StateStore
    blobs: BlobStore
    client: httpx.AsyncClient
    files: FileService
    metadata: MetadataService
    index: Index
    filter: HostFilter
    rewrites: RewriteIndex
    variants: VariantIndex
    gate: DownloadGate
    default_profile: HostProfile
    renders: RenderCache
    metrics: Metrics
    rules: ActiveRules
    fleet: Fleet = field(default_factory=Fleet)  # recent traffic, for the web interface
    page_caches: list[CachedUpstream] = field(default_factory=list)  # for admin purges
    # The root list as last written, by media type: made again when the list changes.
    root_renders: dict[str, tuple[ProjectList, Rendered]] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    rules = ActiveRules(settings.rules)  # bad rules stop the start-up here
    origins = origin_plan(settings)  # only these origins are ever contacted
    metrics = Metrics()
    stack = contextlib.AsyncExitStack()
    try:
        store = open_store(settings.redis, str(settings.cache_dir / "state"))
        stack.push_async_callback(store.close)
        blobs = BlobStore(settings.cache_dir / "files", settings.cache_max_size)
        stack.callback(blobs.close)
        removed = blobs.clean_temp()
        if removed:
            log.warning("removed %d partial download(s) left by a previous run", removed)
        # Every request and redirect hop is checked and given its origin's credentials and TLS
        # (proxy.outbound); transient failures are retried in the transport (proxy.retry);
        # each attempt is counted and logged (proxy.edge.observe).
        client = async_client(
            origins.outbound,
            timeout=httpx.Timeout(settings.upstream_timeout),
            headers={"User-Agent": f"hostfit/{__version__}"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            wrap=lambda t: RetryingTransport(ObservedTransport(t, metrics)),
        )
        stack.push_async_callback(client.aclose)
        # One holder at a time for a download or an analysis, among workers and replicas.
        leases = open_leases(store, blobs.tmp)
        files = FileService(blobs, client, store, deadline=settings.file_deadline, leases=leases)
        stack.push_async_callback(files.close)
        pool = AnalysisPool(PoolLimits(workers=settings.analysis_workers), origins.outbound)
        stack.push_async_callback(pool.close)
        # As many again for downloads waiting at the gate: never queued behind walks, nor
        # one behind another (an installer downloads many wheels at once; a 900 MB one
        # takes 20 s). Workers start on demand.
        urgent_pool = AnalysisPool(PoolLimits(workers=settings.analysis_workers), origins.outbound)
        stack.push_async_callback(urgent_pool.close)
        decoded = Decoded()
        reports = AnalysisScheduler(
            ReportService(store, pool, leases, decoded=decoded),
            blobs,
            urgent=ReportService(store, urgent_pool, leases, decoded=decoded),
            observe=metrics.analysed,
            files=files,
            fetch_max=settings.analysis_download_max,
        )
        stack.push_async_callback(reports.close)
        # Downloads feed analysis: a wheel in the file cache is analysed from disk.
        files.on_cached.append(lambda f: _analyse_download(reports, f))
        metadata = MetadataService(blobs, files, client, store, origins.outbound)
        stack.push_async_callback(metadata.close)
        parts = Parts(
            settings=settings,
            origins=origins,
            client=client,
            store=store,
            blobs=blobs,
            files=files,
            reports=reports,
            metadata=metadata,
            rules=lambda: rules.current,
            metrics=metrics,
        )
        index = compose_index(parts)
        for layer in layers(index):
            close = getattr(layer, "close", None)
            if close is not None:
                stack.push_async_callback(close)
        (host_filter,) = layers_of(index, HostFilter)
        (rewrites,) = layers_of(index, RewriteIndex)
        (variants,) = layers_of(index, VariantIndex)
        fleet = Fleet()  # recent traffic, for the web interface (the gate tells it refusals)
        services = Services(
            settings=settings,
            store=store,
            blobs=blobs,
            client=client,
            files=files,
            metadata=metadata,
            index=index,
            filter=host_filter,
            rewrites=rewrites,
            variants=variants,
            gate=DownloadGate(
                host_filter,
                reports,
                refused=fleet.saw,
                counted=lambda kind: metrics.refusals.labels(reason=kind).inc(),
                variant_properties=variants.service.properties,
            ),
            default_profile=_default_profile(settings, rules.current),
            renders=RenderCache(),
            metrics=metrics,
            rules=rules,
            fleet=fleet,
            page_caches=layers_of(index, CachedUpstream),
        )

        def rules_changed(new: Rules) -> None:
            services.default_profile = _default_profile(settings, new)

        rules.on_change(rules_changed)
        metrics.watch_analysis((pool, urgent_pool))
        metrics.watch_analysis_queue(reports)
        metrics.watch_cache(blobs, files)
        metrics.watch_rules(rules)
        stack.callback(metrics.close)
        compaction = asyncio.create_task(_compact_state(store))
        stack.callback(compaction.cancel)
    except BaseException:
        await stack.aclose()  # a failed start-up closes what it opened
        raise
    async with stack:
        yield services


async def _compact_state(store: StateStore) -> None:
    """The embedded store drops expired rows now and then (Redis expires its own)."""
    if not isinstance(store, EmbeddedStore):
        return
    while True:
        try:
            await store.compact()
        except Exception as exc:  # a busy or read-only database is tried again later
            log.warning("state store compaction failed: %s", exc)
        await asyncio.sleep(COMPACT_SECONDS)


def _analyse_download(scheduler: AnalysisScheduler, file: File) -> None:
    if file.is_wheel and file.sha256:
        scheduler.submit(file)


def _default_profile(settings: Settings, rules: Rules) -> HostProfile:
    """The setting wins over the rules; nothing configured means nothing assumed."""
    text = settings.default_profile or rules.default_profile
    return parse_profile(text, "default") if text else HostProfile()
