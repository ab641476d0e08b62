"""Rewritten wheels when served: page, file, metadata and explain agree; universal is untouched."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Callable
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.wheels import WheelSpec, build_wheel

MakeProxy = Callable[..., ProxyThread]
FIX = """
[sources]
ticket = "test ticket: fixme 1.x declares a dependency it does not use"

[[metadata]]
project = "fixme"
version = "<2"
remove_requires = ["unused-dep"]
add_requires = ["attrs>=20"]
requires_python = ">=3.8"
source = "ticket"
"""


@pytest.fixture
def fixme(upstream: Upstream, wheel_dir: Path) -> Path:
    spec = WheelSpec(
        "fixme", "1.0", requires_dist=["unused-dep>=1", "six"], requires_python=">=3.6"
    )
    wheel = build_wheel(spec, wheel_dir)
    upstream.add("fixme", wheel, provenance="https://attestations.example/fixme-1.0")
    return wheel


def rules_dir(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules"
    path.mkdir()
    (path / "fixes.toml").write_text(text)
    return path


def page(proxy: ProxyThread, path: str) -> dict[str, Any]:
    response = httpx.get(proxy.url + path, headers={"Accept": JSON_V1})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def rewritten_entry(proxy: ProxyThread, path: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        entry: dict[str, Any]
        (entry,) = page(proxy, path)["files"]
        if ".hf" in entry["filename"]:
            return entry
        assert time.monotonic() < deadline, "the rewrite never appeared"
        time.sleep(0.1)


def test_a_metadata_fix_is_reflected_everywhere(
    upstream: Upstream, make_proxy: MakeProxy, fixme: Path, tmp_path: Path
) -> None:
    rules = rules_dir(tmp_path, FIX)
    proxy = make_proxy(upstream, rules=rules)
    entry = rewritten_entry(proxy, "simple/fixme/")
    assert entry["filename"].startswith("fixme-1.0-0.hf") and entry["filename"].endswith(
        "-py3-none-any.whl"
    )
    assert "provenance" not in entry
    assert entry["requires-python"] == ">=3.8"
    data = httpx.get(proxy.url + f"files/fixme/{entry['filename']}").content
    assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
    assert entry["size"] == len(data)
    metadata = httpx.get(proxy.url + f"files/fixme/{entry['filename']}.metadata").content
    assert hashlib.sha256(metadata).hexdigest() == entry["core-metadata"]["sha256"]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("fixme-1.0.dist-info/METADATA") == metadata
    parsed = BytesParser().parsebytes(metadata)
    assert parsed.get_all("Requires-Dist") == ["six", "attrs>=20"]
    assert parsed["Requires-Python"] == ">=3.8"
    # The HTML page carries the same hash.
    html = httpx.get(proxy.url + "simple/fixme/").text
    assert f"{entry['filename']}#sha256={entry['hashes']['sha256']}" in html
    # The universal view keeps upstream's file, and it can still be fetched.
    (original,) = page(proxy, "universal/simple/fixme/")["files"]
    assert original["filename"] == fixme.name and original["provenance"]
    assert httpx.get(proxy.url + f"files/fixme/{fixme.name}").content == fixme.read_bytes()
    # Explain says which rule rewrote it.
    explained = httpx.get(
        proxy.url + "explain/fixme/", params={"profile": "python=3.11", "format": "json"}
    ).json()
    (row,) = explained["files"]
    assert row["rewrite"] == {
        "served_as": entry["filename"],
        "status": "done",
        "change": "adds attrs>=20; removes unused-dep; Requires-Python >=3.8",
        "rules": [f"{rules / 'fixes.toml'}: metadata[0]"],
    }


def test_a_replica_without_the_blob_rebuilds_the_same_bytes(
    upstream: Upstream, make_proxy: MakeProxy, fixme: Path, tmp_path: Path
) -> None:
    rules = rules_dir(tmp_path, FIX)
    proxy = make_proxy(upstream, rules=rules)
    entry = rewritten_entry(proxy, "simple/fixme/")
    blobs = proxy.services.blobs
    blobs.path(entry["hashes"]["sha256"]).unlink()
    data = httpx.get(proxy.url + f"files/fixme/{entry['filename']}").content
    assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]


def test_no_rewrite_rules_no_rewrites(
    upstream: Upstream, make_proxy: MakeProxy, fixme: Path
) -> None:
    proxy = make_proxy(upstream)
    (entry,) = page(proxy, "simple/fixme/")["files"]
    assert entry["filename"] == fixme.name
    assert (
        httpx.get(proxy.url + "files/fixme/fixme-1.0-0.hf000000000000-py3-none-any.whl").status_code
        == 404
    )


def lzma_damaged(wheel: Path, member: str) -> Path:
    """``wheel`` with ``member`` stored as LZMA and its stream damaged: reading it raises
    `lzma.LZMAError`, which no list of zip errors names."""
    out = wheel.parent / "damaged" / wheel.name
    out.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            method = zipfile.ZIP_LZMA if info.filename == member else info.compress_type
            dst.writestr(info, src.read(info.filename), compress_type=method)
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo(member)
    raw = bytearray(out.read_bytes())
    start = info.header_offset + 30 + len(member.encode()) + 20
    raw[start : start + 16] = bytes(b ^ 0xFF for b in raw[start : start + 16])
    out.write_bytes(bytes(raw))
    return out


def test_a_rewrite_that_fails_unexpectedly_is_tried_once_and_explained(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path, tmp_path: Path
) -> None:
    spec = WheelSpec("fixme", "1.0", requires_dist=["unused-dep>=1", "six"])
    damaged = lzma_damaged(build_wheel(spec, wheel_dir), "fixme-1.0.dist-info/METADATA")
    upstream.add("fixme", UpstreamFile(damaged.name, damaged.read_bytes()))
    proxy = make_proxy(upstream, rules=rules_dir(tmp_path, FIX))
    deadline = time.monotonic() + 30
    while True:
        (entry,) = page(proxy, "simple/fixme/")["files"]
        assert entry["filename"] == damaged.name  # the original, while and after trying
        explained = httpx.get(
            proxy.url + "explain/fixme/", params={"profile": "python=3.11", "format": "json"}
        ).json()
        (row,) = explained["files"]
        if row["rewrite"]["status"] != "pending":
            break
        assert time.monotonic() < deadline, "the rewrite was never recorded as failed"
        time.sleep(0.1)
    assert row["rewrite"]["status"] == "failed"
    assert row["rewrite"]["error"].startswith("unexpected LZMAError: ")
    response = httpx.get(proxy.url + "simple/fixme/", headers={"Accept": JSON_V1})
    assert response.headers["cache-control"] != "max-age=5, public"  # no longer provisional


def test_a_rewrite_of_bytes_upstream_has_replaced_is_no_longer_served(
    upstream: Upstream, make_proxy: MakeProxy, fixme: Path, tmp_path: Path
) -> None:
    proxy = make_proxy(upstream, rules=rules_dir(tmp_path, FIX), page_ttl=0.0)
    old = rewritten_entry(proxy, "simple/fixme/")
    # Same name, other bytes (a private index that lets an upload be replaced).
    spec = WheelSpec(
        "fixme", "1.0", requires_dist=["unused-dep>=1", "six"], requires_python=">=3.6",
        files={"fixme/__init__.py": b"REPLACED = True\n"},
    )  # fmt: skip
    replaced = build_wheel(spec, tmp_path / "replaced")
    assert replaced.name == fixme.name and replaced.read_bytes() != fixme.read_bytes()
    upstream.add("fixme", replaced)
    new_sha = hashlib.sha256(replaced.read_bytes()).hexdigest()
    deadline = time.monotonic() + 30
    while page(proxy, "universal/simple/fixme/")["files"][0]["hashes"]["sha256"] != new_sha:
        assert time.monotonic() < deadline, "the proxy never saw the replaced file"
        time.sleep(0.1)
    for suffix in ("", ".metadata"):
        url = proxy.url + f"files/fixme/{old['filename']}{suffix}"
        assert httpx.get(url).status_code == 404
    deadline = time.monotonic() + 30
    while (new := rewritten_entry(proxy, "simple/fixme/"))["filename"] == old["filename"]:
        assert time.monotonic() < deadline, "the old rewrite is still listed"
        time.sleep(0.1)
    data = httpx.get(proxy.url + f"files/fixme/{new['filename']}").content
    assert hashlib.sha256(data).hexdigest() == new["hashes"]["sha256"]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("fixme/__init__.py") == b"REPLACED = True\n"
