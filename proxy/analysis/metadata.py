"""Read a wheel's METADATA (or another .dist-info member) from a seekable source, within
fixed bounds."""

from __future__ import annotations

import re
import zipfile
from typing import IO

from proxy.errors import HostfitError

MAX_METADATA_BYTES = 8 * 1024 * 1024


class MetadataError(HostfitError):
    status_code = 502


def read_metadata(source: IO[bytes], filename: str) -> bytes:
    """The bytes of ``<name>.dist-info/METADATA`` at the top of the wheel."""
    return read_dist_info_file(source, filename, "METADATA")


def read_dist_info_file(
    source: IO[bytes], filename: str, member: str, limit: int = MAX_METADATA_BYTES
) -> bytes:
    """The bytes of ``<name>.dist-info/<member>`` (``METADATA``, ``variant.json``); only the
    zip directory and that member are read, so a remote source costs a few ranges."""
    pattern = re.compile(r"^[^/]+\.dist-info/" + re.escape(member) + "$")
    try:
        with zipfile.ZipFile(source) as archive:
            members = [i for i in archive.infolist() if pattern.match(i.filename)]
            if len(members) != 1:
                raise MetadataError(
                    f"{filename}: expected one .dist-info/{member}, found {len(members)}"
                )
            info = members[0]
            if info.file_size > limit:
                raise MetadataError(f"{filename}: {member} is {info.file_size} bytes")
            with archive.open(info) as opened:
                data = opened.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise MetadataError(f"{filename}: cannot read {member}: {exc}") from None
    if len(data) > limit:
        raise MetadataError(f"{filename}: {member} exceeds {limit} bytes")
    return data
