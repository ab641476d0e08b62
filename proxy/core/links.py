"""Point a page's files back at the proxy, and advertise PEP 658 metadata for wheels."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from proxy.core.models import METADATA_KEYS, File, Page, new_file
from proxy.core.pages import render_json_entries
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


def _link(file: File, folder: str, metadata_sha256: str | None) -> tuple[str, dict[str, Any]]:
    """The file's URL on the proxy, and the keys linking sets in its extra."""
    if file.filename.endswith(VARIANTS_SUFFIX):
        # Beside the page, not under files/: what it says depends on the host (PEP 825 lets
        # the index choose the URL; the name must end the path, installers read it there).
        return quote(file.filename), _NOTHING
    url = folder + _quoted(file.filename)
    if not file.is_wheel:
        return url, _NOTHING
    upstream = file.core_metadata  # a mapping is built afresh: ours to hand on
    if isinstance(upstream, Mapping) and upstream:
        advertised: bool | Mapping[str, str] = upstream
    elif metadata_sha256 is not None:
        advertised = {"sha256": metadata_sha256}
    else:
        advertised = True
    return url, dict.fromkeys(METADATA_KEYS, advertised)


_NOTHING: dict[str, Any] = {}


def _linked(file: File, folder: str, metadata_sha256: str | None) -> File:
    url, keys = _link(file, folder, metadata_sha256)
    extra = {**file.extra, **keys} if keys else file.extra
    # `new_file`, not `replace`, on this per-file path: a test checks no field is lost.
    return new_file(file.filename, url, file.hashes, extra)


def link_page(page: Page, metadata_hashes: Mapping[str, str]) -> Page:
    """``metadata_hashes`` maps a wheel's sha256 to the sha256 of its extracted METADATA."""
    folder = f"../../files/{_quoted(page.name)}/"
    get = metadata_hashes.get
    files = tuple(_linked(f, folder, get(f.hashes.get("sha256") or "")) for f in page.files)
    return replace(page, files=files)


def render_linked_json(page: Page, metadata_hashes: Mapping[str, str]) -> bytes:
    """``render_json_page(link_page(page, metadata_hashes))``, byte for byte, without a
    linked `File` per file: a cold page's one rendering builds one dict per file."""
    folder = f"../../files/{_quoted(page.name)}/"
    get = metadata_hashes.get
    plain = _UNQUOTED.fullmatch
    entries: list[dict[str, Any]] = []
    add = entries.append
    for f in page.files:
        name, extra = f.filename, f.extra
        offered = extra.get("core-metadata")
        if (  # the usual wheel, in one test: a big page has 10,000 of them
            name.endswith(".whl")
            and f.hashes.__class__ is dict
            and plain(name)
            and "dist-info-metadata" not in extra
            and (offered is None or offered is False or _plain_digest(offered))
        ):
            if not offered:
                digest = get(f.hashes.get("sha256") or "")
                offered = True if digest is None else {"sha256": digest}
            entry = {"filename": name, "url": folder + name, "hashes": f.hashes, **extra}
            entry["core-metadata"] = entry["dist-info-metadata"] = offered
        else:
            url, keys = _link(f, folder, get(f.hashes.get("sha256") or ""))
            hashes = f.hashes if f.hashes.__class__ is dict else dict(f.hashes)
            entry = {"filename": name, "url": url, "hashes": hashes, **extra}
            if keys:
                entry.update(keys)
        add(entry)
    return render_json_entries(page, entries)


def _plain_digest(offered: object) -> bool:
    """``{"sha256": "<text>"}``, as `File.core_metadata` would give it back unchanged."""
    return (
        offered.__class__ is dict and len(offered) == 1 and offered.get("sha256").__class__ is str
    )
