"""Build PEP 825 variant wheels: a real wheel with ``*.dist-info/variant.json``, named
with its variant label, and the variant metadata documents that go with them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.core.variants import SCHEMA_850
from tests.support.wheels import WheelSpec, build_wheel

# Providers as uv 0.13.9 runs them vendored (PEP 850 `requires` / `plugin-api`).
NVIDIA_PROVIDER = {
    "requires": ["nvidia-variant-provider>=0.0.1,<1.0.0"],
    "plugin-api": "nvidia_variant_provider.plugin:NvidiaVariantPlugin",
}
X86_64_PROVIDER = {"requires": ["x86_64-variant-provider>=0.2.1,<1.0.0"]}
PROVIDERS = {"nvidia": NVIDIA_PROVIDER, "x86_64": X86_64_PROVIDER}


def variant_document(
    variants: dict[str, dict[str, Any]],
    namespaces: tuple[str, ...] = ("nvidia", "x86_64"),
    providers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "$schema": SCHEMA_850,
        "default-priorities": {"namespace": list(namespaces)},
        "variants": variants,
    }
    doc["providers"] = {ns: PROVIDERS[ns] for ns in namespaces} if providers is None else providers
    return doc


def build_variant_wheel(
    spec: WheelSpec, label: str, properties: dict[str, Any], out_dir: Path, **doc: Any
) -> Path:
    """The wheel ``spec`` describes, plus its ``variant.json``, named with ``label``."""
    document = variant_document({label: properties}, **doc)
    member = f"{spec.dist_info}/variant.json"
    files = {**spec.files, member: json.dumps(document, indent=2).encode()}
    built = build_wheel(replace(spec, files=files), out_dir / f".{label}")
    target = out_dir / built.name.replace(".whl", f"-{label}.whl")
    built.rename(target)
    built.parent.rmdir()
    return target
