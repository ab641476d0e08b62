"""Point a page's files back at the proxy, and advertise PEP 658 metadata for wheels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import quote

from proxy.core.models import METADATA_KEYS, File, Page
from proxy.core.variants import VARIANTS_SUFFIX


def file_path(project: str, filename: str) -> str:
    """Relative to a project page, so the link works under every URL prefix."""
    return f"../../files/{quote(project)}/{quote(filename)}"


def link_file(project: str, file: File, metadata_sha256: str | None) -> File:
    if file.filename.endswith(VARIANTS_SUFFIX):
        # Beside the page, not under files/: what it says depends on the host (PEP 825 lets
        # the index choose the URL; the name must end the path, installers read it there).
        return replace(file, url=quote(file.filename))
    extra = dict(file.extra)
    if file.is_wheel:
        upstream = file.core_metadata
        if isinstance(upstream, Mapping) and upstream:
            advertised: bool | dict[str, str] = dict(upstream)
        elif metadata_sha256 is not None:
            advertised = {"sha256": metadata_sha256}
        else:
            advertised = True
        for key in METADATA_KEYS:
            extra[key] = advertised
    return replace(file, url=file_path(project, file.filename), extra=extra)


def link_page(page: Page, metadata_hashes: Mapping[str, str]) -> Page:
    """``metadata_hashes`` maps a wheel's sha256 to the sha256 of its extracted METADATA."""
    files = tuple(link_file(page.name, f, metadata_hashes.get(f.sha256 or "")) for f in page.files)
    return replace(page, files=files)
