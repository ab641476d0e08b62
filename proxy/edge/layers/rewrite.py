"""Rewrites as an index wrapper: filtered pages list rewritten wheels in place of the originals.

Outermost wrapper, so it rewrites what the host filter kept; the universal view is
never rewritten. Retagging needs a wheel's report: the newest versions' Linux wheels
are analysed on demand (for clients that tell nothing too, since retagging is what
makes plain pip decline a wheel by itself). Until a rewrite is made, the original is
listed and the page is provisional; each finished rewrite or report moves the
project's generation, so the page is computed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from packaging.utils import NormalizedName
from packaging.version import Version

from proxy.core.frontier import is_linux_platform
from proxy.core.lru import LRU, Generations
from proxy.core.models import File, Page
from proxy.core.report import Report
from proxy.core.revision import revised
from proxy.core.rewrite import Rewrite, plan, rewrite_digest
from proxy.core.rules import Rules
from proxy.core.versions import file_version, newest_versions
from proxy.edge.index import Context, Index, IndexLayer
from proxy.edge.layers.host_filter import Decided
from proxy.edge.rewrites import Done, RewriteService
from proxy.edge.scheduler import AnalysisScheduler

ANALYSED_VERSIONS = 3
PAGES_KEPT = 1024
PROJECTS_KEPT = 65_536  # generations: forgetting one only costs a recomputation
WATCHED_KEPT = 200_000


@dataclass(frozen=True, slots=True)
class _Planned:
    file: File
    rewrite: Rewrite
    digest: str


class RewriteIndex(IndexLayer):
    def __init__(
        self,
        inner: Index,
        rules: Callable[[], Rules],
        service: RewriteService,
        reports: AnalysisScheduler,
    ) -> None:
        super().__init__(inner)
        self.rules = rules
        self.service = service
        self.reports = reports
        self._generation: Generations[str] = Generations(PROJECTS_KEPT)
        self._pages: LRU[tuple[str, ...], Page] = LRU(PAGES_KEPT)
        self._watched: LRU[str, str] = LRU(WATCHED_KEPT)  # sha256 analysed -> project
        reports.listen(self._reported)

    async def close(self) -> None:
        await self.service.close()

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        page = await self.inner.page(name, ctx)
        if ctx.view == "universal":
            return page
        rules = self.rules()
        if not rules.retags(name) and not rules.fixes_for(name):
            return page
        key = (name, page.upstream, page.revision, rules.digest, str(self._generation[name]))
        cached = self._pages.get(key)
        if cached is not None:
            return cached
        result = await self._rewritten(page, rules)
        self._pages.put(key, result)
        return result

    async def file(self, page: Page, filename: str) -> tuple[File | None, File | None]:
        """For a download: the rewritten wheel served as ``filename`` (made now if its blob
        is gone) and the original it was made from, while ``page`` (the universal page)
        still lists that original; (None, None) for a name no rewrite serves."""
        done = await self.service.by_name(page.name, filename)
        original = page.file(done.source_filename) if done is not None else None
        # An upstream may replace a file under the same name (private indexes allow it):
        # a rewrite of the old bytes is then no rewrite of the file listed, and the gate
        # would judge the binaries it carries by the new original's report.
        if done is None or original is None or original.sha256 != done.source_sha256:
            return None, None
        await self.service.ensure(done, page.name)
        return done.download(), original

    async def explain(self, decided: Decided) -> dict[str, dict[str, Any]]:
        """For explain: each kept file a rule rewrites, what it is served as, which rules."""
        kept = tuple(f for f in decided.page_all.files if decided.verdicts[f.filename].keep)
        page = replace(decided.page_all, files=kept)
        rules = self.rules()
        planned = await self._plans(page, rules, analyse=False)
        done = await self.service.known((p.digest for p in planned), page.name)
        notes = {}
        for p in planned:
            made = done.get(p.digest)
            failed = self.service.failed(p.digest)
            notes[p.file.filename] = {
                "served_as": made.filename if made else None,
                "status": "done" if made else "failed" if failed else "pending",
                "change": p.rewrite.describe(),
                "rules": list(p.rewrite.rules),
                **({"error": failed} if failed and not made else {}),
            }
        return notes

    async def _rewritten(self, page: Page, rules: Rules) -> Page:
        planned = await self._plans(page, rules, analyse=True)
        done = await self.service.known((p.digest for p in planned), page.name)
        waiting = False
        for p in _newest_first(planned):
            if p.digest not in done and self.service.failed(p.digest) is None:
                task = self.service.submit(p.file, p.rewrite, page.name)
                task.add_done_callback(partial(self._finished, page.name))
                waiting = True
        by_name: Mapping[str, Done] = {
            p.file.filename: done[p.digest] for p in planned if p.digest in done
        }
        analysing = any(f.sha256 in self._watched for f in page.files)
        if not by_name and not waiting and not analysing:
            return page
        files = tuple(
            by_name[f.filename].served(f) if f.filename in by_name else f for f in page.files
        )
        return replace(
            page,
            files=files,
            revision=revised(page.revision, "rw", sorted(d.filename for d in by_name.values())),
            provisional=page.provisional or waiting or analysing,
        )

    async def _plans(self, page: Page, rules: Rules, *, analyse: bool) -> list[_Planned]:
        wheels = [f for f in page.files if f.is_wheel and f.sha256]
        reports: Mapping[str, Report] = {}
        if rules.retags(page.name):
            candidates = [f for f in wheels if is_linux_platform(f.filename)]
            reports = await self.reports.known(candidates)
            if analyse:
                self._analyse(page.name, [f for f in candidates if f.sha256 not in reports])
        planned = []
        for f in wheels:
            rewrite = plan(rules, f.filename, reports.get(f.sha256 or ""))
            if rewrite is not None:
                planned.append(_Planned(f, rewrite, rewrite_digest(f.sha256 or "", rewrite)))
        return planned

    def _analyse(self, project: str, files: Sequence[File]) -> None:
        for f in newest_versions(files, ANALYSED_VERSIONS):
            if self._watched.add(f.sha256 or "", project):
                self.reports.submit(f)

    def _reported(self, file: File, report: Report) -> None:
        project = self._watched.pop(file.sha256 or "")
        if project is not None:
            self._generation.move(project)  # a retag may follow: rewrite again

    def _finished(self, project: str, _: object) -> None:
        self._generation.move(project)


def _newest_first(planned: Sequence[_Planned]) -> list[_Planned]:
    def version_key(p: _Planned) -> Version:
        return file_version(p.file.filename) or Version("0")

    return sorted(planned, key=version_key, reverse=True)
