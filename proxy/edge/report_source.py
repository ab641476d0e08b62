"""Reports for the host filter: from the store, or analysed in the worker pool.

A wheel already in the file cache is analysed from disk; otherwise the pool reads
only the zip directory and the ELF members it needs from upstream, with ranges.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from proxy.core.models import File
from proxy.core.report import Report
from proxy.edge.blobs import BlobStore
from proxy.edge.reports import ReportService

log = logging.getLogger("hostfit.reports")


class AnalysedReports:
    def __init__(self, service: ReportService, blobs: BlobStore) -> None:
        self.service = service
        self.blobs = blobs
        self._tasks: set[asyncio.Task[Report]] = set()

    async def known(self, files: Sequence[File]) -> Mapping[str, Report]:
        return await self.service.cached_many([f.sha256 for f in files if f.sha256])

    def submit(self, file: File) -> asyncio.Future[Report]:
        task = asyncio.ensure_future(self._report(file))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _report(self, file: File) -> Report:
        assert file.sha256 is not None
        try:
            if self.blobs.has(file.sha256):
                path = self.blobs.path(file.sha256)
                return await self.service.for_file(path, file.filename, file.sha256)
            return await self.service.for_url(file.url, file.filename, file.sha256)
        except Exception as exc:
            # Not stored: a failure to run the analysis says nothing about the wheel.
            log.warning("analysis of %s did not run: %s", file.filename, exc)
            return Report.unanalysable(file.filename, file.sha256, f"analysis did not run: {exc}")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
