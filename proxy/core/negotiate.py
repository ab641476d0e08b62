"""Content negotiation for the simple API (PEP 691), following RFC 9110 q-values."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from proxy.errors import NotAcceptable

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML_LEGACY = "text/html"

# Server preference among equally acceptable types.
SERVED = (JSON_V1, HTML_V1, HTML_LEGACY)
_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}


@dataclass(frozen=True, slots=True)
class _Range:
    type: str
    subtype: str
    q: float

    @property
    def specificity(self) -> int:
        return (self.type != "*") + (self.subtype != "*")

    def matches(self, media: str) -> bool:
        mtype, _, msub = media.partition("/")
        return self.type in ("*", mtype) and self.subtype in ("*", msub)


def quality(params: list[str]) -> float:
    """The q-value among a header item's parameters (RFC 9110 section 12.4.2)."""
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def accepts_gzip(accept_encoding: str | None) -> bool:
    if accept_encoding is not None and len(accept_encoding) <= MEMO_MAX_CHARS:
        return _gzip_remembered(accept_encoding)
    return _accepts_gzip(accept_encoding)


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for item in (accept_encoding or "").split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() in ("gzip", "x-gzip", "*"):
            return quality(params) > 0
    return False


def _parse_accept(header: str) -> list[_Range]:
    ranges = []
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = _ALIASES.get(media.lower(), media.lower())
        mtype, slash, msub = media.partition("/")
        if not slash or not mtype or not msub:
            continue
        ranges.append(_Range(mtype, msub, quality(params)))
    return ranges


def _most_specific(ranges: list[_Range], media: str) -> _Range | None:
    """The range that sets ``media``'s quality (RFC 9110: the most specific match)."""
    matching = [r for r in ranges if r.matches(media)]
    return max(matching, key=lambda r: r.specificity) if matching else None


def negotiate(accept: str | None, format_param: str | None = None) -> str:
    """The media type to serve, or `NotAcceptable` when the client accepts none."""
    if format_param is not None:
        # A query string decodes a literal '+' to a space, and no media type has one:
        # ?format=application/vnd.pypi.simple.v1+json, unescaped, is meant as written.
        named = format_param.strip().lower().replace(" ", "+")
        wanted = _ALIASES.get(named, named)
        if wanted in SERVED:
            return wanted
        raise NotAcceptable(
            f"format {format_param!r} is not acceptable; use one of {', '.join(SERVED)}"
        )
    if not accept or not accept.strip():
        return HTML_LEGACY
    if len(accept) <= MEMO_MAX_CHARS:
        return _remembered(accept)
    return _choose(accept)


def _choose(accept: str) -> str:
    ranges = _parse_accept(accept)
    best: tuple[float, int, int] | None = None
    chosen = None
    html_q = 0.0  # text/html's own quality: a client may refuse it, or rank it lower
    for preference, media in enumerate(SERVED):
        most_specific = _most_specific(ranges, media)
        if most_specific is None:
            continue
        if media == HTML_LEGACY:
            html_q = most_specific.q
        if most_specific.q <= 0:
            continue
        key = (most_specific.q, most_specific.specificity, -preference)
        if best is None or key > best:
            best, chosen = key, media
    if chosen is None or best is None:
        raise NotAcceptable(f"none of {', '.join(SERVED)} is acceptable to {accept!r}")
    if best[1] == 0 and html_q >= best[0]:
        # Won through a bare */* only: legacy clients expect the HTML they always got,
        # unless they ranked text/html lower or refused it.
        return HTML_LEGACY
    return chosen


def preferred(accept: str | None, offered: tuple[str, ...]) -> str:
    """Which of ``offered`` (the first on a tie, or when nothing in ``accept`` ranks them)
    the client prefers, by the q-value of the most specific range matching each."""
    ranges = _parse_accept(accept or "")
    best, chosen = -1.0, offered[0]
    for media in offered:
        most_specific = _most_specific(ranges, media)
        q = most_specific.q if most_specific is not None else 0.0
        if q > best:
            best, chosen = q, media
    return chosen


# Clients send a handful of distinct Accept headers, and choosing is a pure function of
# one: remembered (a refusal is not). Long headers are not, so the memo stays small.
MEMO_MAX_CHARS = 512
_remembered = functools.lru_cache(maxsize=256)(_choose)
_gzip_remembered = functools.lru_cache(maxsize=256)(_accepts_gzip)
