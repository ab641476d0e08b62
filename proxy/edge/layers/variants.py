"""Wheel variants (PEP 825) on every page: the ``variants.json`` link, pruning per host, and
the best variant for installers that cannot read variants.

Outermost layer, in both views. Upstream's ``*-variants.json`` entries are taken off the
page; each version that still lists variant wheels gets one entry of hostfit's own,
``{name}-{version}-variants.json`` beside the page (so the link works under ``/simple/``,
``/p/<profile>/simple/`` and ``/universal/simple/`` alike), whose bytes and sha256 are
those the same request would be served (`document`):

- universal view: upstream's file as it is, or the merge of the wheels' ``variant.json``
  (`proxy.edge.variants`) where upstream has none;
- filtered view: variant wheels whose properties this host cannot meet
  (`proxy.core.variant_fit`) are dropped, and the document lists exactly the labels of
  the variant wheels left on the page, so file and wheels always agree. Upstream's
  bytes are served unchanged when that leaves every label in.

With a ``[[best_variant]]`` rule for the project, a filtered page also lists the best
variant for the host (PEP 825's ordering) rewritten under a name without a label, with a
build tag of that variant: its own URL, hash and ``.metadata``, made by the rewrite
service like other rewrites (`proxy.core.rewrite`), for pip and uv without the preview.

A document not made within ``budget`` seconds is linked without a hash, the version's
wheels are left unpruned and the page is provisional; asking for the document waits for
it. The revision changes whenever what is served changes: it covers the documents'
sha256s, the dropped wheels and the rewritten ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from urllib.parse import quote

from packaging.utils import NormalizedName
from packaging.version import Version

from proxy.core.decide import Verdict
from proxy.core.lru import LRU, Generations
from proxy.core.models import File, Page
from proxy.core.revision import revised
from proxy.core.rewrite import Rewrite, plan, rewrite_digest
from proxy.core.rules import Rules
from proxy.core.variant_fit import (
    best_label,
    supported_properties,
    unfit_labels,
    unfit_reason,
)
from proxy.core.variants import (
    VARIANTS_SUFFIX,
    VariantMetadata,
    parse_variants_json_filename,
    render,
    split_label,
    variant_label,
    variant_version,
    variants_json_filename,
)
from proxy.edge.flight import Flights
from proxy.edge.index import Context, Index, IndexLayer
from proxy.edge.layers.host_filter import Decided
from proxy.edge.rewrites import RewriteService
from proxy.edge.variants import Document, VariantService
from proxy.errors import HostfitError, NotFound

log = logging.getLogger("hostfit.variants")

SERVED_KEPT = 2048
# Pages with variants served, weighed by their files: the key holds the request's host.
SERVED_FILES_KEPT = 200_000
PROJECTS_KEPT = 65_536  # generations: forgetting one only costs a recomputation
# Keys of upstream's entry that say nothing true of hostfit's document.
_NOT_CARRIED = ("core-metadata", "dist-info-metadata", "size", "provenance", "yanked")


@dataclass(frozen=True, slots=True)
class VersionGroup:
    """One version's variant wheels on the page, and upstream's variants.json if listed."""

    wheels: tuple[File, ...]
    upstream: File | None

    @property
    def key(self) -> tuple[str, ...]:
        if self.upstream is not None and self.upstream.sha256:
            return ("upstream", self.upstream.sha256)
        return ("wheels", *sorted(w.sha256 or w.filename for w in self.wheels))


@dataclass(frozen=True, slots=True)
class Served:
    page: Page
    documents: Mapping[str, bytes] = field(default_factory=dict)  # by filename
    pending: Mapping[str, VersionGroup] = field(default_factory=dict)  # linked, not made yet


class VariantIndex(IndexLayer):
    def __init__(
        self,
        inner: Index,
        service: VariantService,
        rewrites: RewriteService,
        rules: Callable[[], Rules],
        *,
        budget: float = 2.0,
    ) -> None:
        super().__init__(inner)
        self.service = service
        self.rewrites = rewrites
        self.rules = rules
        self.budget = budget
        self._generation: Generations[str] = Generations(PROJECTS_KEPT)
        self._served: LRU[tuple[str, ...], Served] = LRU(
            SERVED_FILES_KEPT, weigh=lambda served: len(served.page.files) + 1
        )
        self._plain: LRU[tuple[str, ...], bool] = LRU(SERVED_KEPT)
        self._making: Flights[tuple[str, ...], Document | None] = Flights()

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        return (await self.served(name, ctx)).page

    async def document(self, name: NormalizedName, filename: str, ctx: Context) -> bytes:
        """The variants.json this request's page links to; waits for one not made yet,
        and raises what its upstream raised."""
        served = await self.served(name, ctx)
        group = served.pending.get(filename)
        if group is not None:
            await self.service.document(group.key, group.upstream, group.wheels)
            self._moved(name)
            served = await self.served(name, ctx)
        data = served.documents.get(filename)
        if data is None:
            raise NotFound(f"{filename} is not a variants.json of project {name}")
        return data

    async def served(self, name: NormalizedName, ctx: Context) -> Served:
        page = await self.inner.page(name, ctx)
        # The hot path is a lookup: pages without variants are remembered as such.
        plain = (name, page.upstream, page.revision)
        if self._plain.get(plain):
            return Served(page)
        rules = self.rules()
        host = ctx.profile.to_string() if ctx.view != "universal" else ""
        key = (*plain, ctx.view, host, rules.digest, str(self._generation[name]))
        served = self._served.get(key)
        if served is not None:
            if served.page.warning != page.warning:
                served = replace(served, page=replace(served.page, warning=page.warning))
            return served
        groups = _groups(page)
        if not groups and not any(_is_document(f) for f in page.files):
            self._plain.put(plain, True)
            return Served(page)
        served = await self._serve(page, groups, ctx, rules)
        self._served.put(key, served)
        return served

    async def explain(self, decided: Decided, ctx: Context) -> Decided:
        """The host filter's decision, with the variant wheels this host cannot use hidden
        for that reason (kind ``variant``), as its pages drop them."""
        page = decided.page_all
        groups = _groups(page)
        if not groups:
            return decided
        documents = await self._documents(page.name, groups)
        verdicts = dict(decided.verdicts)
        for version, group in groups.items():
            document = documents.get(version)
            if document is None or document.meta is None:
                continue
            for wheel in group.wheels:
                label = variant_label(wheel.filename) or ""
                properties = document.meta.properties(label)
                if properties is None:
                    continue
                reason = unfit_reason(label, properties, ctx.profile)
                if reason is None:
                    continue
                before = verdicts.get(wheel.filename, Verdict())
                verdicts[wheel.filename] = replace(before, reasons=(*before.reasons, reason))
        kept = tuple(f for f in decided.page.files if verdicts.get(f.filename, Verdict()).keep)
        return replace(decided, verdicts=verdicts, page=replace(decided.page, files=kept))

    async def close(self) -> None:
        await self._making.close()
        await self.service.close()

    # ------------------------------------------------------------------------

    async def _serve(
        self, page: Page, groups: Mapping[Version, VersionGroup], ctx: Context, rules: Rules
    ) -> Served:
        filtered = ctx.view != "universal"
        documents = await self._documents(page.name, groups)
        dropped: set[str] = set()
        entries: list[File] = []
        added: list[File] = []
        served: dict[str, bytes] = {}
        pending: dict[str, VersionGroup] = {}
        waiting = False
        for version, group in groups.items():
            filename = variants_json_filename(page.name, version)
            extra = _carried(group.upstream)
            document = documents.get(version)
            if document is None:
                pending[filename] = group
                entries.append(File(filename, quote(filename), {}, extra))
                continue
            kept = list(group.wheels)
            if filtered and document.meta is not None:
                unfit = unfit_labels(document.meta, ctx.profile)
                kept = [w for w in group.wheels if variant_label(w.filename) not in unfit]
                dropped.update(w.filename for w in group.wheels if w not in kept)
            data = _bytes(document, {variant_label(w.filename) or "" for w in kept}, filtered)
            if not kept or data is None:
                continue
            served[filename] = data
            digest = hashlib.sha256(data).hexdigest()
            entries.append(File(filename, quote(filename), {"sha256": digest}, extra))
            if filtered and document.meta is not None:
                best, making = await self._best(page.name, version, kept, document.meta, ctx, rules)
                added.extend(best)
                waiting = waiting or making
        files = [f for f in page.files if not _is_document(f) and f.filename not in dropped]
        files.extend(added)
        files.extend(entries)
        marks = sorted(
            [f"-{name}" for name in dropped]
            + [f"+{f.filename}" for f in added]
            + [f"{f.filename}={f.sha256 or 'pending'}" for f in entries]
        )
        result = replace(
            page,
            files=tuple(files),
            revision=revised(page.revision, "var", marks),
            provisional=page.provisional or bool(pending) or waiting,
        )
        return Served(result, served, pending)

    async def _documents(
        self, project: str, groups: Mapping[Version, VersionGroup]
    ) -> dict[Version, Document]:
        found: dict[Version, Document] = {}
        started: list[tuple[Version, asyncio.Task[Document | None]]] = []
        for version, group in groups.items():
            known = self.service.known(group.key)
            if known is not None:
                found[version] = known
                continue
            task = self._making.start(group.key, partial(self._make, project, group))
            started.append((version, task))
        if started and self.budget > 0:
            await asyncio.wait({task for _, task in started}, timeout=self.budget)
        for version, task in started:
            document = task.result() if task.done() and not task.cancelled() else None
            if document is not None:
                found[version] = document
        return found

    async def _make(self, project: str, group: VersionGroup) -> Document | None:
        try:
            return await self.service.document(group.key, group.upstream, group.wheels)
        except HostfitError as exc:  # upstream trouble: linked without a hash, tried again
            log.warning("%s: variants.json not made yet: %s", project, exc)
            return None
        finally:
            self._moved(project)

    async def _best(
        self,
        project: NormalizedName,
        version: Version,
        kept: Sequence[File],
        meta: VariantMetadata,
        ctx: Context,
        rules: Rules,
    ) -> tuple[list[File], bool]:
        """The rewritten best variant, if the rules ask for it; and whether it is being made."""
        wanted = [b for b in rules.best_variants(project) if b.match.covers(project, version)]
        if not wanted:
            return [], False
        label = best_label(meta, {variant_label(w.filename) or "" for w in kept}, ctx.profile)
        if label is None:
            return [], False
        out: list[File] = []
        making = False
        for wheel in kept:
            if variant_label(wheel.filename) != label or not wheel.sha256:
                continue
            fixes = plan(rules, split_label(wheel.filename)[0], None)
            rewrite = Rewrite(
                add_requires=fixes.add_requires if fixes else (),
                remove_requires=fixes.remove_requires if fixes else frozenset(),
                requires_python=fixes.requires_python if fixes else None,
                variant=label,
                rules=(wanted[0].where, *(fixes.rules if fixes else ())),
                variant_properties=supported_properties(meta.variants[label], ctx.profile),
            )
            digest = rewrite_digest(wheel.sha256, rewrite)
            done = (await self.rewrites.known([digest], project)).get(digest)
            if done is not None:
                out.append(done.served(wheel))
            elif self.rewrites.failed(digest) is None:
                task = self.rewrites.submit(wheel, rewrite, project)
                task.add_done_callback(lambda _: self._moved(project))
                making = True
        return out, making

    def _moved(self, project: str) -> None:
        self._generation.move(project)


def _groups(page: Page) -> dict[Version, VersionGroup]:
    wheels: dict[Version, list[File]] = defaultdict(list)
    documents: dict[Version, File] = {}
    for f in page.files:
        name = f.filename
        if name.endswith(".whl"):
            # Only a name of 6 or 7 dash-separated parts can end in a label: a page without
            # variant wheels passes without a parse per file.
            if 5 <= name.count("-") <= 6 and (version := variant_version(name)) is not None:
                wheels[version].append(f)
        elif _is_document(f):
            parsed = parse_variants_json_filename(f.filename)
            if parsed is not None and parsed[0] == page.name:
                documents.setdefault(parsed[1], f)
    return {v: VersionGroup(tuple(ws), documents.get(v)) for v, ws in wheels.items()}


def _is_document(file: File) -> bool:
    return file.filename.endswith(VARIANTS_SUFFIX)


def _carried(upstream: File | None) -> dict[str, object]:
    if upstream is None:
        return {}
    return {k: v for k, v in upstream.extra.items() if k not in _NOT_CARRIED}


def _bytes(document: Document, labels: set[str], filtered: bool) -> bytes | None:
    """What to serve: upstream's bytes where they say exactly what is due, else rendered."""
    meta = document.meta
    if meta is None:
        return document.raw  # not understood: passed through as it is, never pruned
    if not filtered:
        return document.raw if document.raw is not None else render(meta)
    pruned = meta.only(labels)
    if document.raw is not None and pruned.variants.keys() == meta.variants.keys():
        return document.raw
    return render(pruned)
