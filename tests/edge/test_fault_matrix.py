"""Issue 10's fault matrix: where each of its 27 rows is shown, and here the rows (or the
parts of rows) that no other test showed.

Paths are under ``tests/``; "here:" is this file; "the soak" mixes rows 1-6, 20 and 26
under load, with a cache budget small enough that eviction runs. Every test here that
runs a server ends with the after-row checks (nothing corrupt cached, no temp file, no
traceback in the log), as do edge/test_faults_upstream.py, edge/test_faults_files.py,
edge/test_cache_budget.py and the soak; older tests check what their row names.

 1  upstream 500/503: stale page, else 502 naming the upstream (redacted) and its status
    edge/test_serving.py::test_upstream_down_serves_last_good_page
    edge/test_serving.py::test_broken_upstream_page_is_502
    edge/test_serving.py::test_upstream_file_error_names_the_file
    edge/test_faults_upstream.py::test_transient_statuses_are_retried_with_backoff
    edge/test_secrets.py::test_upstream_credentials_are_used_and_never_shown (redacted)
    here: test_row1_a_wheel_whose_upstream_fails_is_served_once_upstream_is_back
    the soak: edge/test_soak.py::test_soak
 2  upstream hangs: stale page or 504 within the deadline
    edge/test_faults_upstream.py::test_hanging_upstream_gives_stale_page_or_504_within_deadline
    edge/test_serving.py::test_upstream_timeout_is_504_naming_upstream
    here: test_row2_a_hanging_upstream_is_504_for_files_and_metadata_within_the_deadline
    the soak: edge/test_soak.py::test_soak
 3  a drip on a page or a file: a total deadline; a download nobody follows stops
    edge/test_faults_upstream.py::test_dripping_page_meets_the_total_deadline
    edge/test_faults_files.py::test_a_drip_with_no_byte_sent_yet_is_504_at_the_deadline
    edge/test_faults_files.py::test_a_drip_after_bytes_were_sent_fails_the_transfer_visibly
    edge/test_faults_files.py::test_a_download_stops_when_no_client_is_left
    edge/test_faults_files.py::test_a_download_goes_on_while_one_client_follows_it
    here: test_row3_dripping_metadata_meets_the_file_deadline
    the soak: edge/test_soak.py::test_soak
 4  body cut short, wrong Content-Length, reset: fails visibly, nothing cached
    edge/test_faults_files.py::test_a_body_cut_once_is_resumed_with_a_range_request
    edge/test_faults_files.py::test_a_body_always_cut_fails_visibly_and_is_never_cached
    edge/test_serving.py::test_bad_upstream_bytes_abort_the_transfer_and_are_never_cached
    edge/test_faults_upstream.py::test_resets_before_and_during_an_answer_are_retried
    here: test_row4_a_content_length_that_lies_fails_the_transfer_visibly
    here: test_row4_a_connection_reset_mid_file_fails_visibly
    here: test_row4_a_range_past_a_lying_content_length_is_a_failure_not_a_416
    the soak: edge/test_soak.py::test_soak
 5  file bytes differ from the index's sha256: both hashes named, nothing cached
    edge/test_serving.py::test_bad_upstream_bytes_abort_the_transfer_and_are_never_cached
    here: test_row5_a_hash_mismatch_names_both_hashes_and_caches_nothing
    here: test_row5_a_range_is_never_complete_before_the_file_is_verified
    the soak: edge/test_soak.py::test_soak
 6  .metadata differs from its advertised hash: an error, nothing cached
    edge/test_serving.py::test_metadata_lying_upstream_is_refused
    here: test_row6_lying_metadata_is_refused_and_never_cached
    the soak: edge/test_soak.py::test_soak
 7  zip bombs: analysis stops within its budget, the report says why
    analysis/test_hostile.py::test_zip_bomb_by_compression_ratio
    analysis/test_hostile.py::test_overlapping_members
    analysis/test_hostile.py::test_declared_size_larger_than_the_data
    analysis/test_hostile.py::test_member_larger_than_allowed
    analysis/test_hostile.py::test_inflating_beyond_the_total_budget
    analysis/test_hostile.py::test_a_directory_claiming_too_many_members
    analysis/test_hostile.py::test_zip64_member_count_is_bounded
    analysis/test_fuzz.py::test_mutated_zip
 8  member names with ../, absolute paths, backslashes, NUL, duplicates
    analysis/test_hostile.py::test_unsafe_names
    analysis/test_hostile.py::test_duplicate_names
    here: test_row8_backslash_and_nul_member_names_are_refused
    here: test_row8_a_served_wheel_with_hostile_names_writes_nothing_outside_the_cache
 9  ELF with bogus offsets, huge counts, zero entry sizes: unanalysable in under 1 s
    analysis/test_hostile.py::test_lying_elf
    analysis/test_fuzz.py::test_mutated_elf
    here: test_row9_every_lying_elf_is_unanalysable_within_a_second_of_cpu
10  ELF that exhausts memory or CPU: the worker is limited and killed
    analysis/test_pool.py::test_a_lost_worker_becomes_an_unanalysable_report
    analysis/test_pool.py::test_a_worker_killed_from_outside
    analysis/test_pool.py::test_a_crash_does_not_disturb_other_workers
11  a .so that is not ELF (text, Mach-O, empty): skipped with a note (Mach-O recorded)
    analysis/test_hostile.py::test_a_non_elf_shared_object
    analysis/test_native.py::test_a_shared_object_that_is_no_binary_is_skipped_with_a_note
    analysis/test_native.py::test_a_wheel_for_other_platforms
12  non-canonical project names: one redirect, one cache entry
    edge/test_serving.py::test_non_canonical_names_redirect
    here: test_row12_every_spelling_is_one_redirect_to_one_cache_entry
13  `..`, `%2F`, CRLF, non-ASCII, 10 KB names: 400/404, nothing upstream
    edge/test_serving.py::test_invalid_names_never_reach_upstream
    here: test_row13_hostile_names_are_400_or_404_and_never_reach_the_upstream
14  a link or redirect to another origin, file:, a loopback port, link-local
    edge/test_origins.py::test_links_elsewhere_leave_the_page_and_nothing_is_fetched_there
    edge/test_origins.py::test_explain_names_what_was_left_off_and_why
    edge/test_origins.py::test_a_page_redirected_elsewhere_is_not_followed
    core/test_origins.py::test_refusal
    analysis/test_pool.py::test_analysis_by_url_stays_on_the_allowed_origins
    here: test_row14_file_scheme_and_link_local_are_never_fetched
15  upstream TLS certificate not trusted: 502 that says so
    edge/test_private_upstreams.py::
      test_a_private_ca_is_refused_without_its_bundle_and_trusted_with_it
16  hostile User-Agent and profile headers: no 500
    edge/test_faults_upstream.py::test_hostile_request_headers_never_cause_500
    edge/test_host_filter.py::test_malformed_user_agent_is_ignored
    edge/test_host_filter.py::test_malformed_profile_is_400_naming_it
17  CRLF, quotes, markup, /, non-ASCII in upstream filenames, reasons, texts, headers
    edge/test_faults_upstream.py::test_hostile_upstream_text_is_dropped_or_escaped
    edge/test_faults_upstream.py::test_non_latin1_failure_text_keeps_the_stale_page_served
    core/test_pages.py::test_one_bad_file_entry_never_costs_the_page
    core/test_pages.py::test_upstream_text_is_escaped_in_html
    e2e/test_ui_browser.py::test_upstream_markup_shows_as_text_and_never_runs
18  a project page with 20,000 files: within the memory and latency budget
    here: test_row18_a_page_with_twenty_thousand_files
19  a 5 GB file: flat memory (1 GB in CI)
    edge/test_memory.py::test_two_gigabytes_with_flat_memory
    edge/test_cache_budget.py::test_a_file_too_big_to_cache_streams_with_flat_memory
20  200 concurrent first requests for one wheel: one upstream GET
    edge/test_faults_files.py::test_two_hundred_concurrent_first_requests_make_one_download
    edge/test_serving.py::test_concurrent_first_requests_make_one_download
    the soak: edge/test_soak.py::test_soak
21  Redis killed or frozen mid-run
    edge/test_redis_faults.py::test_frozen_or_killed_redis_under_a_running_proxy
    edge/test_redis_faults.py::test_breaker_opens_at_once_and_closes_when_redis_answers
22  disk full, a file larger than the free space: streamed uncached
    edge/test_cache_budget.py::test_a_file_larger_than_the_free_space_is_still_delivered
    edge/test_cache_budget.py::test_a_disk_filled_mid_download_breaks_no_follower
    edge/test_cache_budget.py::test_a_write_the_kernel_refuses_streams_the_file_uncached
23  proxy killed mid-download, restarted: no partial file served, swept at start
    edge/test_restart.py::test_kill_mid_download_then_restart
    here: test_a_stop_while_a_downloaded_wheel_is_analysed_logs_no_traceback
24  yanked files: reason kept exactly; pip skips them unless pinned
    edge/test_serving.py::test_every_upstream_key_survives
    edge/test_faults_upstream.py::test_hostile_upstream_text_is_dropped_or_escaped
    here: test_row24_pip_skips_a_yanked_file_unless_pinned_and_sees_its_reason
25  rewritten wheels: consistent everywhere; --require-hashes works
    edge/test_rewrite_serving.py::test_a_metadata_fix_is_reflected_everywhere
    edge/test_rewrite_serving.py::test_a_replica_without_the_blob_rebuilds_the_same_bytes
    e2e/test_rewrites.py::test_require_hashes_with_hashes_copied_from_the_page
    e2e/test_rewrites.py::test_two_processes_with_separate_caches_make_the_same_bytes
    e2e/test_install.py::test_pip_require_hashes_with_hashes_from_the_page
26  a file evicted while being downloaded: the download completes
    edge/test_faults_files.py::test_a_cached_file_evicted_while_served_arrives_whole
    edge/test_faults_files.py::test_eviction_here_passes_over_a_file_being_served
    edge/test_faults_files.py::test_a_download_whose_file_is_evicted_as_it_lands_completes
    edge/test_cache_budget.py::test_a_blob_open_for_reading_is_never_evicted
    the soak: edge/test_soak.py::test_soak
27  credentials in upstream URLs: never in logs, bodies, headers, metrics, keys
    edge/test_secrets.py::test_upstream_credentials_are_used_and_never_shown
    edge/test_secrets.py::test_redis_password_is_never_shown
    edge/test_private_upstreams.py::test_private_upstream_and_its_file_host
    core/test_redact.py::test_redact
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import platform
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import proxy.edge.scheduler as scheduler_module
from proxy.analysis.wheel import analyze_wheel
from proxy.core.negotiate import JSON_V1
from tests.analysis.hostile import FILENAME, Elf64, patch, zip_bytes
from tests.analysis.test_hostile import ELF_CASES
from tests.edge.fault_checks import Faults, assert_cache_sound, assert_clean, serve, state_keys
from tests.fixtures.elf.recipes import source as recipe_source
from tests.support.clients import clean_env, run
from tests.support.proxy import ProxyProcess, ProxyThread
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.wheels import WheelSpec, build_wheel, compile_shared_object, extension_wheel

JSON = {"Accept": JSON_V1}
HOST = "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.36"
# A host this machine is: a compiled wheel built here fits it.
THIS_HOST = (
    f"python={sys.version_info.major}.{sys.version_info.minor},impl=cp,"
    f"arch={platform.machine()},libc=glibc-{platform.libc_ver()[1]}"
)
CHUNK = 64 * 1024


@pytest.fixture
def elsewhere() -> Iterator[Upstream]:
    """Another server on another port: it must never see a request."""
    with Upstream() as server:
        yield server


def blobs(cache: Path) -> set[str]:
    return {p.name for p in (cache / "files" / "sha256").rglob("*") if p.is_file()}


def timed_get(url: str, **kwargs: object) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = httpx.get(url, timeout=60, **kwargs)  # type: ignore[arg-type]
    return time.monotonic() - started, response


# --- row 1 at the gate: an analysis that could not run is tried again -----------------


def test_row1_a_wheel_whose_upstream_fails_is_served_once_upstream_is_back(
    upstream: Upstream,
    make_proxy: Callable[..., ProxyThread],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the upstream fails the file, the walk's analysis by URL cannot run and the
    download fails: each try is the upstream's 502, not a wait for an analysis. Once the
    upstream is well, the next try downloads it, judged from its checked bytes (it once
    got 503 for ten minutes, however well the upstream was)."""
    monkeypatch.setattr(scheduler_module, "RETRY_SECONDS", 1.0)
    wheel = extension_wheel("fit", "1.0", tmp_path / "dist")
    upstream.add("fit", wheel)
    upstream.errors[f"/files/{wheel.name}"] = 500  # downloads and range reads alike
    proxy = make_proxy(upstream, analysis_workers=1, analysis_budget=0.0)
    assert httpx.get(proxy.url + f"p/{THIS_HOST}/simple/fit/", headers=JSON).status_code == 200
    gated = proxy.url + f"p/{THIS_HOST}/files/fit/{wheel.name}"
    deadline = time.monotonic() + 60
    while not upstream.count("GET", f"/files/{wheel.name}"):  # the walk tried it
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for _ in range(3):
        held = httpx.get(gated, timeout=60)
        assert held.status_code == 502 and "HTTP 500" in held.text, held.text
    del upstream.errors[f"/files/{wheel.name}"]
    served = httpx.get(gated, timeout=60)
    assert served.status_code == 200 and served.content == wheel.read_bytes()
    assert_cache_sound(proxy.settings.cache_dir)


