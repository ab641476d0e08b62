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

# Every source archive pip installs (pip/_internal/utils/filetypes.py), compared as pip
# does, ignoring case. `parse_sdist_filename` knows only .tar.gz and .zip, but a rule about
# a version must see "vuln-1.0.tgz" as 1.0 too, or pip fetches it past the rule.
SDIST_EXTENSIONS = (
    ".tar.gz",
    ".zip",
    ".tgz",
    ".tar",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
)


@lru_cache(maxsize=MEMO)
def file_version(filename: str) -> Version | None:
    """A file's version from its name; None for a name that is neither a valid wheel name
    nor a source archive pip accepts named ``<name>-<version>.<ext>``."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(split_label(filename)[0])[1]
        lowered = filename.lower()
        for ext in SDIST_EXTENSIONS:
            if lowered.endswith(ext):
                return parse_sdist_filename(filename[: -len(ext)] + ".tar.gz")[1]
        return None
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
