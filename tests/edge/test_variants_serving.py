"""Wheel variants (PEP 825) served: the variants.json link on both formats, upstream's file
passed through, a generated file equal to the PEP's merge, pruning per host that keeps file
and wheels consistent, and the best variant rewritten for plain installers."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from proxy.core.pages import parse_html_page
from proxy.core.variants import variant_label
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.variant_wheels import build_variant_wheel, variant_document
from tests.support.wheels import WheelSpec, build_wheel

MakeProxy = Callable[..., ProxyThread]
DOC = "vpkg-1.0-variants.json"

SM_OLD = ["61_real", "70_real", "75_real", "80_real", "86_real", "90_real"]
SM_NEW = ["75_real", "80_real", "86_real", "90_real", "120_real"]
BUILDS: dict[str, dict[str, Any]] = {
    "cu126": {"nvidia": {"cuda_version_lower_bound": ["12.6"],
                         "cuda_version_upper_bound": ["13"], "sm_arch": SM_OLD}},
    "cu128": {"nvidia": {"cuda_version_lower_bound": ["12.8"],
                         "cuda_version_upper_bound": ["13"], "sm_arch": SM_NEW}},
    "cpu_v3": {"x86_64": {"level": ["v3"]}},
    "null": {},
}  # fmt: skip


def build_variants(out: Path) -> dict[str, Path]:
    """vpkg 1.0 in four variants (each says which it is when imported) and a plain wheel."""
    built = {}
    for label, properties in BUILDS.items():
        spec = WheelSpec("vpkg", "1.0", files={"vpkg/__init__.py": f"BUILD = {label!r}\n".encode()})
        built[label] = build_variant_wheel(spec, label, properties, out)
    plain = WheelSpec("vpkg", "1.0", files={"vpkg/__init__.py": b"BUILD = 'plain'\n"})
    built[""] = build_wheel(plain, out)
    return built


def merged_by_hand(wheels: dict[str, Path]) -> dict[str, Any]:
    """PEP 825's merge, written out: one document, every wheel's label."""
    documents = []
    for label, path in wheels.items():
        if label:
            with zipfile.ZipFile(path) as archive:
                documents.append(json.loads(archive.read("vpkg-1.0.dist-info/variant.json")))
    merged = dict(documents[0])
    merged["variants"] = {}
    for doc in documents:
        assert doc["default-priorities"] == merged["default-priorities"]
        assert doc["providers"] == merged["providers"]
        for label, props in doc["variants"].items():
            merged["variants"][label] = {
                ns: {f: sorted(vs) for f, vs in feats.items()} for ns, feats in props.items()
            }
    return merged


@pytest.fixture
def wheels(upstream: Upstream, wheel_dir: Path) -> dict[str, Path]:
    built = build_variants(wheel_dir)
    for path in built.values():
        upstream.add("vpkg", path)
    return built


def json_page(proxy: ProxyThread, path: str, **headers: str) -> dict[str, Any]:
    response = httpx.get(proxy.url + path, headers={"Accept": JSON_V1, **headers})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def document_entry(page: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any]
    (entry,) = [f for f in page["files"] if f["filename"].endswith("-variants.json")]
    return entry


def served_document(proxy: ProxyThread, prefix: str, **headers: str) -> tuple[bytes, str]:
    response = httpx.get(proxy.url + f"{prefix}simple/vpkg/{DOC}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.content, hashlib.sha256(response.content).hexdigest()


def labels_on(page: dict[str, Any]) -> set[str]:
    return {variant_label(f["filename"]) or "" for f in page["files"]} - {""}


def test_upstreams_file_is_passed_through_and_linked_from_both_formats(
    upstream: Upstream, make_proxy: MakeProxy, wheels: dict[str, Path]
) -> None:
    published = json.dumps(merged_by_hand(wheels), indent=1).encode()  # upstream's own bytes
    upstream.add("vpkg", UpstreamFile(DOC, content=published))
    proxy = make_proxy(upstream)
    digest = hashlib.sha256(published).hexdigest()
    for prefix in ("", "universal/"):
        entry = document_entry(json_page(proxy, f"{prefix}simple/vpkg/"))
        assert entry["url"] == DOC  # beside the page, whatever the prefix
        assert entry["hashes"] == {"sha256": digest}
        html = httpx.get(proxy.url + f"{prefix}simple/vpkg/").content
        page_url = proxy.url + f"{prefix}simple/vpkg/"
        (linked,) = [f for f in parse_html_page(html, page_url, "vpkg").files if f.filename == DOC]
        assert linked.url == page_url + DOC and linked.sha256 == digest
        assert served_document(proxy, prefix) == (published, digest)
        # Variant wheels stay on the page, with their .metadata, and download as they are.
        assert labels_on(json_page(proxy, f"{prefix}simple/vpkg/")) == set(BUILDS)
    path = wheels["cu128"]
    assert httpx.get(proxy.url + f"files/vpkg/{path.name}").content == path.read_bytes()
    assert httpx.get(proxy.url + f"files/vpkg/{path.name}.metadata").status_code == 200
    # A revalidated page that lists a changed file links the change.
    changed = published + b"\n"
    upstream.add("vpkg", UpstreamFile(DOC, content=changed))
    fresh = make_proxy(upstream)
    assert served_document(fresh, "universal/")[0] == changed


def test_generated_file_is_the_peps_merge_of_the_wheels_read_by_range(
    upstream: Upstream, make_proxy: MakeProxy, wheels: dict[str, Path]
) -> None:
    proxy = make_proxy(upstream)
    entry = document_entry(json_page(proxy, "universal/simple/vpkg/"))
    data, digest = served_document(proxy, "universal/")
    assert entry["hashes"] == {"sha256": digest}
    assert json.loads(data) == merged_by_hand(wheels)
    # Only the zip directories and the variant.json members were read, never a whole wheel.
    wheel_gets = [r for r in upstream.requests if r.method == "GET" and r.path.endswith(".whl")]
    assert wheel_gets and all("range" in r.headers for r in wheel_gets)
    # Made once: the next page and document cost upstream no wheel request.
    upstream.reset_requests()
    assert served_document(proxy, "") == (data, digest)
    assert not [r for r in upstream.requests if r.path.endswith(".whl")]


HOSTS = [
    # (profile, variant labels kept)
    ("cuda=12.8,sm=9.0,isa=x86-64-v3", {"cu126", "cu128", "cpu_v3", "null"}),
    ("cuda=12.8,sm=12.0,isa=x86-64-v3", {"cu128", "cpu_v3", "null"}),
    ("cuda=12.4,sm=6.1,isa=x86-64-v3", {"cpu_v3", "null"}),
    ("cuda=12.6,sm=6.1,isa=x86-64-v2", {"cu126", "null"}),
    ("cuda=none,isa=x86-64-v2", {"null"}),
    ("python=3.11", set(BUILDS)),  # nothing known of GPU or CPU: nothing pruned
]


@pytest.mark.parametrize(("profile", "kept"), HOSTS)
def test_pruning_per_host_keeps_file_and_wheels_consistent(
    upstream: Upstream, make_proxy: MakeProxy, wheels: dict[str, Path], profile: str, kept: set[str]
) -> None:
    proxy = make_proxy(upstream)
    for prefix, headers in ((f"p/{profile}/", {}), ("", {"X-Hostfit-Profile": profile})):
        page = json_page(proxy, f"{prefix}simple/vpkg/", **headers)
        assert labels_on(page) == kept
        assert "vpkg-1.0-py3-none-any.whl" in {f["filename"] for f in page["files"]}
        data, digest = served_document(proxy, prefix, **headers)
        assert document_entry(page)["hashes"] == {"sha256": digest}
        served = json.loads(data)
        assert set(served["variants"]) == kept  # the file lists exactly the wheels listed
        assert served["variants"] == {k: merged_by_hand(wheels)["variants"][k] for k in kept}
        assert served["providers"] == merged_by_hand(wheels)["providers"]
    # The universal view sees every variant, whatever the host.
    assert labels_on(json_page(proxy, "universal/simple/vpkg/")) == set(BUILDS)


def test_a_host_left_with_no_variant_gets_no_variants_json(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path
) -> None:
    spec = WheelSpec("vpkg", "1.0", files={"vpkg/__init__.py": b"BUILD = 'cu128'\n"})
    upstream.add("vpkg", build_variant_wheel(spec, "cu128", BUILDS["cu128"], wheel_dir))
    proxy = make_proxy(upstream)
    page = json_page(proxy, "p/cuda=none/simple/vpkg/")
    assert page["files"] == []
    response = httpx.get(proxy.url + f"p/cuda=none/simple/vpkg/{DOC}")
    assert response.status_code == 404
    assert httpx.get(proxy.url + "simple/vpkg/vpkg-1.0.tar.gz").status_code == 404


BEST = '[[best_variant]]\nproject = "vpkg"\n'


def rewritten(proxy: ProxyThread, profile: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        page = json_page(proxy, f"p/{profile}/simple/vpkg/")
        found = [f for f in page["files"] if ".hf" in f["filename"]]
        if found:
            entry: dict[str, Any]
            (entry,) = found
            return entry
        assert time.monotonic() < deadline, "the best variant was never rewritten"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("profile", "best"),
    [
        ("cuda=12.8,sm=9.0,isa=x86-64-v3", "cu128"),
        ("cuda=12.9,sm=6.1,isa=x86-64-v3", "cu126"),
        ("cuda=12.4,sm=6.1,isa=x86-64-v3", "cpu_v3"),
        ("cuda=none,isa=x86-64-v2", "null"),
    ],
)
def test_best_variant_under_a_standard_name_with_its_own_url_hash_and_metadata(
    upstream: Upstream,
    make_proxy: MakeProxy,
    wheels: dict[str, Path],
    tmp_path: Path,
    profile: str,
    best: str,
) -> None:
    (tmp_path / "best.toml").write_text(BEST)
    proxy = make_proxy(upstream, rules=tmp_path / "best.toml")
    entry = rewritten(proxy, profile)
    name = entry["filename"]
    assert name.startswith("vpkg-1.0-0.hf") and name.endswith("-py3-none-any.whl")
    assert variant_label(name) is None
    data = httpx.get(proxy.url + f"p/{profile}/files/vpkg/{name}").content
    assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
    metadata = httpx.get(proxy.url + f"files/vpkg/{name}.metadata").content
    assert hashlib.sha256(metadata).hexdigest() == entry["core-metadata"]["sha256"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.read("vpkg/__init__.py") == f"BUILD = {best!r}\n".encode()
        assert list(json.loads(archive.read("vpkg-1.0.dist-info/variant.json"))["variants"]) == [
            best
        ]
        assert archive.read("vpkg-1.0.dist-info/METADATA") == metadata
    # No URL means two contents: another variant has another name.
    other = "cuda=none,isa=x86-64-v3" if best != "cpu_v3" else "cuda=12.8,sm=9.0,isa=x86-64-v3"
    assert rewritten(proxy, other)["filename"] != name
    # The universal view and hosts of projects without the rule are never rewritten.
    universal = json_page(proxy, "universal/simple/vpkg/")["files"]
    assert not [f for f in universal if ".hf" in f["filename"]]


def test_a_variant_the_page_drops_is_refused_to_that_host_however_asked(
    upstream: Upstream, make_proxy: MakeProxy, wheels: dict[str, Path], tmp_path: Path
) -> None:
    """A pinned URL, a lock or a requirements file made on another host asks for the
    wheel by name: its label's properties are judged at the download as on the page (an
    x86-64-v3 build on a v2 CPU stops at its first AVX2 instruction), a rewritten best
    variant by its original's."""
    (tmp_path / "best.toml").write_text(BEST)
    proxy = make_proxy(upstream, rules=tmp_path / "best.toml")
    v2, v3 = "cuda=none,isa=x86-64-v2", "cuda=none,isa=x86-64-v3"
    name = wheels["cpu_v3"].name
    assert name not in {f["filename"] for f in json_page(proxy, f"p/{v2}/simple/vpkg/")["files"]}
    for path, headers in (
        (f"p/{v2}/files/vpkg/{name}", {}),
        (f"files/vpkg/{name}", {"X-Hostfit-Profile": v2}),
    ):
        refused = httpx.get(proxy.url + path, headers=headers, timeout=60)
        assert refused.status_code == 403, (path, refused.status_code)
        assert "variant cpu_v3: needs x86_64 :: level :: v3" in refused.headers["x-hostfit-refused"]
    fits = httpx.get(proxy.url + f"p/{v3}/files/vpkg/{name}", timeout=60)
    assert fits.status_code == 200 and fits.content == wheels["cpu_v3"].read_bytes()
    best = rewritten(proxy, v3)["filename"]  # cpu_v3, under a standard name
    refused = httpx.get(proxy.url + f"p/{v2}/files/vpkg/{best}", timeout=60)
    assert refused.status_code == 403, refused.status_code
    assert httpx.get(proxy.url + f"p/{v3}/files/vpkg/{best}", timeout=60).status_code == 200
    # The universal view, and a host that tells nothing, get it as it is.
    for path in (f"universal/files/vpkg/{name}", f"files/vpkg/{name}"):
        assert httpx.get(proxy.url + path, timeout=60).status_code == 200
    # The wheel's own view links its project, read from the labelled name (as the host
    # filter reads it when a report of such a wheel arrives: decide its pages again).
    sha256 = hashlib.sha256(wheels["cpu_v3"].read_bytes()).hexdigest()
    view = httpx.get(proxy.url + f"ui/wheel/{sha256}/", timeout=60)
    assert view.status_code == 200
    assert '<dt>project</dt><dd><a href="/ui/project/vpkg/">vpkg</a></dd>' in view.text
    assert "py3-none-any" in view.text.split("Tags", 1)[1].split("What it needs", 1)[0]