# --- rows 2 and 3 for files and .metadata: hangs and drips meet the file deadline ------


def test_row2_a_hanging_upstream_is_504_for_files_and_metadata_within_the_deadline(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path
) -> None:
    upstream, _ = faulty
    upstream.add("demo-pkg", demo_wheel)
    cache = tmp_path / "cache"
    args = ("--file-deadline", "2", "--upstream-deadline", "2")
    with serve(upstream.url, cache, *args, timeout=30) as proxy:
        page = httpx.get(proxy.url + "simple/demo-pkg/", headers=JSON, timeout=30)
        assert page.status_code == 200
        upstream.hang = 20.0  # past the read timeout too: only a deadline ends the wait
        for path in (
            f"files/demo-pkg/{demo_wheel.name}",
            f"files/demo-pkg/{demo_wheel.name}.metadata",
        ):
            elapsed, response = timed_get(proxy.url + path)
            assert response.status_code == 504, (path, response.text)
            assert "deadline" in response.text, response.text
            assert elapsed < 2 + 2 + 3, elapsed  # the page's deadline (stale), then the file's
        upstream.hang = 0.0
        assert blobs(cache) == set()
        assert (
            httpx.get(proxy.url + f"files/demo-pkg/{demo_wheel.name}").content
            == demo_wheel.read_bytes()
        )
    assert_clean(proxy, cache)


