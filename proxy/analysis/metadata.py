"""Read a wheel's METADATA member from a seekable source, within fixed bounds."""

from __future__ import annotations

import re
import zipfile
from typing import IO

from proxy.errors import HostfitError

MAX_METADATA_BYTES = 8 * 1024 * 1024
_METADATA = re.compile(r"^[^/]+\.dist-info/METADATA$")


class MetadataError(HostfitError):
    status_code = 502


def read_metadata(source: IO[bytes], filename: str) -> bytes:
    """The bytes of ``<name>.dist-info/METADATA`` at the top of the wheel."""
    try:
        with zipfile.ZipFile(source) as archive:
            members = [i for i in archive.infolist() if _METADATA.match(i.filename)]
            if len(members) != 1:
                raise MetadataError(
                    f"{filename}: expected one .dist-info/METADATA, found {len(members)}"
                )
            info = members[0]
            if info.file_size > MAX_METADATA_BYTES:
                raise MetadataError(f"{filename}: METADATA is {info.file_size} bytes")
            with archive.open(info) as member:
                data = member.read(MAX_METADATA_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise MetadataError(f"{filename}: cannot read METADATA: {exc}") from None
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(f"{filename}: METADATA exceeds {MAX_METADATA_BYTES} bytes")
    return data
