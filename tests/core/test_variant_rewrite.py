"""A variant wheel rewritten for installers that cannot read variants, and the opt-in rule."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from proxy.core.rewrite import (
    Rewrite,
    RewriteError,
    new_filename,
    rewrite_digest,
    rewrite_wheel,
)
from proxy.core.rules import load_rules
from proxy.core.variant_markers import settle_markers
from proxy.errors import ConfigError
from tests.support.variant_wheels import build_variant_wheel
from tests.support.wheels import WheelSpec

SHA = "cd" * 32
GPU = {"nvidia": {"cuda_version_lower_bound": ["12.8"]}}


def test_the_name_loses_the_label_and_gains_a_build_tag_of_this_variant() -> None:
    name = "ok-1.0-py3-none-any-cu128.whl"
    rewrite = Rewrite(variant="cu128")
    target = new_filename(name, SHA, rewrite)
    assert target == f"ok-1.0-0.hf{rewrite_digest(SHA, rewrite)[:12]}-py3-none-any.whl"
    parse_wheel_filename(target)  # plain installers read it
    other = new_filename("ok-1.0-py3-none-any-cu126.whl", "ef" * 32, Rewrite(variant="cu126"))
    assert other != target  # one name never stands for two variants


def test_earlier_rewrites_keep_their_digests() -> None:
    assert "variant" not in Rewrite(platform="manylinux_2_28_x86_64").recipe()
    assert Rewrite(variant="cu128").recipe()["variant"] == "cu128"


def test_rewritten_variant_wheel_is_consistent_and_keeps_its_variant_json(tmp_path: Path) -> None:
    spec = WheelSpec("ok", "1.0", files={"ok/__init__.py": b"BUILD = 'cu128'\n"})
    path = build_variant_wheel(spec, "cu128", GPU, tmp_path, namespaces=("nvidia",))
    sink = io.BytesIO()
    with path.open("rb") as source:
        result = rewrite_wheel(source, sink, path.name, SHA, Rewrite(variant="cu128"))
    again = io.BytesIO()
    with path.open("rb") as source:
        assert rewrite_wheel(source, again, path.name, SHA, Rewrite(variant="cu128")) == result
    assert again.getvalue() == sink.getvalue()  # deterministic
    with zipfile.ZipFile(io.BytesIO(sink.getvalue())) as archive:
        variant = json.loads(archive.read("ok-1.0.dist-info/variant.json"))
        wheel = archive.read("ok-1.0.dist-info/WHEEL").decode()
        record = archive.read("ok-1.0.dist-info/RECORD").decode()
    assert list(variant["variants"]) == ["cu128"]
    build = parse_wheel_filename(result.filename)[2]
    assert len(build) == 2
    assert f"Build: {build[0]}" in wheel
    assert "ok-1.0.dist-info/variant.json" in record


def test_best_variant_rule_names_projects() -> None:
    rules = load_rules({"r.toml": '[[best_variant]]\nproject = "Torch"\nversion = ">=2"\n'})
    (entry,) = rules.best_variants("torch")
    assert entry.where == "r.toml: best_variant[0]"
    assert rules.best_variants("numpy") == ()
    for text, message in [
        ('[[best_variant]]\nproject = "*"\n', "invalid project name"),
        ('[[best_variant]]\nproject = "a"\nlabel = "b"\n', "unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_rules({"r.toml": text})


SUPPORTED = {"nvidia :: cuda_version_lower_bound :: 12.8", "nvidia :: sm_arch :: 90_real"}


@pytest.mark.parametrize(
    ("requirement", "installed"),
    [
        ('gemm; "nvidia :: sm_arch :: 90_real" in variant_properties', True),
        ("gemm; 'nvidia::sm_arch::90_real' in variant_properties", True),  # whitespace
        ('gemm; "nvidia :: sm_arch :: 120_real" in variant_properties', False),
        ('gemm; "nvidia :: sm_arch :: 120_real" not in variant_properties', True),
        ('gemm; "nvidia :: sm_arch" in variant_features', True),
        ('gemm; "x86_64" in variant_namespaces or python_version < "3"', False),
        ('gemm; "nvidia" in variant_namespaces and python_version >= "3"', True),
        ('gemm; variant_label == "cu128"', True),
        ('gemm; variant_label != "cu128"', False),
        ('gemm; "null" != variant_label', True),
        ("gemm; variant_label in 'cu128 cu129'", True),  # PEP 508 string containment
        ("gemm; variant_label not in 'cu128 cu129'", False),
        ("gemm; variant_label in 'cu126 cpu'", False),
        ('gemm; "cu12" in variant_label', True),
        ('gemm; python_version >= "3"', True),  # not a variant marker: left alone
    ],
)
def test_variant_markers_are_settled_for_the_host(requirement: str, installed: bool) -> None:
    metadata = f"Metadata-Version: 2.1\nName: ok\nRequires-Dist: {requirement}\n\nBody".encode()
    settled = settle_markers(metadata, "cu128", SUPPORTED)
    head, _, body = settled.decode().partition("\n\n")
    assert body == "Body"
    (line,) = [h for h in head.splitlines() if h.startswith("Requires-Dist:")]
    parsed = Requirement(line.removeprefix("Requires-Dist:").strip())  # plain installers read it
    assert parsed.marker is not None and parsed.marker.evaluate() is installed


def test_a_rewritten_variant_carries_settled_markers(tmp_path: Path) -> None:
    spec = WheelSpec("ok", "1.0", requires_dist=['gemm; "nvidia" in variant_namespaces', "six"])
    path = build_variant_wheel(spec, "cu128", GPU, tmp_path, namespaces=("nvidia",))
    rewrite = Rewrite(variant="cu128", variant_properties=frozenset(SUPPORTED))
    sink = io.BytesIO()
    with path.open("rb") as source:
        result = rewrite_wheel(source, sink, path.name, SHA, rewrite)
    requires = [
        line.split(":", 1)[1].strip()
        for line in result.metadata.decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert requires == ['gemm; python_version >= "0"', "six"]
    other = Rewrite(variant="cu128", variant_properties=frozenset())
    assert rewrite_digest(SHA, other) != rewrite_digest(SHA, rewrite)  # a host of its own


def test_a_variant_clause_that_cannot_be_settled_is_no_rewrite(tmp_path: Path) -> None:
    """Left in the served wheel, an unsettled clause is metadata plain installers refuse
    (the whole version with it): the rewrite is not made, the original is served."""
    spec = WheelSpec("ok", "1.0", requires_dist=["gemm; variant_label >= 'cu1'"])
    path = build_variant_wheel(spec, "cu128", GPU, tmp_path, namespaces=("nvidia",))
    rewrite = Rewrite(variant="cu128", variant_properties=frozenset(SUPPORTED))
    with path.open("rb") as source, pytest.raises(RewriteError, match="cannot settle"):
        rewrite_wheel(source, io.BytesIO(), path.name, SHA, rewrite)


def test_a_metadata_fix_removes_a_requirement_whose_marker_is_a_variant_clause(
    tmp_path: Path,
) -> None:
    """The markers are settled first: a fix names requirements by name, and a line with
    a variant clause did not parse to one, so it stayed."""
    spec = WheelSpec("ok", "1.0", requires_dist=['gemm; "nvidia" in variant_namespaces', "six"])
    path = build_variant_wheel(spec, "cu128", GPU, tmp_path, namespaces=("nvidia",))
    rewrite = Rewrite(
        remove_requires=frozenset({"gemm"}),
        variant="cu128",
        variant_properties=frozenset(SUPPORTED),
    )
    with path.open("rb") as source:
        result = rewrite_wheel(source, io.BytesIO(), path.name, SHA, rewrite)
    requires = [
        line.split(":", 1)[1].strip()
        for line in result.metadata.decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert requires == ["six"]
