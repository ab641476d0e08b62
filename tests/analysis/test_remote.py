"""Wheels read over HTTP range requests from a real local server."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import pytest

from proxy.analysis.remote import RemoteFile
from proxy.analysis.wheel import analyze_wheel
from proxy.core.report import Report
from proxy.errors import UpstreamError
from tests.fixtures.elf.recipes import FixtureWheel, Objects
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel


@pytest.fixture(scope="module")
def server() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def by_file(path: Path) -> Report:
    with path.open("rb") as source:
        return analyze_wheel(source, path.name, "0" * 64)


def by_url(url: str, filename: str) -> tuple[Report, RemoteFile]:
    """As the server and ``hostfit inspect URL`` read: by its ends where ranges are honoured."""
    with RemoteFile(url) as remote:
        report = analyze_wheel(cast(IO[bytes], remote), filename, "0" * 64, far=remote.ranged)
        return report, remote


@pytest.fixture(scope="module")
def mostly_data_wheel(elf_objects: Objects, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small extension and 8 MB of incompressible data no analysis needs."""
    files = {
        "pkg/_ext.so": elf_objects.getrandom.read_bytes(),
        "pkg/weights.bin": os.urandom(8 * 1024 * 1024),
    }
    spec = WheelSpec("mostly-data", "1.0", tag="cp311-cp311-manylinux_2_28_x86_64", files=files)
    return build_wheel(spec, tmp_path_factory.mktemp("remote"))


def test_reports_by_url_equal_reports_by_file(
    server: Upstream,
    fixture_wheels: dict[str, FixtureWheel],
    real_wheels: dict[str, Path],
) -> None:
    paths = [f.path for f in fixture_wheels.values()] + list(real_wheels.values())
    for path in paths:
        server.add("x", path)
        report, _ = by_url(server.file_url(path.name), path.name)
        assert report == by_file(path)


def test_only_what_is_needed_is_fetched(server: Upstream, mostly_data_wheel: Path) -> None:
    server.add("mostly-data", mostly_data_wheel)
    report, remote = by_url(server.file_url(mostly_data_wheel.name), mostly_data_wheel.name)
    assert report.status == "ok"
    assert report.requires.glibc == "2.25"
    size = mostly_data_wheel.stat().st_size
    assert remote.size == size
    assert remote.ranged
    assert remote.fetched < size * 0.05
    # Ranges of the bytes as stored: never of a coding made on the way.
    asked = [r for r in server.requests if r.path == f"/files/{mostly_data_wheel.name}"]
    assert asked and all(r.headers.get("accept-encoding") == "identity" for r in asked)


def test_a_server_without_ranges_means_one_full_download(
    mostly_data_wheel: Path,
) -> None:
    with Upstream() as server:
        server.ranges = False
        server.add("mostly-data", mostly_data_wheel)
        report, remote = by_url(server.file_url(mostly_data_wheel.name), mostly_data_wheel.name)
    assert not remote.ranged
    assert remote.fetched == mostly_data_wheel.stat().st_size
    assert remote.requests == 1
    assert report == by_file(mostly_data_wheel)


def test_blocks_are_cached(server: Upstream, glibc_wheel: Path) -> None:
    server.add("x", glibc_wheel)
    with RemoteFile(server.file_url(glibc_wheel.name), block_size=1024) as remote:
        assert remote.read(10) == glibc_wheel.read_bytes()[:10]
        requests, fetched = remote.requests, remote.fetched
        remote.seek(0)
        assert remote.read(10) == glibc_wheel.read_bytes()[:10]
        assert (remote.requests, remote.fetched) == (requests, fetched)
        remote.seek(1500)
        assert remote.read(1000) == glibc_wheel.read_bytes()[1500:2500]
        assert remote.requests == requests + 1  # the two missing blocks, in one request


