"""Variant properties judged against host profiles, and PEP 825's ordering, table-driven."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.core.profile import parse_profile
from proxy.core.variant_fit import best_label, label_fit, static_properties, unfit_labels
from proxy.core.variants import SCHEMA_850, parse_variant_metadata


def nv(**features: list[str]) -> dict[str, Any]:
    return {"nvidia": features}


@pytest.mark.parametrize(
    ("profile", "properties", "fit"),
    [
        ("cuda=12.8", nv(cuda_version_lower_bound=["12.8"]), True),
        ("cuda=12.4", nv(cuda_version_lower_bound=["12.8"]), False),
        ("cuda=12.4", nv(cuda_version_lower_bound=["12"]), True),  # 12 means 12.0
        ("cuda=13.0", nv(cuda_version_upper_bound=["13"]), False),  # exclusive
        ("cuda=12.9", nv(cuda_version_upper_bound=["13"]), True),
        ("cuda=none", nv(cuda_version_lower_bound=["11.0"]), False),
        ("", nv(cuda_version_lower_bound=["12.8"]), None),  # unknown host: never hidden
        ("cuda=12.8", nv(cuda_version_lower_bound=["12.8.1"]), None),  # unreadable value
        # SASS runs on the same major from its minor on; PTX on every later GPU.
        ("cuda=12.8,sm=8.9", nv(sm_arch=["86_real"]), True),
        ("cuda=12.8,sm=8.6", nv(sm_arch=["89_real"]), False),
        ("cuda=12.8,sm=9.0", nv(sm_arch=["80_real"]), False),
        ("cuda=12.8,sm=9.0", nv(sm_arch=["80_virtual"]), True),
        ("cuda=12.8,sm=6.1", nv(sm_arch=["75_real", "75_virtual"]), False),
        ("cuda=12.8,sm=12.0", nv(sm_arch=["120_real"]), True),
        ("cuda=12.8,sm=9.0", nv(sm_arch=["90a_real"]), True),
        ("cuda=12.8,sm=9.0", nv(sm_arch=["100a_real"]), False),
        ("cuda=12.8,sm=6.1+8.9", nv(sm_arch=["61_real"]), True),  # any GPU of the host
        ("cuda=12.8", nv(sm_arch=["80_real"]), None),  # GPUs unknown
        ("cuda=none", nv(sm_arch=["80_real"]), False),
        # every feature must fit (AND), one value of each is enough (OR)
        ("cuda=12.8,sm=8.9", nv(cuda_version_lower_bound=["12.8"], sm_arch=["90_real"]), False),
        (
            "cuda=12.8,sm=8.9",
            nv(cuda_version_lower_bound=["12.8"], sm_arch=["90_real", "80_real"]),
            True,
        ),
        ("isa=x86-64-v3", {"x86_64": {"level": ["v3"]}}, True),
        ("isa=x86-64-v2", {"x86_64": {"level": ["v3"]}}, False),
        ("arch=aarch64", {"x86_64": {"level": ["v1"]}}, False),
        ("arch=x86_64", {"x86_64": {"level": ["v1"]}}, None),
        ("cuda=12.8,isa=x86-64-v4", {"amd": {"gfx_arch": ["gfx90a"]}}, None),  # never pruned
        ("cuda=none", {"amd": {"gfx_arch": ["gfx90a"]}}, None),
        ("cuda=none", {}, True),  # the null variant
    ],
)
def test_label_fit(profile: str, properties: dict[str, Any], fit: bool | None) -> None:
    meta = parse_variant_metadata(document({"x": properties}), "t")
    assert label_fit(meta.variants["x"], parse_profile(profile, "url")) is fit


def document(
    variants: dict[str, Any], namespaces: tuple[str, ...] = ("nvidia", "x86_64", "amd")
) -> bytes:
    return json.dumps(
        {
            "$schema": SCHEMA_850,
            "default-priorities": {"namespace": list(namespaces)},
            "variants": variants,
        }
    ).encode()


CUDA_BUILDS = {
    "cu118": nv(cuda_version_lower_bound=["11.8"], cuda_version_upper_bound=["12"],
                sm_arch=["61_real", "70_real", "75_real", "80_real", "86_real", "90_virtual"]),
    "cu126": nv(cuda_version_lower_bound=["12.6"], cuda_version_upper_bound=["13"],
                sm_arch=["61_real", "70_real", "75_real", "80_real", "86_real", "90_real"]),
    "cu128": nv(cuda_version_lower_bound=["12.8"], cuda_version_upper_bound=["13"],
                sm_arch=["75_real", "80_real", "86_real", "90_real", "120_real"]),
    "cpu_v3": {"x86_64": {"level": ["v3"]}},
    "null": {},
}  # fmt: skip


@pytest.mark.parametrize(
    ("profile", "best", "unfit"),
    [
        ("cuda=12.8,sm=9.0,isa=x86-64-v3", "cu128", {"cu118"}),
        ("cuda=12.4,sm=6.1,isa=x86-64-v3", "cpu_v3", {"cu118", "cu126", "cu128"}),
        ("cuda=12.6,sm=6.1,isa=x86-64-v3", "cu126", {"cu118", "cu128"}),
        ("cuda=12.9,sm=6.1,isa=x86-64-v3", "cu126", {"cu118", "cu128"}),  # never from sm_75 on
        ("cuda=11.8,sm=8.6,isa=x86-64-v2", "cu118", {"cu126", "cu128", "cpu_v3"}),
        ("cuda=none,isa=x86-64-v3", "cpu_v3", {"cu118", "cu126", "cu128"}),
        ("cuda=none,isa=x86-64-v2", "null", {"cu118", "cu126", "cu128", "cpu_v3"}),
        ("", "null", set()),  # nothing known: only the null variant is surely right
    ],
)
def test_best_and_unfit(profile: str, best: str, unfit: set[str]) -> None:
    meta = parse_variant_metadata(document(CUDA_BUILDS), "t")
    host = parse_profile(profile, "url")
    assert best_label(meta, meta.variants, host) == best
    assert unfit_labels(meta, host) == unfit


def test_ordering_follows_the_namespace_priorities_then_the_providers() -> None:
    variants = {"gpu": nv(cuda_version_lower_bound=["12.0"]), "cpu": {"x86_64": {"level": ["v2"]}}}
    host = parse_profile("cuda=12.8,isa=x86-64-v3", "url")
    gpu_first = parse_variant_metadata(document(variants, ("nvidia", "x86_64")), "t")
    cpu_first = parse_variant_metadata(document(variants, ("x86_64", "nvidia")), "t")
    assert best_label(gpu_first, variants, host) == "gpu"
    assert best_label(cpu_first, variants, host) == "cpu"
    # The nearer CUDA bound, the host's own SM, more properties, then the label.
    more = {
        "a": nv(cuda_version_lower_bound=["12.0"]),
        "b": nv(cuda_version_lower_bound=["12.6"]),
        "c": nv(cuda_version_lower_bound=["12.6"], sm_arch=["80_real"]),
        "d": nv(cuda_version_lower_bound=["12.6"], sm_arch=["86_real"]),
        "e": nv(cuda_version_lower_bound=["12.6"], sm_arch=["86_virtual"]),
    }
    meta = parse_variant_metadata(document(more), "t")
    host = parse_profile("cuda=12.8,sm=8.6", "url")
    assert best_label(meta, more, host) == "d"
    assert best_label(meta, ["c", "e"], host) == "c"  # SASS before PTX
    assert best_label(meta, ["a", "b"], host) == "b"
    assert best_label(meta, ["b", "c"], host) == "c"


def test_the_best_label_runs_on_every_gpu_while_pruning_needs_only_one() -> None:
    host = parse_profile("cuda=12.8,sm=6.1+8.9,isa=x86-64-v3", "url")
    meta = parse_variant_metadata(document(CUDA_BUILDS), "t")
    assert unfit_labels(meta, host) == {"cu118"}  # cu128 runs on the 8.9: kept
    assert best_label(meta, meta.variants, host) == "cu126"  # the only one for both GPUs
    assert best_label(meta, ["cu128", "cpu_v3"], host) == "cpu_v3"


def test_static_properties_are_what_the_providers_would_detect() -> None:
    found = static_properties(parse_profile("cuda=12.8,sm=8.6+8.9,isa=x86-64-v3", "url"))
    nvidia = found["nvidia"]["static-properties"]
    assert nvidia["cuda_version_lower_bound"][:3] == ["12.8", "12.7", "12.6"]
    assert nvidia["cuda_version_lower_bound"][8:11] == ["12.0", "12", "11.20"]
    assert nvidia["cuda_version_lower_bound"][-1] == "11"
    assert nvidia["cuda_version_upper_bound"][:2] == ["15.20", "15.19"]
    assert nvidia["cuda_version_upper_bound"][-1] == "12.9"
    assert "12.8" not in nvidia["cuda_version_upper_bound"]
    assert nvidia["sm_arch"] == [f"8{m}_real" for m in range(9, -1, -1)] + ["80_virtual"]
    assert found["nvidia"]["feature-order"] == [
        "cuda_version_lower_bound", "cuda_version_upper_bound", "sm_arch",
    ]  # fmt: skip
    assert found["x86_64"] == {"static-properties": {"level": ["v3", "v2", "v1"]},
                               "feature-order": ["level"]}  # fmt: skip
    assert static_properties(parse_profile("cuda=none,arch=aarch64,isa=x86-64-v3", "url")) == {}
    assert "nvidia" not in static_properties(parse_profile("cuda=10.2", "url"))
