"""Versions of a page's files, from their filenames (`packaging` does the parsing)."""

from __future__ import annotations

from collections.abc import Sequence

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from proxy.core.models import File


def file_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def newest_versions(files: Sequence[File], count: int) -> list[File]:
    """The files of the ``count`` newest versions among them, in their page order."""
    versions = sorted({v for f in files if (v := file_version(f.filename)) is not None})
    newest = set(versions[-count:]) if count > 0 else set()
    return [f for f in files if file_version(f.filename) in newest]