def test_row3_dripping_metadata_meets_the_file_deadline(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path
) -> None:
    upstream, faults = faulty
    item = upstream.add("demo-pkg", demo_wheel)
    cache = tmp_path / "cache"
    path = f"/files/{demo_wheel.name}.metadata"
    with serve(upstream.url, cache, "--file-deadline", "2", timeout=30) as proxy:
        faults.drip[path] = 0.2  # every byte well inside the read timeout
        elapsed, response = timed_get(proxy.url + f"files/demo-pkg/{demo_wheel.name}.metadata")
        assert response.status_code == 504, response.text
        assert "deadline" in response.text and demo_wheel.name in response.text
        assert elapsed < 6
        assert state_keys(cache, "metadata:") == [] and blobs(cache) == set()
        del faults.drip[path]
        metadata = httpx.get(proxy.url + f"files/demo-pkg/{demo_wheel.name}.metadata")
        assert metadata.status_code == 200 and metadata.content == item.metadata
    assert_clean(proxy, cache)


# --- row 4: a wrong Content-Length, a reset mid-file ---------------------------------


class LyingLength:
    """Outermost ASGI layer: answers for one path declare a wrong Content-Length.

    ``short``: the header says ``by`` bytes fewer than the file, and that many come (a
    clean, complete answer of the wrong size). ``long``: it says ``by`` bytes more than
    come, and the connection is then held open, as a stalled server would.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.path: str | None = None
        self.mode = "short"
        self.by = 1000

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        declared = len(body) - self.by if self.mode == "short" else len(body) + self.by
        sent = body[:declared] if self.mode == "short" else body
        start = dict(messages[0])
        start["headers"] = [h for h in start["headers"] if h[0].lower() != b"content-length"]
        start["headers"].append((b"content-length", str(declared).encode()))
        await send(start)
        await send({"type": "http.response.body", "body": sent, "more_body": self.mode == "long"})
        if self.mode == "long":
            while (await receive())["type"] != "http.disconnect":
                pass


class ResettingFront:
    """A TCP relay in front of an upstream that resets (RST) every connection on which
    ``filename`` was asked for, once ``after`` bytes of the answer have gone through."""

    def __init__(self, target_port: int, filename: str, after: int) -> None:
        self.target_port = target_port
        self.filename = filename.encode()
        self.after = after
        self.active = True
        self.resets = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        """One thread per connection, so that closing it really sends the RST (a socket
        another thread is blocked on is not released by close)."""
        target = socket.create_connection(("127.0.0.1", self.target_port))
        asked, passed = False, 0
        try:
            while True:
                readable, _, _ = select.select([client, target], [], [], 60)
                if not readable:
                    return
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        return
                    asked = asked or (self.active and self.filename in data)
                    target.sendall(data)
                if target in readable:
                    data = target.recv(65536)
                    if not data:
                        return
                    if asked and passed + len(data) >= self.after:
                        client.sendall(data[: self.after - passed])
                        client.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        self.resets += 1
                        return  # closed below: RST, not FIN
                    passed += len(data) if asked else 0
                    client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(target)

    def close(self) -> None:
        self.server.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def fails_visibly(url: str, size: int) -> int:
    """Bytes received before the transfer broke; fails the test if it completes."""
    received = 0
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_raw():
            received += len(chunk)
    assert received < size
    return received


@pytest.mark.parametrize("mode", ["short", "long"])
def test_row4_a_content_length_that_lies_fails_the_transfer_visibly(
    tmp_path: Path, mode: str
) -> None:
    server = Upstream()
    lies = LyingLength(server.app)
    server.app = lies
    data = random.Random(4).randbytes(8 * CHUNK)
    with server:
        item = server.add("lying", UpstreamFile("lying-1.0.tar.gz", content=data))
        lies.path, lies.mode = f"/files/{item.filename}", mode
        cache = tmp_path / "cache"
        # A stalled answer is given up after the read timeout (2 s).
        with serve(server.url, cache, timeout=2) as proxy:
            url = proxy.url + f"files/lying/{item.filename}"
            declared = len(data) - lies.by if mode == "short" else len(data) + lies.by
            fails_visibly(url, declared)
            assert blobs(cache) == set()
            lies.path = None
            assert httpx.get(url, timeout=60).content == data  # the next request fetches again
            assert blobs(cache) == {item.sha256}
            log = proxy.output()
    assert (
        "sha256 mismatch" if mode == "short" else f"downloading {item.filename}: timed out"
    ) in log, log
    assert_clean(proxy, cache)


@pytest.mark.parametrize("ranges", [True, False])
def test_row4_a_connection_reset_mid_file_fails_visibly(tmp_path: Path, ranges: bool) -> None:
    data = random.Random(5).randbytes(16 * CHUNK)
    with Upstream() as upstream:
        upstream.url_style = "relative"  # files through the relay too
        upstream.ranges = ranges
        item = upstream.add("reset", UpstreamFile("reset-1.0.tar.gz", content=data))
        port = int(upstream.origin.rsplit(":", 1)[1])
        front = ResettingFront(port, item.filename, after=len(data) // 3)
        cache = tmp_path / "cache"
        try:
            with serve(f"http://127.0.0.1:{front.port}/simple/", cache) as proxy:
                url = proxy.url + f"files/reset/{item.filename}"
                fails_visibly(url, len(data))
                # Resumed with Range while the upstream serves ranges, reset every time.
                assert front.resets == (3 if ranges else 1)
                assert blobs(cache) == set()
                front.active = False
                assert httpx.get(url, timeout=60).content == data
                assert blobs(cache) == {item.sha256}
        finally:
            front.close()
    assert_clean(proxy, cache)


# --- row 5: file bytes that differ from the index's sha256 ---------------------------


def test_row5_a_hash_mismatch_names_both_hashes_and_caches_nothing(
    upstream: Upstream, tmp_path: Path
) -> None:
    data = random.Random(6).randbytes(8 * CHUNK)
    item = upstream.add("flipped", UpstreamFile("flipped-1.0.tar.gz", content=data))
    upstream.corrupt.add(item.filename)
    served = bytearray(data)
    served[len(data) // 2] ^= 0xFF  # what the test upstream's corruption does
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        url = proxy.url + f"files/flipped/{item.filename}"
        for _ in range(2):  # every time: no bad byte cached, none served as complete
            fails_visibly(url, len(data))
        assert blobs(cache) == set()
        upstream.corrupt.clear()
        assert httpx.get(url, timeout=60).content == data
        log = proxy.output()
    wrong = hashlib.sha256(bytes(served)).hexdigest()
    assert f"sha256 mismatch: index says {item.sha256}, got {wrong}" in log, log
    assert_clean(proxy, cache)


def cut_or_absent(url: str, span: str) -> None:
    """A Range request that must not complete: its bytes come from a download that fails."""
    with httpx.stream("GET", url, headers={"Range": span}, timeout=60) as response:
        if response.status_code >= 500:
            return
        assert response.status_code == 206, response.status_code
        with pytest.raises(httpx.HTTPError):
            response.read()


def test_row5_a_range_is_never_complete_before_the_file_is_verified(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Ranges served from a download in progress wait for the digest, like whole files:
    a flipped byte inside the range, or anywhere in the file, fails the transfer."""
    data = random.Random(7).randbytes(16 * CHUNK)
    item = upstream.add("flipped", UpstreamFile("flipped-1.0.tar.gz", content=data))
    upstream.corrupt.add(item.filename)
    upstream.slow_files[item.filename] = 0.05
    middle = len(data) // 2  # where the test upstream flips a byte
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        url = proxy.url + f"files/flipped/{item.filename}"
        cut_or_absent(url, f"bytes={middle - 10}-{middle + 10}")
        cut_or_absent(url, "bytes=0-999")
        assert blobs(cache) == set()
        upstream.corrupt.clear()
        part = httpx.get(url, headers={"Range": "bytes=0-999"}, timeout=60)
        assert part.status_code == 206 and part.content == data[:1000]
    assert_clean(proxy, cache)


