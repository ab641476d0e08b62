"""Parse upstream index pages (PEP 691 JSON, PEP 503 HTML) into models, and render them.

Parsing keeps every key; rendering writes every key back, so an unknown key from
upstream reaches the client in JSON. HTML can carry only what PEP 503 and its
successors define as attributes and meta tags.

One bad file entry never costs the whole page: an entry whose filename cannot be a
file name (``/``, ``\\``, NUL and other control characters, ``.``, ``..``), whose sha256
is not a hex digest, or that is not a file object at all is left off, and described in
``dropped`` when the caller passes a list. Rendering escapes every upstream text (HTML
attributes and text; JSON strings), so nothing upstream sends becomes markup.

JSON pages are read and written with orjson: writing a 5 MB page takes json.dumps
about 40 ms and orjson 3, on the path of a client waiting for a cold page. A page that
is not JSON as RFC 8259 defines it (NaN, Infinity, a lone surrogate anywhere) is refused
whole, as invalid JSON: json.loads let those through, and the page then either could
not be written back as UTF-8 or went to clients as invalid JSON.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from operator import attrgetter
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import orjson
from packaging.utils import canonicalize_name

from proxy.core.anchors import Extracted, extract
from proxy.core.models import METADATA_KEYS, File, Page, ProjectList, is_sha256, new_file
from proxy.errors import HostfitError


class PageError(HostfitError):
    """An upstream page that cannot be understood."""

    status_code = 502


# HTML attribute <-> PEP 691 key, for the attributes that carry a file key.
_ATTR_KEYS = {
    "data-requires-python": "requires-python",
    "data-yanked": "yanked",
    "data-core-metadata": "core-metadata",
    "data-dist-info-metadata": "dist-info-metadata",
    "data-gpg-sig": "gpg-sig",
    "data-provenance": "provenance",
}
# <meta name=...> <-> top-level PEP 691 keys.
_META_TAGS = {
    "pypi:project-status": ("project-status", "status"),
    "pypi:project-status-reason": ("project-status", "reason"),
}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A name none of `unusable_filename`'s reasons applies to, but '.' and '..': one match.
_PLAIN_FILENAME = re.compile(r"[^/\\\x00-\x1f\x7f]+")

# URLs `urljoin` would give back as they are (absolute http(s)), or that only gain the
# base's origin (a root-relative path without dot segments): plain ASCII, no query,
# fragment, parameters or brackets, so urllib's normalising round trip changes nothing.
_URL_CHARS = r"A-Za-z0-9\-._~%!$&'()*+,=:@"
_ABSOLUTE = re.compile(rf"https?://[{_URL_CHARS}][{_URL_CHARS}/]*")
_ROOTED = re.compile(rf"/[{_URL_CHARS}][{_URL_CHARS}/]*")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")


class Resolver:
    """``urljoin(page_url, url)`` as a function of ``url``, without urllib's parsing for
    the links index pages hold (10,000 of them on a big page); others go to urljoin."""

    def __init__(self, page_url: str) -> None:
        self.page_url = page_url
        base = urlsplit(page_url)
        self.origin = f"{base.scheme}://{base.netloc}"
        self.rooted = base.scheme in ("http", "https") and bool(base.netloc)

    def fast(self, url: str) -> str | None:
        """The join where it needs no parsing, else None."""
        if _ABSOLUTE.fullmatch(url):
            return url
        if self.rooted and _ROOTED.fullmatch(url) and not _DOT_SEGMENT.search(url):
            return self.origin + url
        return None

    def __call__(self, url: str) -> str:
        return self.fast(url) or urljoin(self.page_url, url)


def unusable_filename(filename: object) -> str | None:
    """Why this cannot be a file's name (in a URL path, on a disk, in a header), or None."""
    if not isinstance(filename, str) or not filename:
        return "no filename"
    if "/" in filename or "\\" in filename:
        return "a path separator in the filename"
    if _CONTROL.search(filename):
        return "a control character in the filename"
    if filename in (".", ".."):
        return "a directory name as filename"
    return None


