"""Versions and tags of a page's files, from their filenames (`packaging` parses).

Parsing is memoised by filename: a page of 10,000 files is parsed once, not once per
question asked of it, and a filename always means the same version and tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from proxy.core.models import File
from proxy.core.variants import split_label

MEMO = 65536  # filenames remembered; a few numpy-sized pages


@lru_cache(maxsize=MEMO)
def file_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(split_label(filename)[0])[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def newest_versions(files: Sequence[File], count: int) -> list[File]:
    """The files of the ``count`` newest versions among them, in their page order."""
    versions = sorted({v for f in files if (v := file_version(f.filename)) is not None})
    newest = set(versions[-count:]) if count > 0 else set()
    return [f for f in files if file_version(f.filename) in newest]


@lru_cache(maxsize=MEMO)
def wheel_tags(filename: str) -> frozenset[Tag] | None:
    """A wheel's tags (a variant wheel's: those of its name without the label); None for
    a name that is not a valid wheel filename."""
    try:
        return parse_wheel_filename(split_label(filename)[0])[3]
    except InvalidWheelFilename:
        return None