def test_a_wheels_own_variant_json_that_cannot_be_read_says_nothing_at_its_download(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path
) -> None:
    """Upstream's variants.json is sound, the wheel's own holds a list where a value
    goes: the page is served from the first, and the download is judged by its binaries
    alone, never answered with a 500."""
    spec = WheelSpec("hvar", "1.0", files={"hvar/__init__.py": b"X = 1\n"})
    hostile = {"x86_64": {"level": [["v3"]]}}
    wheel = build_variant_wheel(spec, "cpu_v3", hostile, wheel_dir, namespaces=("x86_64",))
    upstream.add("hvar", wheel)
    sound = variant_document({"cpu_v3": {"x86_64": {"level": ["v3"]}}}, namespaces=("x86_64",))
    upstream.add("hvar", UpstreamFile("hvar-1.0-variants.json", content=json.dumps(sound).encode()))
    proxy = make_proxy(upstream)
    v3 = "cuda=none,isa=x86-64-v3"
    assert wheel.name in {f["filename"] for f in json_page(proxy, f"p/{v3}/simple/hvar/")["files"]}
    for path in (f"universal/files/hvar/{wheel.name}", f"p/{v3}/files/hvar/{wheel.name}"):
        got = httpx.get(proxy.url + path, timeout=60)
        assert got.status_code == 200 and got.content == wheel.read_bytes(), (path, got.status_code)