def _unusable(file: File) -> str | None:
    name = file.filename
    if _PLAIN_FILENAME.fullmatch(name) and name not in (".", ".."):
        sha256 = file.hashes.get("sha256")
        if sha256 is None or is_sha256(sha256):
            return None
    why = unusable_filename(name)
    if why is None and file.sha256 is not None and not is_sha256(file.sha256):
        why = "a sha256 that is not a hex digest"
    return why


def _shown(value: object) -> str:
    """Upstream text for a log line: ASCII, no line breaks, bounded."""
    text = ascii(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _keep(file: File, dropped: list[str] | None) -> bool:
    why = _unusable(file)
    if why is not None and dropped is not None:
        dropped.append(f"{_shown(file.filename)}: {why}")
    return why is None


def parse_json_page(body: bytes, page_url: str, dropped: list[str] | None = None) -> Page:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PageError(f"invalid JSON page: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise PageError("JSON page has no 'files' list")
    name = data.get("name")
    if not isinstance(name, str):
        raise PageError("JSON page has no 'name'")
    files: list[File] = []
    keep = files.append
    digests: list[str] = []  # of the files the usual test kept: checked at once, after
    digested = digests.append
    names: set[str] = set()  # a name listed twice shows as fewer names than files
    named = names.add
    resolve = Resolver(page_url)
    absolute, joined = _ABSOLUTE.fullmatch, resolve.fast
    # Each entry belongs to this parse alone: what is left of it is ``extra``, uncopied.
    for item in data["files"]:
        if item.__class__ is dict:
            filename, url = item.pop("filename", None), item.pop("url", None)
            hashes = item.pop("hashes", {})
            if (  # the usual entry, in one test: a big page has 10,000 of them
                filename.__class__ is str
                and url.__class__ is str
                and hashes.__class__ is dict
                and len(hashes) == 1
                and (digest := hashes.get("sha256")).__class__ is str
                and len(digest) == 64
                # isprintable: no control character (nor other unusual ones, which the
                # full test below then sees); with no separator, a plain file name.
                and filename
                and filename.isprintable()
                and "/" not in filename
                and "\\" not in filename
                and filename not in (".", "..")
                and (link := url if absolute(url) else joined(url)) is not None
            ):
                keep(new_file(filename, link, hashes, item))
                digested(digest)
                named(filename)
                continue
            file = _json_file(item, filename, url, hashes, resolve, dropped)
        else:
            file = _not_a_file(None, dropped)
        if file is not None and _keep(file, dropped):
            keep(file)
            named(file.filename)
    plain = _lowercase_hex("".join(digests))
    if not plain:
        files = [f for f in map(_lowered, files) if _keep(f, dropped)]
    meta = {k: v for k, v in data.items() if k not in ("name", "files")}
    once = plain and len(names) == len(files)  # else files were left off: count again
    kept = tuple(files) if once else _first_of_each(files, dropped)
    return Page(name=canonicalize_name(name), files=kept, meta=meta)


def _first_of_each(files: list[File], dropped: list[str] | None) -> tuple[File, ...]:
    """The first entry of each filename: the proxy serves a file by its name, so a second
    entry's hash (and its verdict) would stand beside bytes that are the first's."""
    if len(set(map(_FILENAME, files))) == len(files):  # one pass in C; the usual page
        return tuple(files)
    seen: set[str] = set()
    kept = []
    for f in files:
        if f.filename in seen:
            if dropped is not None:
                dropped.append(f"{_shown(f.filename)}: listed again; the first entry is kept")
            continue
        seen.add(f.filename)
        kept.append(f)
    return tuple(kept)


_FILENAME = attrgetter("filename")


def _lowercase_hex(text: str) -> bool:
    """Whether ``text`` is lowercase hex digits only, a fourth of a regex's time over a big
    page's 700 KB of digests: fromhex takes either case and skips whitespace, so a byte
    for every two characters means hex digits only."""
    try:
        decoded = bytes.fromhex(text)
    except ValueError:
        return False
    return 2 * len(decoded) == len(text) and text.lower() == text


def _json_file(
    item: dict[str, Any],
    filename: object,
    url: object,
    hashes: object,
    resolve: Resolver,
    dropped: list[str] | None,
) -> File | None:
    if isinstance(filename, str) and isinstance(url, str) and isinstance(hashes, dict):
        hashes = {str(k).lower(): str(v).lower() for k, v in hashes.items()}
        return File(filename, resolve(url), hashes, item)
    return _not_a_file(filename, dropped)


def _lowered(file: File) -> File:
    """The file with its hashes lowered, as every entry not taken by the usual test is."""
    hashes = {k.lower(): v.lower() for k, v in file.hashes.items()}
    return file if hashes == file.hashes else File(file.filename, file.url, hashes, file.extra)


def _not_a_file(filename: object, dropped: list[str] | None) -> File | None:
    """None, having said why in ``dropped``."""
    if dropped is not None:
        dropped.append(f"{_shown(filename)}: not a file entry with filename, url and hashes")
    return None


def parse_json_root(body: bytes) -> ProjectList:
    try:
        data = orjson.loads(body)
        projects = data["projects"]
        names = tuple(str(p["name"]) for p in projects)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise PageError(f"invalid JSON project list: {exc!r}") from None
    return ProjectList(names=names, meta={k: v for k, v in data.items() if k != "projects"})


def _parse_html(body: bytes) -> Extracted:
    try:
        return extract(body.decode("utf-8", errors="replace"))
    except Exception as exc:  # html.parser raises assorted errors on garbage
        raise PageError(f"invalid HTML page: {exc}") from None


def _metadata_attr(value: str | None) -> bool | dict[str, str]:
    if value is None or value.lower() == "true" or value == "":
        return True
    name, sep, digest = value.partition("=")
    return {name.lower(): digest.lower()} if sep else True


_FRAGMENT = re.compile(r"[A-Za-z0-9=._\-]+")


def _split_href(href: str, resolve: Resolver) -> tuple[str, str]:
    """``urldefrag(urljoin(page_url, href))``; a plain ``#name=digest`` is split off first."""
    target, sep, fragment = href.partition("#")
    if sep and _FRAGMENT.fullmatch(fragment):
        url = resolve.fast(target)
        if url is not None:
            return url, fragment
    joined, fragment = urldefrag(resolve(href))
    return joined, fragment


def parse_html_page(
    body: bytes, page_url: str, name: str, dropped: list[str] | None = None
) -> Page:
    parser = _parse_html(body)
    files = []
    resolve = Resolver(page_url)
    for attrs, text in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = _split_href(href, resolve)
        filename = text or url.rsplit("/", 1)[-1]
        hashes = {}
        hash_name, sep, digest = fragment.partition("=")
        if sep and digest:
            hashes[hash_name.lower()] = digest.lower()
        extra: dict[str, Any] = {}
        for attr, value in attrs.items():
            key = _ATTR_KEYS.get(attr)
            if key in METADATA_KEYS:
                extra[key] = _metadata_attr(value)
            elif key == "yanked":
                extra[key] = value if value else True
            elif key == "gpg-sig":
                extra[key] = (value or "").lower() == "true"
            elif key is not None:
                extra[key] = value
            elif attr.startswith("data-") and value is not None:
                data_key = attr.removeprefix("data-")
                # An attribute named like a file's own key (data-url) must never stand in
                # for it: the JSON rendering would send clients to the upstream's choice.
                if data_key not in _OWN_KEYS:
                    extra[data_key] = value
        file = new_file(filename, url, hashes, extra)
        if _keep(file, dropped):
            files.append(file)
    meta: dict[str, Any] = {}
    version = parser.metas.get("pypi:repository-version")
    if version:
        meta["meta"] = {"api-version": version}
    for tag, (key, sub) in _META_TAGS.items():
        if tag in parser.metas:
            meta.setdefault(key, {})[sub] = parser.metas[tag]
    for tag in ("pypi:tracks", "pypi:alternate-locations"):
        values = [v for k, v in parser.metas.items() if k == tag]
        if values:
            meta[tag.removeprefix("pypi:")] = values
    return Page(name=canonicalize_name(name), files=_first_of_each(files, dropped), meta=meta)


def parse_html_root(body: bytes) -> ProjectList:
    parser = _parse_html(body)
    return ProjectList(names=tuple(text for _, text in parser.anchors if text))


_OWN_KEYS = frozenset({"filename", "url", "hashes"})


# Rendering ------------------------------------------------------------------


def render_json_page(page: Page) -> bytes:
    # json needs dicts; the parsers make them, so only another Mapping is copied.
    files = [
        {
            "filename": f.filename,
            "url": f.url,
            "hashes": f.hashes if f.hashes.__class__ is dict else dict(f.hashes),
            **f.extra,
        }
        for f in page.files
    ]
    return render_json_entries(page, files)


def render_json_entries(page: Page, files: list[dict[str, Any]]) -> bytes:
    """The page with ``files`` for its file entries, already in their JSON form."""
    data: dict[str, Any] = {"meta": {"api-version": page.api_version}}
    data.update(page.meta)
    data["name"] = page.name
    data["files"] = files
    return orjson.dumps(data)


def _attr(name: str, value: str) -> str:
    return f' {name}="{html.escape(value, quote=True)}"'


def _metadata_value(value: object) -> str:
    if isinstance(value, Mapping) and value:
        name = "sha256" if "sha256" in value else next(iter(value))
        return f"{name}={value[name]}"
    return "true"


def render_html_page(page: Page) -> bytes:
    title = html.escape(page.name)
    parts = [
        "<!DOCTYPE html>\n<html>\n<head>\n",
        f'<meta name="pypi:repository-version" content="{html.escape(page.api_version)}">\n',
    ]
    status = page.meta.get("project-status")
    if isinstance(status, Mapping):
        for tag, (_, sub) in _META_TAGS.items():
            if isinstance(status.get(sub), str):
                parts.append(f'<meta name="{tag}"{_attr("content", status[sub])}>\n')
    for key in ("tracks", "alternate-locations"):
        for value in page.meta.get(key) or ():
            parts.append(f'<meta name="pypi:{key}"{_attr("content", str(value))}>\n')
    parts.append(f"<title>Links for {title}</title>\n</head>\n<body>\n<h1>Links for {title}</h1>\n")
    for f in page.files:
        href = f.url
        if f.sha256:
            href = f"{href}#sha256={f.sha256}"
        elif f.hashes:
            name, digest = next(iter(f.hashes.items()))
            href = f"{href}#{name}={digest}"
        attrs = _attr("href", href)
        if f.requires_python:
            attrs += _attr("data-requires-python", f.requires_python)
        yanked = f.yanked
        if yanked:
            attrs += _attr("data-yanked", yanked if isinstance(yanked, str) else "")
        for key in METADATA_KEYS:
            value = f.extra.get(key)
            if value:
                attrs += _attr(f"data-{key}", _metadata_value(value))
        if f.extra.get("gpg-sig") is not None:
            attrs += _attr("data-gpg-sig", "true" if f.extra["gpg-sig"] else "false")
        if isinstance(f.extra.get("provenance"), str):
            attrs += _attr("data-provenance", f.extra["provenance"])
        parts.append(f"<a{attrs}>{html.escape(f.filename)}</a><br>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode()


def render_json_root(projects: ProjectList) -> bytes:
    data: dict[str, Any] = {"meta": {"api-version": "1.0"}}
    data.update(projects.meta)
    data["projects"] = [{"name": n} for n in projects.names]
    return orjson.dumps(data)


def render_html_root(projects: ProjectList) -> bytes:
    links = "".join(
        f'<a href="{html.escape(canonicalize_name(n))}/">{html.escape(n)}</a>\n'
        for n in projects.names
    )
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta name="pypi:repository-version" content="1.0">\n'
        f"<title>Simple index</title>\n</head>\n<body>\n{links}</body>\n</html>\n"
    ).encode()
