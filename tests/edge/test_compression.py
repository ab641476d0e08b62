"""gzip, hostfit's one compression (`proxy.edge.compression`): what it makes, read back
only when it is one whole member of a bounded size."""

from __future__ import annotations

import gzip
import hashlib
import json
import platform
import random
import zlib

import pytest

from proxy.edge import compression, offload
from proxy.edge.compression import MAX_MEMBERS, Decoded, content_decoded, gunzipped, gzipped
from tests.edge.test_render import page_like

INSTALLED = compression.inflating


@pytest.fixture(autouse=True, params=["as installed", "zlib"])
def inflating(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test once with what inflates here (ISA-L where it has a wheel), and once
    with zlib, which does it where ISA-L has none."""
    if request.param == "zlib":
        monkeypatch.setattr(compression, "inflating", zlib)
        monkeypatch.setattr(compression, "INFLATE_ERRORS", (zlib.error,))
    return str(request.param)


def test_isal_is_there_where_pyproject_installs_it() -> None:
    installed = platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64")
    assert (compression.igzip is not None) == installed
    assert compression.ENCODER.startswith("isal " if installed else "zlib ")
    assert INSTALLED.__name__ == ("isal.isal_zlib" if installed else "zlib")


def test_an_index_page_compresses_near_zlibs_best_level() -> None:
    if compression.igzip is None:
        pytest.skip("ISA-L's ratio: no isal on this machine (zlib's own levels are used)")
    entries = [
        {
            "filename": f"demo-1.{i}-cp312-cp312-manylinux_2_17_x86_64.whl",
            "url": f"../../files/demo/demo-1.{i}-cp312-cp312-manylinux_2_17_x86_64.whl",
            "hashes": {"sha256": hashlib.sha256(str(i).encode()).hexdigest()},
            "requires-python": ">=3.9",
            "size": 1000 + i,
            "upload-time": f"2024-01-{i % 28 + 1:02d}T00:00:00.000000Z",
        }
        for i in range(2000)
    ]
    body = json.dumps({"name": "demo", "files": entries}).encode()
    best = gzip.compress(body, compresslevel=6, mtime=0)
    assert len(gzipped(body)) <= 1.1 * len(best)


@pytest.mark.parametrize("size", [1000, offload.BIG + 1])
def test_without_isal_zlib_makes_the_gzip(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    body = page_like(size)
    by_default = gzipped(body)
    monkeypatch.setattr(compression, "igzip", None)
    data = gzipped(body)
    level = 6 if size < offload.BIG else 1
    assert data == gzip.compress(body, compresslevel=level, mtime=0)
    assert gunzipped(data, len(body)) == body
    assert (data != by_default) == (compression.ENCODER.startswith("isal "))


@pytest.mark.parametrize("size", [0, 1000, offload.BIG + 1])
def test_what_is_gzipped_reads_back(size: int) -> None:
    body = page_like(size)
    assert gunzipped(gzipped(body), len(body)) == body
    assert gzip.decompress(gzipped(body)) == body  # any gzip reader reads it


def test_a_member_that_inflates_past_the_limit_is_refused_before_it_is_inflated() -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024), mtime=0)  # 64 MiB of zeros in 64 KiB
    assert len(bomb) < 100_000
    with pytest.raises(ValueError, match="more than 1000000 bytes"):
        gunzipped(bomb, 1_000_000)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-9],  # cut short
        lambda data: data + b"x",  # something after the member
        lambda data: data + data,  # a second member
        lambda data: b"not gzip at all",
        lambda data: data[:20] + bytes([data[20] ^ 0xFF]) + data[21:],  # a flipped byte
        lambda data: data[:-8] + bytes(8),  # a wrong CRC and length
    ],
)
def test_anything_but_one_whole_member_is_refused(damage: object) -> None:
    body = page_like(5000)
    data = damage(gzipped(body))  # type: ignore[operator]
    with pytest.raises(ValueError):
        gunzipped(data, 10 * len(body))


# --- what upstreams send: content_decoded ------------------------------------------


def test_an_identity_body_is_taken_as_it_is_within_the_limit() -> None:
    for coding in (None, "", "identity", " Identity "):
        decoded = content_decoded(b"page", coding, 4)
        assert decoded == Decoded(b"page", None)
    with pytest.raises(ValueError, match="more than 3 bytes"):
        content_decoded(b"page", None, 3)


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "GZIP", "gzip, identity"])
def test_one_gzip_member_is_decoded_and_kept(coding: str) -> None:
    member = gzip.compress(b"<a>page</a>" * 100)
    assert content_decoded(member, coding, 1100) == Decoded(b"<a>page</a>" * 100, member)


def test_members_one_after_another_are_all_read() -> None:
    data = gzip.compress(b"first ") + gzip.compress(b"") + gzip.compress(b"second")
    assert content_decoded(data, "gzip", 100) == Decoded(b"first second", None)


def test_a_gzip_body_cut_anywhere_is_refused() -> None:
    body = bytes(range(256)) * 20
    member = gzip.compress(body, mtime=0)
    for end in range(len(member)):
        with pytest.raises(ValueError, match=r"cut short|not gzip"):
            content_decoded(member[:end], "gzip", len(body))
    second = gzip.compress(b"more", mtime=0)
    for end in range(1, len(second)):
        with pytest.raises(ValueError, match=r"cut short|not gzip"):
            content_decoded(member + second[:end], "gzip", len(body) + 4)


@pytest.mark.parametrize("trailer", [b"garbage", b"\0\0\0\0", b"\x1f"])
def test_bytes_after_a_member_that_are_no_member_are_refused(trailer: bytes) -> None:
    with pytest.raises(ValueError, match=r"cut short|not gzip"):
        content_decoded(gzip.compress(b"page") + trailer, "gzip", 100)


def test_the_limit_holds_over_all_members_together() -> None:
    data = gzip.compress(b"a" * 600) + gzip.compress(b"b" * 600)
    assert len(content_decoded(data, "gzip", 1200).body) == 1200
    with pytest.raises(ValueError, match="inflates to more than 1000 bytes"):
        content_decoded(data, "gzip", 1000)


@pytest.mark.parametrize("coding", ["br", "deflate", "zstd", "gzip, gzip", "gzip, br", "compress"])
def test_a_coding_not_asked_for_is_refused_by_name(coding: str) -> None:
    with pytest.raises(ValueError, match="only gzip was asked for"):
        content_decoded(gzip.compress(b"page"), coding, 100)


def test_a_body_of_many_members_is_refused_before_they_are_all_read() -> None:
    empty = gzip.compress(b"")
    assert content_decoded(empty * MAX_MEMBERS, "gzip", 10).body == b""
    # Refused at the first member past MAX_MEMBERS, not after a million of them.
    with pytest.raises(ValueError, match=f"more than {MAX_MEMBERS} gzip members"):
        content_decoded(empty * (1024 * 1024), "gzip", 10)


@pytest.mark.parametrize("members", [1, 2, 7])
def test_members_longer_than_a_slice_fed_are_read_whole(members: int) -> None:
    """Bodies of several MiB, fed to zlib a slice at a time: every member boundary lands
    somewhere in a slice, and one member is returned as the very bytes received."""
    rng = random.Random(members)
    bodies = [rng.randbytes(rng.randrange(1, 3 << 20)) for _ in range(members)]
    data = b"".join(gzip.compress(b, compresslevel=1) for b in bodies)
    decoded = content_decoded(data, "gzip", sum(map(len, bodies)))
    assert decoded.body == b"".join(bodies)
    assert decoded.member is (data if members == 1 else None)
    with pytest.raises(ValueError, match="cut short"):
        content_decoded(data[:-1], "gzip", len(decoded.body))
