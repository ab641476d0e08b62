"""Variant wheel names, variant metadata and PEP 825's merge, table-driven."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from packaging.version import Version

from proxy.core.variants import (
    SCHEMA_850,
    VariantError,
    merge,
    parse_variant_metadata,
    parse_variant_wheel_filename,
    parse_variants_json_filename,
    parse_wheel_variant,
    render,
    split_label,
    variant_version,
    variants_json_filename,
    wheel_project,
)


@pytest.mark.parametrize(
    ("filename", "standard", "label"),
    [
        ("torch-2.10.0-cp312-cp312-manylinux_2_28_x86_64-cu128.whl",
         "torch-2.10.0-cp312-cp312-manylinux_2_28_x86_64.whl", "cu128"),
        ("ok-1.0-py3-none-any-null.whl", "ok-1.0-py3-none-any.whl", "null"),
        ("ok-1.0-7-py3-none-any-x86_64_v3.whl", "ok-1.0-7-py3-none-any.whl", "x86_64_v3"),
        ("ok-1.0-py3-none-any-12.8.whl", "ok-1.0-py3-none-any.whl", "12.8"),
        # six parts whose third starts with a digit: a build tag, no label
        ("ok-1.0-7-py3-none-any.whl", "ok-1.0-7-py3-none-any.whl", None),
        ("ok-1.0-py3-none-any.whl", "ok-1.0-py3-none-any.whl", None),
        ("ok-1.0-py3-none-any-CUDA.whl", "ok-1.0-py3-none-any-CUDA.whl", None),  # not a label
        ("ok-1.0.tar.gz", "ok-1.0.tar.gz", None),
    ],
)  # fmt: skip
def test_split_label(filename: str, standard: str, label: str | None) -> None:
    assert split_label(filename) == (standard, label)


def test_a_variant_wheel_parses_like_the_wheel_it_would_be_without_its_label() -> None:
    name, version, build, tags, label = parse_variant_wheel_filename(
        "Foo_Bar-1.0-2-cp311-cp311-manylinux_2_17_x86_64-cu126.whl"
    )
    assert (name, version, build, label) == ("foo-bar", Version("1.0"), (2, ""), "cu126")
    assert {str(t) for t in tags} == {"cp311-cp311-manylinux_2_17_x86_64"}
    assert variant_version("foo-1.0-py3-none-any-null.whl") == Version("1.0")
    assert variant_version("foo-1.0-py3-none-any.whl") is None


def test_variants_json_names() -> None:
    assert variants_json_filename("Foo.Bar", Version("1.0.0")) == "foo_bar-1.0.0-variants.json"
    assert parse_variants_json_filename("foo_bar-1.0-variants.json") == ("foo-bar", Version("1.0"))
    assert parse_variants_json_filename("foo-bar-variants.json") is None
    assert parse_variants_json_filename("foo-1.0.json") is None


def doc(variants: dict[str, Any], namespaces: list[Any], **more: Any) -> bytes:
    return json.dumps(
        {
            "$schema": SCHEMA_850,
            "default-priorities": {"namespace": namespaces},
            "variants": variants,
            **more,
        }
    ).encode()


GPU = {"nvidia": {"cuda_version_lower_bound": ["12.8"], "sm_arch": ["90_real", "120_real"]}}


def test_parse_keeps_properties_as_sorted_sets_and_unknown_keys() -> None:
    meta = parse_variant_metadata(doc({"cu128": GPU}, ["nvidia"], future={"a": 1}), "t")
    assert meta.variants["cu128"]["nvidia"]["sm_arch"] == ("120_real", "90_real")
    assert meta.extra == {"future": {"a": 1}}
    assert json.loads(render(meta))["future"] == {"a": 1}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "not a JSON object"),
        (b"{", "not JSON"),
        (doc({}, []), "unique namespaces"),
        (doc({}, ["a", "a"]), "unique namespaces"),
        (doc({"Bad": {}}, ["a"]), "not a variant label"),
        (doc({"x": {"b": {"f": ["v"]}}}, ["a"]), "not in default-priorities"),
        (doc({"x": {"a": {"f": []}}}, ["a"]), "unique values"),
        (doc({"x": {"a": {"f": ["V"]}}}, ["a"]), "unique values"),
        # what set() cannot hash, and nesting past the parser: refused, never raised as such
        (doc({"x": {"a": {"f": [["v3"]]}}}, ["a"]), "unique values"),
        (doc({}, [["a"]]), "unique namespaces"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (doc({"null": {"a": {"f": ["v"]}}}, ["a"]), "null variant"),
        (doc({}, ["a"], providers={"b": {}}), "exactly the namespaces"),
        (json.dumps({"$schema": "https://x/v1.0.0.json", "default-priorities":
                     {"namespace": ["a"]}, "variants": {}}).encode(), "not supported"),
    ],
)  # fmt: skip
def test_parse_refuses_what_cannot_be_relied_on(data: bytes, message: str) -> None:
    with pytest.raises(VariantError, match=message):
        parse_variant_metadata(data, "t")


def test_a_wheel_describes_exactly_its_own_label() -> None:
    data = doc({"cu128": GPU}, ["nvidia"])
    assert list(parse_wheel_variant(data, "ok-1.0-py3-none-any-cu128.whl").variants) == ["cu128"]
    with pytest.raises(VariantError, match="the filename cu126"):
        parse_wheel_variant(data, "ok-1.0-py3-none-any-cu126.whl")


NV = {"requires": ["nvidia-variant-provider>=0.0.1,<1"],
      "plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin"}  # fmt: skip
X86 = {"requires": ["x86_64-variant-provider>=0.2,<1"]}


def test_merge_is_the_peps_union_whatever_the_order() -> None:
    wheels = [
        doc({"cu128": GPU}, ["nvidia"], providers={"nvidia": NV}),
        doc({"v3": {"x86_64": {"level": ["v3"]}}}, ["nvidia", "x86_64"],
            providers={"nvidia": NV, "x86_64": X86}),
        doc({"null": {}}, ["nvidia"], providers={"nvidia": NV}),
    ]  # fmt: skip
    parsed = [parse_variant_metadata(w, "t") for w in wheels]
    outputs = {render(merge(list(order))) for order in itertools.permutations(parsed)}
    assert len(outputs) == 1
    merged = json.loads(outputs.pop())
    assert merged["default-priorities"]["namespace"] == ["nvidia", "x86_64"]
    assert set(merged["variants"]) == {"cu128", "v3", "null"}
    assert merged["providers"] == {"nvidia": NV, "x86_64": X86}


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (doc({"x": GPU}, ["nvidia"]), doc({"x": {}}, ["nvidia"]), "different properties"),
        (doc({}, ["nvidia", "amd"]), doc({}, ["amd", "nvidia"]), "disagree"),
        (doc({}, ["nvidia"], providers={"nvidia": NV}),
         doc({}, ["nvidia"], providers={"nvidia": X86}), "two different providers"),
    ],
)  # fmt: skip
def test_merge_refuses_inconsistent_files(a: bytes, b: bytes, message: str) -> None:
    with pytest.raises(VariantError, match=message):
        merge([parse_variant_metadata(a, "a"), parse_variant_metadata(b, "b")])


def test_only_keeps_the_named_labels_and_the_rest_of_the_document() -> None:
    meta = parse_variant_metadata(doc({"cu128": GPU, "null": {}}, ["nvidia"]), "t")
    pruned = json.loads(render(meta.only(["null", "gone"])))
    assert pruned["variants"] == {"null": {}}
    assert pruned["default-priorities"] == {"namespace": ["nvidia"]}


def test_the_rest_of_the_core_reads_a_variant_wheel_as_the_wheel_without_its_label() -> None:
    from proxy.core.profile import parse_profile
    from proxy.core.tags import client_tags, wheel_supported
    from proxy.core.versions import file_version, wheel_tags

    name = "ok-1.0-cp311-cp311-manylinux_2_17_x86_64-cu128.whl"
    assert file_version(name) == Version("1.0")
    assert {str(t) for t in wheel_tags(name) or ()} == {"cp311-cp311-manylinux_2_17_x86_64"}
    host = client_tags(parse_profile("python=3.11,arch=x86_64,libc=glibc-2.28", "url"))
    assert wheel_supported(name, host)
    assert not wheel_supported(name.replace("x86_64", "aarch64", 1), host)


@pytest.mark.parametrize(
    ("filename", "project"),
    [
        ("torch-2.10.0-cp312-cp312-manylinux_2_28_x86_64-cu128.whl", "torch"),
        ("Foo_Bar-1.0-py3-none-any.whl", "foo-bar"),
        ("vpkg-1.0-py3-none-any-cpu_v3.whl", "vpkg"),
        ("pkg-1.0.tar.gz", None),
        ("not-a-wheel.whl", None),
    ],
)
def test_the_project_a_wheel_filename_names(filename: str, project: str | None) -> None:
    assert wheel_project(filename) == project