def test_row4_a_range_past_a_lying_content_length_is_a_failure_not_a_416(
    tmp_path: Path,
) -> None:
    server = Upstream()
    lies = LyingLength(server.app)
    server.app = lies
    data = random.Random(8).randbytes(8 * CHUNK)
    with server:
        item = server.add("lying", UpstreamFile("lying-1.0.tar.gz", content=data))
        lies.path = f"/files/{item.filename}"
        cache = tmp_path / "cache"
        span = f"bytes={len(data) - 500}-{len(data) - 100}"  # past the length it declares
        with serve(server.url, cache) as proxy:
            url = proxy.url + f"files/lying/{item.filename}"
            refused = httpx.get(url, headers={"Range": span}, timeout=60)
            assert refused.status_code == 502, (refused.status_code, refused.headers)
            assert "sha256 mismatch" in refused.text
            lies.path = None
            part = httpx.get(url, headers={"Range": span}, timeout=60)
            assert part.status_code == 206 and part.content == data[-500:-99]
    assert_clean(proxy, cache)


# --- row 6: .metadata that differs from its advertised hash --------------------------


def test_row6_lying_metadata_is_refused_and_never_cached(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path
) -> None:
    item = upstream.add("demo-pkg", demo_wheel)
    assert item.metadata is not None
    good = item.metadata
    advertised = {"sha256": hashlib.sha256(good).hexdigest()}
    item.extra["core-metadata"] = item.extra["dist-info-metadata"] = advertised
    evil = b"Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.0\nRequires-Dist: evil\n"
    item.metadata = evil  # served; the page still advertises the good one
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        url = proxy.url + f"files/demo-pkg/{demo_wheel.name}.metadata"
        for _ in range(2):
            refused = httpx.get(url, timeout=60)
            assert refused.status_code == 502
            assert advertised["sha256"] in refused.text
            assert hashlib.sha256(evil).hexdigest() in refused.text
        assert state_keys(cache, "metadata:") == [] and blobs(cache) == set()
        item.metadata = good
        served = httpx.get(url, timeout=60)
        assert served.status_code == 200 and served.content == good
        assert blobs(cache) == {advertised["sha256"]}
        assert state_keys(cache, "metadata:") == [f"metadata:{item.sha256}"]
    assert_clean(proxy, cache)


