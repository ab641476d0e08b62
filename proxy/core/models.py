"""Index models: a project page and its files, keeping every upstream key.

A `File` is the PEP 691 file dictionary in typed form. Keys hostfit does not
interpret (``upload-time``, ``provenance``, keys from future PEPs) are kept in
``extra`` verbatim, so a page survives the round trip through the proxy intact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from packaging.utils import NormalizedName

if TYPE_CHECKING:
    from proxy.core.families import Family

METADATA_KEYS = ("core-metadata", "dist-info-metadata")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_sha256(text: str) -> bool:
    """A sha256 digest as hostfit keeps them: 64 lowercase hex digits, nothing else (not a
    trailing newline, which ``$`` lets through)."""
    return _SHA256_HEX.fullmatch(text) is not None


def stored_digest(value: bytes | None) -> str | None:
    """A digest read back from a store, or None for anything but one (a record a fault or
    another version left is a miss, not an error on every page that reads it)."""
    if value is None or len(value) != 64:
        return None
    text = value.decode("ascii", "replace")
    return text if is_sha256(text) else None


@dataclass(frozen=True, slots=True)
class File:
    filename: str
    url: str
    hashes: Mapping[str, str]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    @property
    def requires_python(self) -> str | None:
        value = self.extra.get("requires-python")
        return value if isinstance(value, str) and value else None

    @property
    def yanked(self) -> bool | str:
        value = self.extra.get("yanked", False)
        if isinstance(value, str):
            return value or True
        return bool(value)

    @property
    def upload_time(self) -> str | None:
        value = self.extra.get("upload-time")
        return value if isinstance(value, str) else None

    @property
    def size(self) -> int | None:
        value = self.extra.get("size")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def core_metadata(self) -> bool | Mapping[str, str]:
        """PEP 658/714: False, True (present, hash unknown) or {hash name: digest}."""
        for key in METADATA_KEYS:
            value = self.extra.get(key)
            if value is None or value is False:
                continue  # most files of a big page: spared the abstract Mapping check
            if isinstance(value, Mapping):
                return {str(k): str(v) for k, v in value.items()}
            if value:
                return True
        return False

    @property
    def lists_metadata(self) -> bool:
        """``bool(core_metadata)`` without building its mapping (a big page asks 10,000 times)."""
        for key in METADATA_KEYS:
            value = self.extra.get(key)
            if value is None or value is False:
                continue
            if isinstance(value, Mapping):
                return bool(value)
            if value:
                return True
        return False

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


_new = object.__new__
# The slots' own setters, by name: they take no notice of the frozen class's __setattr__.
assert File.__slots__ == ("filename", "url", "hashes", "extra"), "new_file sets each field"
_filename = File.__dict__["filename"].__set__
_url = File.__dict__["url"].__set__
_hashes = File.__dict__["hashes"].__set__
_extra = File.__dict__["extra"].__set__


def new_file(filename: str, url: str, hashes: Mapping[str, str], extra: Mapping[str, Any]) -> File:
    """``File(filename, url, hashes, extra)`` for the parsers' loops, a big page's 10,000
    files: the frozen dataclass's __init__ sets each field through object.__setattr__,
    about twice this one's cost (0.4-0.6 µs a file more: 5-6 ms of a cold 11,000-file
    page). The same object."""
    file = _new(File)
    _filename(file, filename)
    _url(file, url)
    _hashes(file, hashes)
    _extra(file, extra)
    return file


@dataclass(frozen=True, slots=True)
class Page:
    """One project's file list. ``meta`` holds every top-level key but name and files."""

    name: NormalizedName
    files: tuple[File, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    # Where and how the page was obtained; never rendered.
    upstream: str = ""
    revision: str = ""  # changes whenever the content may have changed
    warning: str | None = None  # set when served stale because upstream failed
    provisional: bool = False  # decided before every report was in: cache briefly
    # Files taken off the page because they may not be fetched (their origin), with why.
    withheld: tuple[tuple[File, str], ...] = ()
    family: Family | None = None  # merged from a family of upstreams, one per build

    @property
    def api_version(self) -> str:
        inner = self.meta.get("meta")
        if isinstance(inner, Mapping):
            version = inner.get("api-version")
            if isinstance(version, str):
                return version
        return "1.0"

    def file(self, filename: str) -> File | None:
        for f in self.files:
            if f.filename == filename:
                return f
        return None


@dataclass(frozen=True, slots=True)
class ProjectList:
    """The root page: project names as upstream spelled them, plus top-level keys."""

    names: tuple[str, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
