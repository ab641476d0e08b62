"""Project pages shaped like the public index's, written as static files for nginx.

The shape matters more than the content: file names by version, Python and platform;
per-file keys as the index sends them (hashes, core-metadata, size, upload-time,
provenance, yanked); URLs under ``/files/packages/ab/cd/<digest>/``; both PEP 691 JSON
and PEP 503 HTML, each also pre-compressed for nginx's gzip_static. Only the files a
workload downloads exist on disk; the rest are entries.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

WIDE_PLATFORMS = (
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "musllinux_1_1_x86_64",
    "musllinux_1_1_aarch64",
    "macosx_10_9_x86_64",
    "macosx_11_0_arm64",
    "macosx_10_9_universal2",
    "win_amd64",
    "win32",
)
PYTHONS = ("cp38", "cp39", "cp310", "cp311", "cp312", "cp313")


@dataclass(frozen=True)
class Shape:
    """How a project's files spread over versions: ``pure`` means one py3 wheel and an
    sdist per version; otherwise a wheel per Python and platform, and an sdist."""

    files: int
    pure: bool = False


# Sizes of real pages: a small library, a mid-size one, a larger one, numpy's 4,415
# files and grpcio's ~11,000 (4.7 MB of JSON).
COLD_SHAPES = {
    "small": Shape(150, pure=True),
    "medium": Shape(1_000),
    "large": Shape(2_500),
    "numpy": Shape(4_415),
    "grpcio": Shape(11_000),
}
QUICK_SHAPES = {
    "small": Shape(20, pure=True),
    "medium": Shape(60),
    "large": Shape(120),
    "numpy": Shape(200),
    "grpcio": Shape(400),
}


def escaped(project: str) -> str:
    return canonicalize_name(project).replace("-", "_")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_url(sha256: str, filename: str) -> str:
    """Root-relative, so a proxy that keeps upstream URLs resolves them against itself."""
    return f"/files/packages/{sha256[:2]}/{sha256[2:4]}/{sha256[4:]}/{filename}"


def entry(
    filename: str,
    sha256: str,
    size: int,
    *,
    requires_python: str | None = ">=3.8",
    metadata_sha256: str | None = None,
    upload_time: str = "2024-06-16T12:34:56.789012Z",
) -> dict[str, object]:
    item: dict[str, object] = {}
    if metadata_sha256 is not None:
        item["core-metadata"] = {"sha256": metadata_sha256}
        item["data-dist-info-metadata"] = {"sha256": metadata_sha256}
    item.update(
        filename=filename,
        hashes={"sha256": sha256},
        provenance=None,
        **{"requires-python": requires_python},
        size=size,
        **{"upload-time": upload_time},
        url=file_url(sha256, filename),
        yanked=False,
    )
    return item


def _filenames(project: str, shape: Shape) -> Iterator[tuple[str, str]]:
    """(version, filename), oldest version first, as many as the shape asks."""
    name = escaped(project)
    count = 0
    for i in range(10_000):
        version = f"{1 + i // 40}.{(i // 8) % 5}.{i % 8}"
        if shape.pure:
            names = [f"{name}-{version}-py3-none-any.whl"]
        else:
            names = [
                f"{name}-{version}-{py}-{py}-{platform}.whl"
                for py in PYTHONS
                for platform in WIDE_PLATFORMS
            ]
        names.append(f"{name}-{version}.tar.gz")
        for filename in names:
            yield version, filename
            count += 1
            if count == shape.files:
                return


def synthetic_files(project: str, shape: Shape) -> list[dict[str, object]]:
    files = []
    for i, (_, filename) in enumerate(_filenames(project, shape)):
        digest = _digest(filename)
        # Older uploads predate core-metadata and Requires-Python, as on the real index.
        recent = i >= shape.files * 4 // 5
        files.append(
            entry(
                filename,
                digest,
                2_000_000 + (i * 7919) % 9_000_000,
                requires_python=">=3.8" if recent else None,
                metadata_sha256=_digest(filename + ".metadata") if recent else None,
                upload_time=f"20{18 + i * 7 // max(shape.files, 1)}-0{1 + i % 9}-1{i % 10}"
                f"T0{i % 10}:{i % 60:02d}:{(i * 13) % 60:02d}.{i:06d}Z",
            )
        )
    return files


def render_json(project: str, files: list[dict[str, object]]) -> bytes:
    versions = sorted({str(f["filename"]).split("-")[1] for f in files})
    data = {
        "meta": {"_last-serial": 25_000_000, "api-version": "1.1"},
        "name": canonicalize_name(project),
        "files": files,
        "versions": versions,
    }
    return json.dumps(data, separators=(",", ":")).encode()


def _anchor(item: dict[str, object]) -> str:
    hashes = item["hashes"]
    assert isinstance(hashes, dict)
    href = f"{item['url']}#sha256={hashes['sha256']}"
    attrs = f' href="{html.escape(href)}"'
    if item.get("requires-python"):
        attrs += f' data-requires-python="{html.escape(str(item["requires-python"]))}"'
    metadata = item.get("core-metadata")
    if isinstance(metadata, dict):
        value = f"sha256={metadata['sha256']}"
        attrs += f' data-dist-info-metadata="{value}" data-core-metadata="{value}"'
    return f"    <a{attrs}>{html.escape(str(item['filename']))}</a><br />\n"


def render_html(project: str, files: Iterable[dict[str, object]]) -> bytes:
    title = html.escape(str(canonicalize_name(project)))
    head = (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.1">\n'
        f"    <title>Links for {title}</title>\n  </head>\n  <body>\n"
        f"    <h1>Links for {title}</h1>\n"
    )
    body = "".join(_anchor(f) for f in files)
    return (head + body + "  </body>\n</html>\n").encode()


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(data, 6, mtime=0))


def write_project(root: Path, project: str, files: list[dict[str, object]]) -> int:
    """Both formats of the page under ``root/simple/<name>/``; returns the JSON's size."""
    folder = root / "simple" / canonicalize_name(project)
    folder.mkdir(parents=True, exist_ok=True)
    body = render_json(project, files)
    _write(folder / "index.json", body)
    _write(folder / "index.html", render_html(project, files))
    return len(body)


def write_root(root: Path, projects: Iterable[str]) -> None:
    names = sorted({canonicalize_name(p) for p in projects})
    folder = root / "simple"
    folder.mkdir(parents=True, exist_ok=True)
    data = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
    _write(folder / "index.json", json.dumps(data).encode())
    links = "".join(f'    <a href="/simple/{n}/">{n}</a>\n' for n in names)
    page = f"<!DOCTYPE html>\n<html>\n  <body>\n{links}  </body>\n</html>\n"
    _write(folder / "index.html", page.encode())


def place_file(root: Path, source: Path, *, metadata: bytes | None = None) -> dict[str, object]:
    """A real file under its index URL (hard-linked, so a 2 GiB file costs no copy), and
    its page entry; ``metadata``: a wheel's METADATA, served beside it (PEP 658)."""
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    sha256 = digest.hexdigest()
    target = root / file_url(sha256, source.name).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.hardlink_to(source)
    metadata_sha256 = None
    if metadata is not None:
        target.with_name(target.name + ".metadata").write_bytes(metadata)
        metadata_sha256 = hashlib.sha256(metadata).hexdigest()
    return entry(source.name, sha256, source.stat().st_size, metadata_sha256=metadata_sha256)
