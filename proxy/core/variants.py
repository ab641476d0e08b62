"""Wheel variants (PEP 825, providers PEP 850): filenames, variant metadata, and its merge.

A variant wheel's name ends in a label, ``{name}-{version}(-{build})?-{py}-{abi}-{plat}-
{label}.whl``; the Python tag never starts with a digit, which tells a six-part name with
a label from one with a build tag. Everything but the label is an ordinary wheel name,
so `packaging` parses it once the label is set aside (it does not know labels).

The label maps to properties ``namespace :: feature :: value`` in the wheel's
``*.dist-info/variant.json``; the index publishes ``{name}-{version}-variants.json``
with every label of that version. Both documents share one shape (`VariantMetadata`),
and combining them follows PEP 825's consistency rules: the namespace priority lists
must be equal or one a prefix of the other (the longer wins), a label always maps to
the same properties (the union is taken), a namespace's provider (PEP 850) is the same
everywhere. Those rules are symmetric, and `render` sorts what JSON leaves unordered,
so a merge gives the same bytes whatever order the wheels come in.

Parsing is strict (shapes, names, the schema's major version): metadata that does not
validate is not relied on, and its wheels are then left as upstream listed them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from packaging.tags import Tag
from packaging.utils import (
    BuildTag,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from proxy.errors import HostfitError

NULL_LABEL = "null"  # reserved: no properties, always compatible
SCHEMA_825 = "https://variants-schema.wheelnext.dev/peps/825/v0.1.1.json"
SCHEMA_850 = "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json"
VARIANTS_SUFFIX = "-variants.json"
# Drafts are 0.x; PEP 825 asks tools to refuse a major version they do not know.
SUPPORTED_MAJORS = frozenset({0})
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024

_LABEL = re.compile(r"[0-9a-z_.]+")
_NAME = re.compile(r"[a-z0-9_]+")  # namespaces and feature names
_VALUE = re.compile(r"[a-z0-9_.]+")
_SCHEMA_VERSION = re.compile(r"/v(\d+)\.(\d+)\.(\d+)\.json$")

# label -> namespace -> feature -> values (a set, kept sorted as PEP 825 writes it)
Properties = Mapping[str, Mapping[str, tuple[str, ...]]]


class VariantError(HostfitError):
    """Variant metadata that cannot be relied on: malformed, or inconsistent across files."""

    status_code = 502


# Filenames -------------------------------------------------------------------


@lru_cache(maxsize=65536)  # pages ask of every file, on every request
def split_label(filename: str) -> tuple[str, str | None]:
    """``(the filename without its label, the label)``; ``(filename, None)`` for others."""
    if not filename.endswith(".whl"):
        return filename, None
    parts = filename[:-4].split("-")
    if len(parts) == 7 or (len(parts) == 6 and not parts[2][:1].isdigit()):
        label = parts[-1]
        if _LABEL.fullmatch(label):
            return "-".join(parts[:-1]) + ".whl", label
    return filename, None


def variant_label(filename: str) -> str | None:
    return split_label(filename)[1]


def parse_variant_wheel_filename(
    filename: str,
) -> tuple[NormalizedName, Version, BuildTag, frozenset[Tag], str | None]:
    """`packaging.utils.parse_wheel_filename`, plus the label (None for other wheels)."""
    standard, label = split_label(filename)
    name, version, build, tags = parse_wheel_filename(standard)
    return name, version, build, tags, label


def wheel_project(filename: str) -> NormalizedName | None:
    """The project a wheel's filename names, with a variant label or without; None for a
    name that is no wheel's."""
    try:
        return parse_variant_wheel_filename(filename)[0]
    except InvalidWheelFilename:
        return None


def wheel_name_part(name: str) -> str:
    """The project name as wheel filenames and ``variants.json`` filenames spell it."""
    return canonicalize_name(name).replace("-", "_")


def variants_json_filename(name: str, version: Version) -> str:
    return f"{wheel_name_part(name)}-{version}{VARIANTS_SUFFIX}"


def parse_variants_json_filename(filename: str) -> tuple[NormalizedName, Version] | None:
    """Read as uv reads it: the name runs to the first dash, the version to the suffix."""
    if not filename.endswith(VARIANTS_SUFFIX):
        return None
    name, sep, version = filename[: -len(VARIANTS_SUFFIX)].partition("-")
    if not sep or not name:
        return None
    try:
        return canonicalize_name(name), Version(version)
    except InvalidVersion:
        return None


def variant_version(filename: str) -> Version | None:
    """The version of a variant wheel, None for any other file."""
    standard, label = split_label(filename)
    if label is None:
        return None
    try:
        return parse_wheel_filename(standard)[1]
    except InvalidWheelFilename:
        return None


# Metadata --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VariantMetadata:
    """One ``variant.json`` or ``variants.json``. Keys hostfit does not read are kept
    (``extra``, and ``default-priorities`` beyond ``namespace``), so a newer minor
    version survives a merge or a pruning."""

    schema: str
    namespaces: tuple[str, ...]
    variants: Mapping[str, Properties]
    providers: Mapping[str, Any] | None = None
    priorities: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def only(self, labels: Iterable[str]) -> VariantMetadata:
        """The same document listing only these labels (those it has)."""
        wanted = set(labels)
        return replace(self, variants={k: v for k, v in self.variants.items() if k in wanted})

    def properties(self, label: str) -> Properties | None:
        return self.variants.get(label)


