"""Project names: PEP 503 normalisation and validation without any I/O."""

from __future__ import annotations

from packaging.utils import InvalidName, NormalizedName, canonicalize_name

from proxy.errors import NotFound


def normalize_project(raw: str) -> NormalizedName:
    """The PEP 503 form of a project name; `NotFound` for a name no index can hold."""
    if not raw or len(raw) > 200:
        raise NotFound(f"invalid project name {raw[:200]!r}")
    try:
        return canonicalize_name(raw, validate=True)
    except InvalidName:
        raise NotFound(f"invalid project name {raw!r}") from None
