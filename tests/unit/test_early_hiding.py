"""The host filter with early answers (`proxy.analysis.early`): a CUDA wheel whose
libraries need a newer glibc than the host's is hidden as soon as its analysis has
read them, before the fat binaries that hold its GPU code; an early answer never
vouches for a wheel, so a host it fits waits for the report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from packaging.utils import NormalizedName
from packaging.version import Version

from proxy.core.models import Page
from proxy.core.origins import Outbound
from proxy.edge.files import FileService
from proxy.edge.layers.host_filter import EARLY_MARK, HostFilter
from proxy.edge.metadata import MetadataService
from proxy.edge.reports import ReportService
from proxy.edge.scheduler import AnalysisScheduler
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.leases import open_leases
from tests.fixtures.elf.recipes import source
from tests.support.wheels import WheelSpec, build_wheel, compile_shared_object
from tests.unit.conftest import NEW_GLIBC, OLD_GLIBC, cached, host
from tests.unit.fakes import FakeIndex, InProcessAnalyzer, MemoryStore

GPUPKG = NormalizedName("gpupkg")


@pytest.fixture(scope="module")
def gpu_wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """gpupkg 1.0, tagged manylinux_2_17 but whose library needs GLIBC_2.25 and carries
    a ``.nv_fatbin`` section; gpupkg 0.9, pure Python."""
    out = tmp_path_factory.mktemp("early-hiding")
    library = compile_shared_object(
        source("getrandom.c") + source("fatbin.c"), out / "build" / "libkernels.so"
    )
    files = {"gpupkg/__init__.py": b"", "gpupkg/libkernels.so": library.read_bytes()}
    native = build_wheel(
        WheelSpec("gpupkg", "1.0", "cp311-cp311-manylinux_2_17_x86_64", files=files), out
    )
    pure = build_wheel(WheelSpec("gpupkg", "0.9", files={"gpupkg/__init__.py": b""}), out)
    return native, pure


@pytest.fixture
def analyzer(client: httpx.AsyncClient) -> InProcessAnalyzer:
    return InProcessAnalyzer(client)


@pytest.fixture
async def layer(
    index: FakeIndex,
    gpu_wheels: tuple[Path, Path],
    client: httpx.AsyncClient,
    store: MemoryStore,
    blobs: BlobStore,
    files: FileService,
    analyzer: InProcessAnalyzer,
) -> AsyncIterator[HostFilter]:
    for wheel in gpu_wheels:
        index.add("gpupkg", wheel)
    reports = ReportService(store, analyzer, open_leases(store, blobs.tmp))
    scheduler = AnalysisScheduler(reports, blobs)
    metadata = MetadataService(blobs, files, client, store, Outbound.only(index.url))
    made = HostFilter(cached(index, client, store), scheduler, metadata=metadata, budget=0.05)
    yield made
    await made.close()
    await scheduler.close()
    await metadata.close()


def names(page: Page) -> list[str]:
    return [f.filename for f in page.files]


async def test_an_early_answer_hides_a_wheel_before_its_report_and_never_vouches(
    layer: HostFilter, analyzer: InProcessAnalyzer, gpu_wheels: tuple[Path, Path]
) -> None:
    native, pure = gpu_wheels
    analyzer.fat_binaries.clear()  # the report takes long: its GPU code is still being read
    deadline = time.monotonic() + 10
    while native.name in names(old := await layer.page(GPUPKG, host(OLD_GLIBC))):
        assert time.monotonic() < deadline, "the early answer never hid the wheel"
        await asyncio.sleep(0.02)

    file = old.file(pure.name)
    everything = await layer.page(GPUPKG, host(NEW_GLIBC))
    wheel = everything.file(native.name)
    assert file is not None and wheel is not None
    assert await layer.scheduler.known([wheel]) == {}  # no report yet: hidden early
    assert wheel.sha256 in layer.scheduler.early([wheel])
    decided = await layer.explain(GPUPKG, host(OLD_GLIBC))
    (why,) = decided.verdicts[native.name].reasons
    assert why.kind == "glibc" and "2.25" in why.message and why.message.endswith(EARLY_MARK)
    assert native.name in decided.unreported
    # The walk moved on to the version below, verified without a report (pure Python).
    assert decided.frontier.verified == (Version("0.9"),) and decided.frontier.settled
    assert names(old) == [pure.name] and not old.provisional

    # A host the early answer fits is not vouched for: it waits for the report.
    fits = await layer.explain(GPUPKG, host(NEW_GLIBC))
    assert fits.verdicts[native.name].keep
    assert wheel in fits.frontier.wanted and Version("1.0") not in fits.frontier.verified
    assert (await layer.page(GPUPKG, host(NEW_GLIBC))).provisional

    analyzer.fat_binaries.set()
    deadline = time.monotonic() + 10
    while (new := await layer.page(GPUPKG, host(NEW_GLIBC))).provisional:
        assert time.monotonic() < deadline, "the walk never settled"
        await asyncio.sleep(0.02)
    assert names(new) == [native.name, pure.name] or names(new) == [pure.name, native.name]
    assert Version("1.0") in (await layer.explain(GPUPKG, host(NEW_GLIBC))).frontier.verified
    assert layer.scheduler.early([wheel]) == {}  # the report replaced it
    decided = await layer.explain(GPUPKG, host(OLD_GLIBC))
    (why,) = decided.verdicts[native.name].reasons
    assert why.kind == "glibc" and EARLY_MARK not in why.message
    assert native.name not in decided.unreported
    assert len(analyzer.calls) == 1  # one analysis, for every host