def test_blocks_evicted_from_memory_are_not_fetched_again(
    server: Upstream, glibc_wheel: Path
) -> None:
    server.add("x", glibc_wheel)
    data = glibc_wheel.read_bytes()
    with RemoteFile(server.file_url(glibc_wheel.name), block_size=1024, cache_bytes=2048) as remote:
        for offset in range(0, 8 * 1024, 1024):  # more blocks than memory holds
            remote.seek(offset)
            assert remote.read(1024) == data[offset : offset + 1024]
        requests, fetched = remote.requests, remote.fetched
        remote.seek(0)
        assert remote.read(8 * 1024) == data[: 8 * 1024]
        assert (remote.requests, remote.fetched) == (requests, fetched)


def test_missing_file(server: Upstream) -> None:
    with pytest.raises(UpstreamError, match="HTTP 404"):
        RemoteFile(server.file_url("nothing-1.0-py3-none-any.whl"))


def test_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamError, match="requesting: ConnectError"):
        RemoteFile(f"http://127.0.0.1:{port}/x.whl")


def test_a_short_range_response_is_an_upstream_error(mostly_data_wheel: Path) -> None:
    with Upstream() as server:
        server.add("mostly-data", mostly_data_wheel)
        with RemoteFile(server.file_url(mostly_data_wheel.name), block_size=4096) as remote:
            server.truncate.add(mostly_data_wheel.name)
            remote.seek(0)
            with pytest.raises(UpstreamError):
                remote.read(1024 * 1024)


@pytest.mark.heavy
def test_large_members_are_read_by_their_ends(
    server: Upstream, real_wheels: dict[str, Path]
) -> None:
    wheel = real_wheels["numpy"]
    server.add("numpy", wheel)
    url = server.file_url(wheel.name)
    report, far = by_url(url, wheel.name)
    with RemoteFile(url) as near:
        forward = analyze_wheel(cast(IO[bytes], near), wheel.name, "0" * 64, far=False)
    assert report == forward == by_file(wheel)
    assert report.status == "ok"
    # The extension module and bundled OpenBLAS are read at their heads and tails.
    assert far.fetched < near.fetched * 0.5


def section_headers_moved_to_the_end(elf: bytes, filler: int, *, section_0_type: int = 0) -> bytes:
    """The ELF with ``filler`` bytes of fresh text after it, then its section header table.

    The loader never looks at section headers, so the file means the same; reading its
    section headers now means reaching the end of a long deflated member.
    """
    shoff, shnum = (
        int.from_bytes(elf[0x28:0x30], "little"),
        int.from_bytes(elf[0x3C:0x3E], "little"),
    )
    table = bytearray(elf[shoff : shoff + 64 * shnum])
    table[4:8] = section_0_type.to_bytes(4, "little")
    rng = random.Random(filler)
    text = b"\n".join(rng.randbytes(24).hex().encode() for _ in range(filler // 49))
    body = bytearray(elf) + text + bytes(-(len(elf) + len(text)) % 8)
    body[0x28:0x30] = len(body).to_bytes(8, "little")
    return bytes(body + table)


@pytest.mark.parametrize("section_0_type", [0, 1])
def test_far_reads_are_checked_against_the_files_layout(
    server: Upstream, elf_objects: Objects, tmp_path: Path, section_0_type: int
) -> None:
    # With section 0 not null the layout is doubtful: the member is read again from
    # its start, and the report is still the one a forward read gives.
    library = section_headers_moved_to_the_end(
        elf_objects.fatbin.read_bytes(), 2_000_000, section_0_type=section_0_type
    )
    spec = WheelSpec(
        "far", "1.0", tag="py3-none-manylinux_2_17_x86_64", files={"far/libk.so": library}
    )
    wheel = build_wheel(spec, tmp_path)
    server.add("far", wheel)
    report, remote = by_url(server.file_url(wheel.name), wheel.name)
    assert report == by_file(wheel)
    assert report.requires.gpu_sms == ("8.0", "8.6", "9.0")
    size = wheel.stat().st_size
    if section_0_type == 0:
        assert remote.fetched < size * 0.5  # the head and the tail
    else:
        assert remote.fetched > size * 0.9  # read again, whole