def test_explain_says_why_a_variant_is_not_served(
    upstream: Upstream, make_proxy: MakeProxy, wheels: dict[str, Path]
) -> None:
    proxy = make_proxy(upstream)
    profile = "cuda=12.4,sm=6.1,isa=x86-64-v3"
    explained = httpx.get(
        proxy.url + "explain/vpkg/", params={"profile": profile, "format": "json"}
    ).json()
    rows = {row["filename"]: row for row in explained["files"]}
    cu128 = rows[wheels["cu128"].name]
    assert cu128["verdict"] == "hide"
    assert [r["kind"] for r in cu128["reasons"]] == ["variant"]
    message = cu128["reasons"][0]["message"]
    assert "nvidia :: cuda_version_lower_bound :: 12.8" in message
    assert "cuda=12.4" in message and "sm=6.1" in message
    assert rows[wheels["cpu_v3"].name]["verdict"] == "keep"
    assert rows[wheels["null"].name]["verdict"] == "keep"


def test_revalidation_and_a_replica_that_rebuilds_the_rewritten_variant(
    upstream: Upstream, make_proxy: MakeProxy, wheels: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "best.toml").write_text(BEST)
    proxy = make_proxy(upstream, rules=tmp_path / "best.toml")
    profile = "cuda=12.8,sm=9.0,isa=x86-64-v3"
    response = httpx.get(proxy.url + f"p/{profile}/simple/vpkg/{DOC}")
    etag = response.headers["etag"]
    assert etag == f'"{hashlib.sha256(response.content).hexdigest()}"'
    assert "max-age" in response.headers["cache-control"]
    again = httpx.get(proxy.url + f"p/{profile}/simple/vpkg/{DOC}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    entry = rewritten(proxy, profile)
    first = httpx.get(proxy.url + f"files/vpkg/{entry['filename']}").content
    proxy.services.blobs.path(entry["hashes"]["sha256"]).unlink()
    rebuilt = httpx.get(proxy.url + f"files/vpkg/{entry['filename']}")
    assert rebuilt.status_code == 200 and rebuilt.content == first
