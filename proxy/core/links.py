"""Point a page's files back at the proxy, and advertise PEP 658 metadata for wheels."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import quote

from proxy.core.models import METADATA_KEYS, File, Page
from proxy.core.variants import VARIANTS_SUFFIX

# What `quote` leaves as it is: most names, so a big page skips 20,000 quote calls.
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


def _quoted(text: str) -> str:
    return text if _UNQUOTED.fullmatch(text) else quote(text)


def file_path(project: str, filename: str) -> str:
    """Relative to a project page, so the link works under every URL prefix."""
    return f"../../files/{_quoted(project)}/{_quoted(filename)}"


def link_file(project: str, file: File, metadata_sha256: str | None) -> File:
    return _linked(file, f"../../files/{_quoted(project)}/", metadata_sha256)


def _linked(file: File, folder: str, metadata_sha256: str | None) -> File:
    if file.filename.endswith(VARIANTS_SUFFIX):
        # Beside the page, not under files/: what it says depends on the host (PEP 825 lets
        # the index choose the URL; the name must end the path, installers read it there).
        return replace(file, url=quote(file.filename))
    extra = file.extra
    if file.is_wheel:
        upstream = file.core_metadata
        if isinstance(upstream, Mapping) and upstream:
            advertised: bool | dict[str, str] = dict(upstream)
        elif metadata_sha256 is not None:
            advertised = {"sha256": metadata_sha256}
        else:
            advertised = True
        extra = dict(extra)
        for key in METADATA_KEYS:
            extra[key] = advertised
    # The constructor, not `replace`, on this per-file path: a test checks no field is lost.
    return File(file.filename, folder + _quoted(file.filename), file.hashes, extra)


def link_page(page: Page, metadata_hashes: Mapping[str, str]) -> Page:
    """``metadata_hashes`` maps a wheel's sha256 to the sha256 of its extracted METADATA."""
    folder = f"../../files/{_quoted(page.name)}/"
    get = metadata_hashes.get
    files = tuple(_linked(f, folder, get(f.hashes.get("sha256") or "")) for f in page.files)
    return replace(page, files=files)
