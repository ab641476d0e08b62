"""Deterministic wheel rewrites: a truthful platform tag, fixed dependency metadata.

Same input bytes and same `Rewrite` give byte-identical output on every run and
every replica, whatever the zlib in use: unchanged members are copied as they are
stored (compressed bytes, CRC, timestamps, order), the three rewritten members
(``WHEEL``, ``METADATA``, ``RECORD``) are stored uncompressed with their original
timestamps, and zip extra fields and comments are dropped. Signatures over the old
RECORD (``RECORD.jws``, ``RECORD.p7s``) no longer hold and are dropped too.

The output takes a file name of its own: the new tags, and a build tag
``<original build or 0>.hf<digest>`` whose digest covers the input's sha256, the
rewrite and `REWRITE_VERSION`, so one name never stands for two contents. A variant
wheel (PEP 825) rewritten for installers that cannot read variants loses its label
from the name, and its variant markers are settled for the host
(`proxy.core.variant_markers`); its ``variant.json`` stays inside, saying which build
it is.
Pure: reads and writes the file objects it is given, nothing else.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from proxy.core.report import Report
from proxy.core.rules import Rules
from proxy.core.variant_markers import Unsettled, settle_markers, split_headers
from proxy.core.variants import split_label
from proxy.errors import HostfitError

# Bump whenever the same input and rewrite could give different bytes.
REWRITE_VERSION = 1
_ZIP64_LIMIT = 0xFFFFFFFF
_CHUNK = 1024 * 1024
_SIGNATURES = ("RECORD.jws", "RECORD.p7s")
# What zipfile raises for a member it cannot give back: a bad CRC, a damaged deflate
# stream, a compression method it does not know, a stream cut short. A damaged wheel is a
# rewrite that cannot be made (said once, the original served), not a crash to retry.
_DAMAGED = (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError)


class RewriteError(HostfitError):
    """A wheel that cannot be rewritten; the original is served instead."""


@dataclass(frozen=True, slots=True)
class Rewrite:
    platform: str | None = None  # replaces every platform tag of the wheel
    add_requires: tuple[str, ...] = ()
    remove_requires: frozenset[str] = frozenset()
    requires_python: str | None = None  # None: unchanged; "": removed
    variant: str | None = None  # the variant label the name drops
    rules: tuple[str, ...] = field(default=(), compare=False)  # where each rule is written
    # The variant's properties the host supports: its variant markers are settled by them.
    variant_properties: frozenset[str] = frozenset()

    @property
    def changes_metadata(self) -> bool:
        return bool(self.add_requires or self.remove_requires or self.requires_python is not None)

    def recipe(self) -> dict[str, Any]:
        recipe = {
            "platform": self.platform,
            "add_requires": list(self.add_requires),
            "remove_requires": sorted(self.remove_requires),
            "requires_python": self.requires_python,
        }
        if self.variant is not None:  # absent otherwise: earlier rewrites keep their digests
            recipe["variant"] = self.variant
            recipe["variant_properties"] = sorted(self.variant_properties)
        return recipe

    def describe(self) -> str:
        parts = []
        if self.platform:
            parts.append(f"platform tag {self.platform}")
        if self.add_requires:
            parts.append("adds " + ", ".join(self.add_requires))
        if self.remove_requires:
            parts.append("removes " + ", ".join(sorted(self.remove_requires)))
        if self.requires_python is not None:
            parts.append(f"Requires-Python {self.requires_python or '(removed)'}")
        if self.variant is not None:
            parts.append(f"variant {self.variant} under a name without a variant label")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Rewritten:
    filename: str
    sha256: str
    size: int
    metadata: bytes


def plan(rules: Rules, filename: str, report: Report | None) -> Rewrite | None:
    """The rewrite the rules ask for this wheel, or None."""
    try:
        name, version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    wheres: list[str] = []
    platform = None
    retags = [r for r in rules.retags(name) if r.match.covers(name, version)]
    if retags and report is not None:
        platform = truthful_platform(tags, report)
        if platform is not None:
            wheres.append(retags[0].where)
    add: list[str] = []
    remove: set[str] = set()
    requires_python = None
    for fix in rules.fixes_for(name):
        if fix.match.covers(name, version):
            add.extend(fix.add_requires)
            remove |= fix.remove_requires
            if fix.requires_python is not None:
                requires_python = fix.requires_python
            wheres.append(fix.where)
    if platform is None and not add and not remove and requires_python is None:
        return None
    return Rewrite(platform, tuple(add), frozenset(remove), requires_python, rules=tuple(wheres))


def truthful_platform(tags: frozenset[Tag], report: Report) -> str | None:
    """The report's derived tag, where the wheel's own platform tag is not the truth.

    Two cases: the tag claims less than the binaries need (``overclaims``), or a
    plain ``linux_*`` wheel whose binaries justify a manylinux/musllinux tag.
    """
    derived = report.derived_platform_tag
    if report.status != "ok" or not derived:
        return None
    platforms = {t.platform for t in tags}
    if platforms == {derived}:
        return None
    if report.overclaims:
        return derived
    if all(p.startswith("linux_") for p in platforms):
        arches = {p.removeprefix("linux_") for p in platforms}
        if len(arches) == 1 and derived.endswith(f"_{arches.pop()}"):
            return derived
    return None


def rewrite_digest(source_sha256: str, rewrite: Rewrite) -> str:
    recipe = {"version": REWRITE_VERSION, "input": source_sha256, "rewrite": rewrite.recipe()}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def new_filename(filename: str, source_sha256: str, rewrite: Rewrite) -> str:
    filename = split_label(filename)[0]
    build = parse_wheel_filename(filename)[2]
    stem = filename.removesuffix(".whl").split("-")
    new_build = _build_tag(build, rewrite_digest(source_sha256, rewrite))
    tag_part = "-".join(stem[-3:])
    if rewrite.platform is not None:
        pythons, abis = stem[-3], stem[-2]
        tag_part = f"{pythons}-{abis}-{rewrite.platform}"
    result = f"{stem[0]}-{stem[1]}-{new_build}-{tag_part}.whl"
    parse_wheel_filename(result)  # never produce a name installers refuse
    return result


def _build_tag(build: tuple[()] | tuple[int, str], digest: str) -> str:
    original = f"{build[0]}{build[1]}" if build else "0"
    return f"{original}.hf{digest[:12]}"


def rewrite_wheel(
    source: IO[bytes], sink: IO[bytes], filename: str, source_sha256: str, rewrite: Rewrite
) -> Rewritten:
    """Write the rewritten wheel to ``sink``; raises `RewriteError` for what it cannot do."""
    target = new_filename(filename, source_sha256, rewrite)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise RewriteError(f"{filename}: not a readable zip: {exc}") from None
    with archive:
        infos = archive.infolist()
        dist_info = _dist_info(infos, filename)
        wheel_name, metadata_name, record_name = (
            f"{dist_info}/WHEEL", f"{dist_info}/METADATA", f"{dist_info}/RECORD",
        )  # fmt: skip
        members = {i.filename: i for i in infos}
        for needed in (wheel_name, metadata_name, record_name):
            if needed not in members:
                raise RewriteError(f"{filename}: no {needed}")
        new_build = parse_wheel_filename(target)[2]
        wheel = _wheel_file(_read(archive, wheel_name), rewrite.platform, new_build)
        metadata = _read(archive, metadata_name)
        if rewrite.variant is not None:
            # First: a fix names requirements by name, which a line whose marker holds a
            # variant clause does not parse to (packaging refuses the variables).
            try:
                metadata = settle_markers(metadata, rewrite.variant, rewrite.variant_properties)
            except UnicodeDecodeError:
                raise RewriteError(f"{filename}: METADATA is not UTF-8") from None
            except Unsettled as exc:
                raise RewriteError(f"{filename}: {exc}") from None
        if rewrite.changes_metadata:
            metadata = rewrite_metadata(metadata, rewrite)
        replaced = {wheel_name: wheel, metadata_name: metadata}
        replaced[record_name] = _record(_read(archive, record_name), replaced, record_name)
        writer = _ZipWriter(sink)
        for info in infos:
            if info.filename in _signature_names(dist_info):
                continue
            data = replaced.get(info.filename)
            if data is not None:
                writer.add(info, data)
            else:
                writer.copy(source, info)
        writer.finish()
    return Rewritten(target, writer.sha256.hexdigest(), writer.offset, metadata)


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except _DAMAGED as exc:
        raise RewriteError(f"{name}: damaged member: {str(exc) or type(exc).__name__}") from None


def _signature_names(dist_info: str) -> set[str]:
    return {f"{dist_info}/{name}" for name in _SIGNATURES}


def _dist_info(infos: Sequence[zipfile.ZipInfo], filename: str) -> str:
    name, version, _, _ = parse_wheel_filename(split_label(filename)[0])
    found = {
        i.filename.split("/", 1)[0]
        for i in infos
        if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/WHEEL")
    }
    for candidate in found:
        stem = candidate.removesuffix(".dist-info")
        dist, _, dist_version = stem.rpartition("-")
        if canonicalize_name(dist) == name and _same_version(dist_version, version):
            return candidate
    raise RewriteError(f"{filename}: no .dist-info directory for {name} {version}")


def _same_version(text: str, version: Version) -> bool:
    try:
        return Version(text) == version
    except ValueError:
        return False


def _wheel_file(data: bytes, platform: str | None, build: tuple[()] | tuple[int, str]) -> bytes:
    text, newline = _decode(data)
    lines = text.split(newline)
    out: list[str] = []
    seen: set[str] = set()
    build_line = f"Build: {build[0]}{build[1]}" if build else None
    has_build = False
    for line in lines:
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key == "tag" and platform is not None:
            parts = value.strip().split("-")
            if len(parts) == 3:
                line = f"Tag: {parts[0]}-{parts[1]}-{platform}"
            if line in seen:
                continue
            seen.add(line)
        elif sep and key == "build" and build_line is not None:
            line, has_build = build_line, True
        out.append(line)
    if build_line is not None and not has_build:
        while out and out[-1] == "":
            out.pop()
        out.extend([build_line, ""])
    return newline.join(out).encode("utf-8")


def rewrite_metadata(data: bytes, rewrite: Rewrite) -> bytes:
    """Change Requires-Dist and Requires-Python in the header block; the body is kept as is."""
    head, blank, body, newline = split_headers(_decode(data)[0])
    if not blank:  # headers only: keep the final newline out of the header lines
        head, body = head.rstrip("\r\n"), newline
    lines = head.split(newline)
    out: list[str] = []
    last_requires = -1
    python_at = -1
    for line in lines:
        if line[:1] in (" ", "\t") and out:
            out[-1] += newline + line  # a folded continuation stays with its header
            continue
        key, sep, value = line.partition(":")
        lowered = key.strip().lower()
        if sep and lowered == "requires-dist":
            if _requirement_name(value) in rewrite.remove_requires:
                continue
            out.append(line)
            last_requires = len(out) - 1
            continue
        if sep and lowered == "requires-python" and rewrite.requires_python is not None:
            if rewrite.requires_python:
                out.append(f"Requires-Python: {rewrite.requires_python}")
                python_at = len(out) - 1
            continue
        out.append(line)
    if rewrite.requires_python and python_at < 0:
        out.insert(_after_version(out), f"Requires-Python: {rewrite.requires_python}")
        if last_requires >= 0:
            last_requires += 1
    added = [f"Requires-Dist: {req}" for req in rewrite.add_requires]
    position = last_requires + 1 if last_requires >= 0 else len(out)
    out[position:position] = added
    return (newline.join(out) + blank + body).encode("utf-8")


def _after_version(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        if line.lower().startswith("version:"):
            return i + 1
    return len(lines)


def _requirement_name(value: str) -> str | None:
    try:
        return canonicalize_name(Requirement(value.strip()).name)
    except InvalidRequirement:
        return None


def _decode(data: bytes) -> tuple[str, str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RewriteError("metadata is not UTF-8") from None
    return text, "\r\n" if "\r\n" in text else "\n"


def _record(data: bytes, replaced: dict[str, bytes], record_name: str) -> bytes:
    text, _ = _decode(data)
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise RewriteError(f"{record_name}: unreadable: {exc}") from None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        path = row[0]
        if path.rsplit("/", 1)[-1] in _SIGNATURES and path.count("/") == 1:
            continue
        if path in replaced and path != record_name:
            content = replaced[path]
            row = [path, _record_hash(content), str(len(content))]
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


class _ZipWriter:
    """Just enough of the zip format, written the same way every time."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.offset = 0
        self.sha256 = hashlib.sha256()
        self.central: list[bytes] = []

    def _write(self, data: bytes) -> None:
        self.sink.write(data)
        self.sha256.update(data)
        self.offset += len(data)

    def add(self, info: zipfile.ZipInfo, data: bytes) -> None:
        crc = zlib.crc32(data)
        self._entry(info, zipfile.ZIP_STORED, crc, len(data), len(data), 20)
        self._write(data)

    def copy(self, source: IO[bytes], info: zipfile.ZipInfo) -> None:
        if info.flag_bits & 0x1:
            raise RewriteError(f"{info.filename}: encrypted member")
        source.seek(info.header_offset)
        header = source.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise RewriteError(f"{info.filename}: bad local header")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        source.seek(info.header_offset + 30 + name_length + extra_length)
        self._entry(
            info, info.compress_type, info.CRC, info.compress_size, info.file_size,
            info.extract_version,
        )  # fmt: skip
        remaining = info.compress_size
        while remaining:
            chunk = source.read(min(_CHUNK, remaining))
            if not chunk:
                raise RewriteError(f"{info.filename}: truncated member")
            self._write(chunk)
            remaining -= len(chunk)

    def _entry(
        self, info: zipfile.ZipInfo, method: int, crc: int, csize: int, usize: int, needs: int
    ) -> None:
        if max(self.offset, csize, usize) >= _ZIP64_LIMIT or len(self.central) >= 0xFFFF:
            raise RewriteError("a wheel this large needs zip64, which rewriting does not support")
        name = info.filename.encode("utf-8")
        flags = 0x800 if not name.isascii() else 0  # names are UTF-8, say so where it matters
        dos_time, dos_date = _dos_time(info.date_time)
        local = struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", needs, flags, method, dos_time, dos_date,
            crc, csize, usize, len(name), 0,
        )  # fmt: skip
        central = struct.pack(
            "<4sBBHHHHHIIIHHHHHII", b"PK\x01\x02", info.create_version, info.create_system,
            needs, flags, method, dos_time, dos_date, crc, csize, usize, len(name), 0, 0, 0,
            info.internal_attr, info.external_attr, self.offset,
        )  # fmt: skip
        self.central.append(central + name)
        self._write(local + name)

    def finish(self) -> None:
        start = self.offset
        for entry in self.central:
            self._write(entry)
        size = self.offset - start
        if self.offset >= _ZIP64_LIMIT:
            raise RewriteError("a wheel this large needs zip64, which rewriting does not support")
        count = len(self.central)
        self._write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, size, start, 0))


def _dos_time(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    year = max(year, 1980)
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day