# --- row 8: hostile member names ------------------------------------------------------

NUL_MARK = b"pkg/evil#.so"


def with_nul(data: bytes) -> bytes:
    """The zip with ``#`` in NUL_MARK turned into a NUL, in both of its headers."""
    assert data.count(NUL_MARK) == 2
    return data.replace(NUL_MARK, NUL_MARK.replace(b"#", b"\0"))


@pytest.fixture(scope="module")
def shared_object(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real ELF shared object (needs GLIBC_2.25), to put in hostile wheels."""
    out = tmp_path_factory.mktemp("elf") / "getrandom.so"
    return compile_shared_object(recipe_source("getrandom.c"), out).read_bytes()


UNSAFE_NAMES = [
    "pkg\\..\\..\\evil.so",  # backslashes: a Windows extractor's separators
    "\\abs\\evil.so",
    "C:\\evil.so",
    "pkg/..\\..\\evil.so",
]


@pytest.mark.parametrize("name", [*UNSAFE_NAMES, "NUL"])
def test_row8_backslash_and_nul_member_names_are_refused(shared_object: bytes, name: str) -> None:
    if name == "NUL":
        data = with_nul(zip_bytes({NUL_MARK.decode(): shared_object}))
    else:
        data = zip_bytes({name: shared_object})
    report = analyze_wheel(io.BytesIO(data), FILENAME, "0" * 64)
    assert report.status == "unanalysable"
    assert "unsafe member name" in (report.reason or ""), report.reason


def test_row8_a_served_wheel_with_hostile_names_writes_nothing_outside_the_cache(
    upstream: Upstream, shared_object: bytes, tmp_path: Path
) -> None:
    members = [("pkg/../../../evil.so", shared_object), ("/tmp/evil-abs.so", shared_object)]
    members += [("pkg\\..\\..\\evil-back.so", shared_object), ("pkg/_ok.so", shared_object)]
    members += [("pkg/_ok.so", b"duplicate")]
    hostile = {
        "dots": zip_bytes(members[:1]),
        "absolute": zip_bytes(members[1:2]),
        "backslash": zip_bytes(members[2:3]),
        "nul": with_nul(zip_bytes({NUL_MARK.decode(): shared_object})),
        "duplicate": zip_bytes(members[3:]),
    }
    for minor, data in enumerate(hostile.values()):
        filename = FILENAME.replace("-1.0-", f"-1.{minor}-")
        upstream.add("hostile", UpstreamFile(filename, content=data))
    filenames = {f.filename for f in upstream.files("hostile")}
    run = tmp_path / "run"  # the cache, and the log beside it
    cache = run / "cache"
    run.mkdir()

    def outside() -> list[Path]:
        return sorted(p for p in tmp_path.rglob("*") if p != run and run not in p.parents)

    before = outside()
    with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as proxy:
        page = httpx.get(proxy.url + f"p/{HOST}/simple/hostile/", headers=JSON, timeout=60)
        assert page.status_code == 200, page.text
        for filename in filenames:  # cached whole, then analysed from the cached file
            download = httpx.get(proxy.url + f"files/hostile/{filename}", timeout=60)
            assert download.status_code == 200
        deadline = time.monotonic() + 60
        while True:
            explained = httpx.get(
                proxy.url + "explain/hostile/", params={"profile": HOST, "format": "json"}
            ).json()
            if all(f["report"] for f in explained["files"]):
                break
            assert time.monotonic() < deadline, explained
            time.sleep(0.2)
    reports = {f["filename"]: f for f in explained["files"]}
    assert set(reports) == filenames
    for entry in reports.values():
        assert entry["report"] == "unanalysable", entry
        reason = entry["report_reason"]
        assert "unsafe member name" in reason or "duplicate member name" in reason, entry
    assert outside() == before
    assert not any("evil" in p.name for p in cache.rglob("*"))
    assert not Path("/tmp/evil-abs.so").exists()
    assert_clean(proxy, cache)


# --- row 9: ELF with bogus offsets, huge counts, zero entry sizes ---------------------


def test_row9_every_lying_elf_is_unanalysable_within_a_second_of_cpu(
    shared_object: bytes,
) -> None:
    elf = Elf64(shared_object)
    cases = [*ELF_CASES, ("zero phentsize", lambda e: patch(e.data, 0x36, "<H", 0), "size 0")]
    for case, make, reason in cases:
        data = zip_bytes({"pkg/_ext.so": make(elf)})
        started = time.process_time()
        report = analyze_wheel(io.BytesIO(data), FILENAME, "0" * 64)
        spent = time.process_time() - started
        assert report.status == "unanalysable" and reason in (report.reason or ""), case
        assert spent < 1.0, (case, spent)


# --- row 12: non-canonical project names ----------------------------------------------


def test_row12_every_spelling_is_one_redirect_to_one_cache_entry(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path
) -> None:
    upstream.add("demo-pkg", demo_wheel)
    cache = tmp_path / "cache"
    spellings = ["Demo_Pkg", "demo.pkg", "DEMO--pkg", "demo_pkg", "Demo-PKG", "demo-pkg"]
    with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as proxy:
        pages = []
        for spelling in spellings:
            for accept in (JSON, {"Accept": "text/html"}):
                first = httpx.get(proxy.url + f"simple/{spelling}/", headers=accept)
                if spelling == "demo-pkg":
                    assert first.status_code == 200
                    continue
                assert first.status_code == 301, spelling
                assert first.headers["location"] == "/simple/demo-pkg/"
                second = httpx.get(proxy.url + "simple/demo-pkg/", headers=accept)
                assert second.status_code == 200  # one redirect, no chain
                pages.append(second.text)
    assert upstream.count("GET", "/simple/demo-pkg/") == 1
    assert [r.path for r in upstream.requests] == ["/simple/demo-pkg/"]
    assert len(state_keys(cache, "page:")) == 1
    assert_clean(proxy, cache)


# --- row 13: hostile names in request paths ---------------------------------------------


def raw_get(port: int, target: bytes) -> tuple[int, bytes]:
    """GET with the request target exactly as given (httpx would normalise it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, _ = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head


LONG = b"a" * 10_240
HOSTILE_TARGETS = [
    b"/simple/../etc/passwd/",
    b"/simple/..%2F..%2Fetc%2Fpasswd/",
    b"/simple/a%2Fb/",
    b"/simple/%2e%2e/",
    b"/simple/x%0D%0AX-Injected:%201/",
    b"/simple/x%0AX-Injected:%201/",
    b"/simple/caf\xc3\xa9/",
    b"/simple/%C3%A9t%C3%A9/",
    b"/simple/" + LONG + b"/",
    b"/universal/simple/..%2Fx/",
    b"/p/python=3.11/simple/x%0D%0AX-Injected:%201/",
    b"/files/" + LONG + b"/x-1.0.tar.gz",
    b"/files/..%2F..%2Fetc/passwd",
    b"/files/demo-pkg/..%2F..%2Fetc%2Fpasswd",
    b"/files/demo-pkg/x%0D%0AX-Injected:%201-1.0.tar.gz",
    b"/files/demo-pkg/" + LONG + b".whl",
    b"/files/demo-pkg/\xc3\xa9-1.0.tar.gz.metadata",
    b"/explain/..%2Fx/",
]


def test_row13_hostile_names_are_400_or_404_and_never_reach_the_upstream(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path
) -> None:
    upstream.add("demo-pkg", demo_wheel)
    cache = tmp_path / "cache"
    with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as proxy:
        for target in HOSTILE_TARGETS:
            status, head = raw_get(proxy.port, target)
            assert status in (400, 404), (target[:80], head)
            assert b"x-injected" not in head.lower()
        assert httpx.get(proxy.url + "healthz").status_code == 200
    # Only the real project's page, looked up for the hostile file names.
    assert {r.path for r in upstream.requests} <= {"/simple/demo-pkg/"}
    assert_clean(proxy, cache)


# --- row 14: links and redirects to file:, link-local and other origins ---------------


def test_row14_file_scheme_and_link_local_are_never_fetched(
    upstream: Upstream, elsewhere: Upstream, wheel_dir: Path, tmp_path: Path
) -> None:
    built = {
        v: build_wheel(WheelSpec("x", v, files={"x/__init__.py": v.encode()}), wheel_dir)
        for v in ("1.0", "1.1", "1.2", "1.3", "1.4")
    }
    upstream.add("x", built["1.0"])
    upstream.add("x", built["1.1"], url=f"file:///etc/{built['1.1'].name}")
    for version, target in (
        ("1.2", "file:///etc/passwd"),
        ("1.3", "http://169.254.169.254/latest/meta-data/"),
        ("1.4", elsewhere.file_url(built["1.4"].name)),
    ):
        upstream.add("x", built[version])
        upstream.redirects[f"/files/{built[version].name}"] = target
        upstream.redirects[f"/files/{built[version].name}.metadata"] = target
    elsewhere.add("x", built["1.4"])
    cache = tmp_path / "cache"
    with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as proxy:
        page = httpx.get(proxy.url + "simple/x/", headers=JSON).json()
        listed = {f["filename"] for f in page["files"]}
        assert built["1.1"].name not in listed and built["1.0"].name in listed
        assert httpx.get(proxy.url + f"files/x/{built['1.1'].name}").status_code == 404
        for version in ("1.2", "1.3", "1.4"):
            for suffix in ("", ".metadata"):
                elapsed, response = timed_get(proxy.url + f"files/x/{built[version].name}{suffix}")
                assert response.status_code == 502, (version, suffix, response.text)
                assert "refused" in response.text
                assert elapsed < 5  # refused at the hop, no connection attempted
        log = proxy.output()
    assert "scheme 'file' is never fetched" in log
    assert "a link-local or cloud metadata address is never fetched" in log
    assert elsewhere.requests == []
    assert blobs(cache) == set()
    assert_clean(proxy, cache)


# --- row 18: a project page with 20,000 files -----------------------------------------

PIP_AGENT = (
    'pip/24.0 {"installer": {"name": "pip", "version": "24.0"}, "python": "3.11.7", '
    '"implementation": {"name": "CPython", "version": "3.11.7"}, "distro": {"name": '
    '"Debian GNU/Linux", "libc": {"lib": "glibc", "version": "2.36"}}, "cpu": "x86_64", '
    '"system": {"name": "Linux", "release": "6.1"}}'
)
PLATFORMS = [
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "musllinux_1_1_x86_64",
    "macosx_11_0_arm64",
    "win_amd64",
]
# The benchmark's budgets (README, Benchmarks): a cached page costs lookups, not work,
# and the server stays near its 101 MiB peak for a 4,415-file page. Wide margins: this
# runs on a shared 2-core machine.
FIRST_PAGE_SECONDS = 20.0
CACHED_PAGE_SECONDS = 1.0
PEAK_RSS = 256 * 1024 * 1024


@pytest.mark.heavy
def test_row18_a_page_with_twenty_thousand_files(upstream: Upstream, tmp_path: Path) -> None:
    # Every file the same small wheel: one report for them all, so the walk settles at
    # the newest version (bytes that are no wheel would be unanalysable, hidden, and
    # walked past, version after version, deciding the page anew at each report).
    content = build_wheel(WheelSpec("many", "1.0"), tmp_path / "wheel").read_bytes()
    count = 0
    for i in range(800):
        version = f"1.{i // 100}.{i % 100}"
        for py in ("cp39", "cp310", "cp311", "cp312", "cp313"):
            for tag in PLATFORMS:
                name = f"many-{version}-{py}-{py}-{tag}.whl"
                upstream.add("many", UpstreamFile(name, content=content))
                count += 1
    assert count == 20_000
    views = [
        ("simple/many/", JSON),
        ("simple/many/", {"Accept": "text/html"}),
        ("simple/many/", {"Accept-Encoding": "gzip"}),
        ("simple/many/", {"User-Agent": PIP_AGENT}),
        (f"p/{HOST}/simple/many/", JSON),
    ]
    cache = tmp_path / "cache"
    with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as proxy:
        for path, headers in views:
            elapsed, first = timed_get(proxy.url + path, headers=headers)
            assert first.status_code == 200 and elapsed < FIRST_PAGE_SECONDS, (path, elapsed)
            cached = sorted(timed_get(proxy.url + path, headers=headers)[0] for _ in range(5))
            assert cached[2] < CACHED_PAGE_SECONDS, (path, headers, cached)
        page = httpx.get(proxy.url + "simple/many/", headers=JSON, timeout=60).json()
        assert len(page["files"]) == count
        filtered = httpx.get(proxy.url + f"p/{HOST}/simple/many/", headers=JSON).json()
        assert {f["filename"].split("-")[2] for f in filtered["files"]} == {"cp311"}
        peak = proxy.memory("VmHWM")
    assert peak < PEAK_RSS, f"peak RSS {peak >> 20} MiB"
    assert upstream.count("GET", "/simple/many/") == 1
    assert_clean(proxy, cache)


# --- row 24: yanked files ---------------------------------------------------------------

YANK_REASON = 'broken "build" <1.1> & worse: use 1.0'


@pytest.mark.e2e
def test_row24_pip_skips_a_yanked_file_unless_pinned_and_sees_its_reason(
    upstream: Upstream, wheel_dir: Path, tmp_path: Path
) -> None:
    good = build_wheel(
        WheelSpec("yanky", "1.0", files={"yanky/__init__.py": b"V = 1\n"}), wheel_dir
    )
    bad = build_wheel(WheelSpec("yanky", "1.1", files={"yanky/__init__.py": b"V = 2\n"}), wheel_dir)
    upstream.add("yanky", good)
    upstream.add("yanky", bad, yanked=YANK_REASON)
    cache = tmp_path / "cache"
    with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as proxy:
        page = httpx.get(proxy.url + "simple/yanky/", headers=JSON).json()
        yanked = {f["filename"]: f.get("yanked", False) for f in page["files"]}
        assert yanked == {good.name: False, bad.name: YANK_REASON}
        html = httpx.get(proxy.url + "simple/yanky/", headers={"Accept": "text/html"}).text
        assert 'data-yanked="broken &quot;build&quot; &lt;1.1&gt; &amp; worse: use 1.0"' in html

        def download(requirement: str) -> tuple[list[str], str]:
            target = tmp_path / requirement.replace("=", "_")
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(target)]
            done = run_pip([*command, "--index-url", proxy.url + "simple/", requirement])
            assert done.returncode == 0, done.stdout + done.stderr
            return sorted(p.name for p in target.iterdir()), done.stdout + done.stderr

        assert download("yanky")[0] == [good.name]
        pinned, output = download("yanky==1.1")
        assert pinned == [bad.name]
        assert f"Reason for being yanked: {YANK_REASON}" in output
    assert_clean(proxy, cache)


def run_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
    return run(command, clean_env(Path(command[command.index("-d") + 1]).parent))


# --- no traceback when the server stops while a download is being analysed ------------


def test_a_stop_while_a_downloaded_wheel_is_analysed_logs_no_traceback(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path
) -> None:
    """A cached wheel is analysed in a worker at once; stopping the server then must
    end that analysis before the state store closes (it once outlived it, and asyncio
    logged the lost exception with a traceback)."""
    upstream.add("demo-pkg", demo_wheel)
    for attempt in range(3):
        cache = tmp_path / f"cache{attempt}"
        with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as proxy:
            url = proxy.url + f"files/demo-pkg/{demo_wheel.name}"
            assert httpx.get(url, timeout=60).content == demo_wheel.read_bytes()
        assert_clean(proxy, cache)
