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
from tests.support.upstream import Upstream
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