def parse_variant_metadata(data: bytes, where: str) -> VariantMetadata:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise VariantError(f"{where}: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: nesting deeper than the parser goes, which no document needs.
        raise VariantError(f"{where}: not JSON: {exc!s:.200}") from None
    if not isinstance(doc, dict):
        raise VariantError(f"{where}: not a JSON object")
    schema = doc.get("$schema")
    if not isinstance(schema, str):
        raise VariantError(f"{where}: no $schema")
    found = _SCHEMA_VERSION.search(schema)
    if found is not None and int(found[1]) not in SUPPORTED_MAJORS:
        raise VariantError(f"{where}: format version {found[1]}.x is not supported ({schema})")
    priorities = doc.get("default-priorities")
    if not isinstance(priorities, dict):
        raise VariantError(f"{where}: no default-priorities")
    namespaces = priorities.get("namespace")
    if (
        not isinstance(namespaces, list)
        or not namespaces
        # the types before the set: a list in the list cannot be hashed
        or not all(isinstance(n, str) and _NAME.fullmatch(n) for n in namespaces)
        or len(set(namespaces)) != len(namespaces)
    ):
        raise VariantError(f"{where}: default-priorities.namespace must list unique namespaces")
    variants = doc.get("variants")
    if not isinstance(variants, dict):
        raise VariantError(f"{where}: no variants")
    listed = set(namespaces)
    parsed = {label: _properties(label, props, listed, where) for label, props in variants.items()}
    providers = doc.get("providers")
    if providers is not None:
        if not isinstance(providers, dict) or not all(
            isinstance(p, dict) for p in providers.values()
        ):
            raise VariantError(f"{where}: providers must map namespaces to objects")
        if set(providers) != set(namespaces):
            raise VariantError(f"{where}: providers must name exactly the namespaces listed")
    known = {"$schema", "default-priorities", "variants", "providers"}
    return VariantMetadata(
        schema=schema,
        namespaces=tuple(namespaces),
        variants=parsed,
        providers=providers,
        priorities={k: v for k, v in priorities.items() if k != "namespace"},
        extra={k: v for k, v in doc.items() if k not in known},
    )


def parse_wheel_variant(data: bytes, filename: str) -> VariantMetadata:
    """A wheel's ``variant.json``: it must describe exactly the label in the filename."""
    label = variant_label(filename)
    where = f"{filename}: variant.json"
    meta = parse_variant_metadata(data, where)
    if label is None or list(meta.variants) != [label]:
        raise VariantError(f"{where}: describes {sorted(meta.variants)}, the filename {label}")
    return meta


def _properties(label: Any, props: Any, namespaces: set[str], where: str) -> Properties:
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise VariantError(f"{where}: {label!r} is not a variant label")
    if not isinstance(props, dict):
        raise VariantError(f"{where}: variants.{label} is not an object")
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for namespace, features in props.items():
        if not isinstance(namespace, str) or not _NAME.fullmatch(namespace):
            raise VariantError(f"{where}: variants.{label}: {namespace!r} is not a namespace")
        if not isinstance(features, dict):
            raise VariantError(f"{where}: variants.{label}.{namespace} is not an object")
        kept: dict[str, tuple[str, ...]] = {}
        for feature, values in features.items():
            if not isinstance(feature, str) or not _NAME.fullmatch(feature):
                raise VariantError(f"{where}: variants.{label}.{namespace}: bad feature")
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) and _VALUE.fullmatch(v) for v in values)
                or len(set(values)) != len(values)
            ):
                raise VariantError(
                    f"{where}: variants.{label}.{namespace}.{feature} must list unique values"
                )
            kept[feature] = tuple(sorted(values))
        if kept:
            if namespace not in namespaces:
                raise VariantError(f"{where}: namespace {namespace} not in default-priorities")
            out[namespace] = kept
    if label == NULL_LABEL and out:
        raise VariantError(f"{where}: the null variant must have no properties")
    return out


# Merge and render ------------------------------------------------------------


def merge(documents: Sequence[VariantMetadata]) -> VariantMetadata:
    """PEP 825's combination of variant metadata; `VariantError` where they disagree."""
    if not documents:
        raise VariantError("nothing to merge")
    first = documents[0]
    namespaces = first.namespaces
    variants: dict[str, Properties] = {}
    providers: dict[str, Any] | None = None
    for doc in documents:
        for what, mine, theirs in (
            ("$schema", first.schema, doc.schema),
            ("default-priorities", first.priorities, doc.priorities),
            ("top-level keys", first.extra, doc.extra),
        ):
            if mine != theirs:
                raise VariantError(f"variant metadata disagree on {what}")
        shorter, longer = sorted((namespaces, doc.namespaces), key=len)
        if longer[: len(shorter)] != shorter:
            raise VariantError(
                f"namespace priorities {list(namespaces)} and {list(doc.namespaces)} disagree"
            )
        namespaces = longer
        for label, props in doc.variants.items():
            if variants.setdefault(label, props) != props:
                raise VariantError(f"variant {label} has different properties in two files")
        if doc.providers is not None:
            providers = providers if providers is not None else {}
            for namespace, provider in doc.providers.items():
                if providers.setdefault(namespace, provider) != provider:
                    raise VariantError(f"namespace {namespace} has two different providers")
    return replace(first, namespaces=namespaces, variants=variants, providers=providers)


def to_json(meta: VariantMetadata) -> dict[str, Any]:
    doc: dict[str, Any] = dict(meta.extra)
    doc["$schema"] = meta.schema
    doc["default-priorities"] = {"namespace": list(meta.namespaces), **meta.priorities}
    doc["variants"] = {
        label: {ns: {f: list(vs) for f, vs in feats.items()} for ns, feats in props.items()}
        for label, props in meta.variants.items()
    }
    if meta.providers is not None:
        doc["providers"] = dict(meta.providers)
    return doc


def render(meta: VariantMetadata) -> bytes:
    """Deterministic bytes: object keys sorted; lists (priorities, values) keep their order."""
    text = json.dumps(to_json(meta), indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode()
