"""The anchors and meta tags of a PEP 503 page, exactly as `html.parser` finds them, fast.

`html.parser` costs about 30 µs per link (grpcio's page, 11,000 links: ~400 ms). Index
pages are made of little markup: a doctype, start and end tags whose attributes are
written plainly, text, maybe a comment. `fast_extract` reads exactly that with one
regular expression and gives up (None) at anything else: processing instructions, CDATA
sections, raw-text elements, comments but the plainest, a tag or attribute written any
other way, a stray ``<``. `extract` then runs `html.parser`, so its answer is always
`html.parser`'s; what both read is property-tested to agree (tests/core/test_anchors.py).

Whitespace inside tags is ASCII only: `html.parser` reads other whitespace differently
in different places (a no-break space ends an attribute value but not a tag name), so
a page using it takes the slow path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser

Attributes = dict[str, str | None]

_WS = r"[ \t\n\r\f]"
_NAME = r"[a-zA-Z_:][-a-zA-Z0-9_:.]*"
# Unquoted, a value ends where html.parser ends it: at whitespace or ">" ("/" is in it;
# the end of the text: the attributes read out of a tag already known to be whole).
_BARE = r"""[^\s"'=>][^\s>]*(?=[ \t\n\r\f>]|\Z)"""
_ATTRIBUTES = re.compile(
    rf"""{_WS}+({_NAME})(?:{_WS}*(=){_WS}*(?:"([^"]*)"|'([^']*)'|({_BARE})))?"""
)
_ANY_ATTRIBUTE = rf"""{_WS}+{_NAME}(?:{_WS}*={_WS}*(?:"[^"]*"|'[^']*'|{_BARE}))?"""
_TOKEN = re.compile(
    r"([^<]+)"  # 1: text
    # 2, 3: a whole anchor with plain text, the usual line of an index page
    rf"|<[aA]((?:{_ANY_ATTRIBUTE})*){_WS}*>([^<]*)</[aA]{_WS}*>"
    rf"|<([a-zA-Z][a-zA-Z0-9]*)((?:{_ANY_ATTRIBUTE})*){_WS}*(/?)>"  # 4: tag, 5, 6: "/>"
    rf"|</([a-zA-Z][a-zA-Z0-9]*){_WS}*>"  # 7: end tag
    r"|<![dD][oO][cC][tT][yY][pP][eE][^>]*>"  # doctype: ignored
    # A comment (ignored) ending at the first "--" in it, whichever version of html.parser
    # reads it (they differ on "<!-->", "--!>" and the like), such as PyPI's serial.
    r"|<!--(?![->])(?:[^-]|-(?!-))*-->"
)
_TEXT, _ANCHOR, _START, _END = 1, 3, 6, 7
# Content html.parser reads as text (script, style), or may, depending on its version:
# never on the fast path. Title and textarea only when their text cannot be markup.
_RAW = frozenset(
    {"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"}
)
_PLAIN_TEXT = frozenset({"title", "textarea"})
_PLAIN_TEXT_END = re.compile(rf"[^<&]*</([a-zA-Z]+){_WS}*>")


@dataclass(slots=True)
class Extracted:
    # Each anchor's attributes (later duplicates win) and its text, stripped.
    anchors: list[tuple[Attributes, str]] = field(default_factory=list)
    metas: dict[str, str] = field(default_factory=dict)  # <meta name=... content=...>


def extract(text: str) -> Extracted:
    """Raises what html.parser raises on garbage."""
    fast = fast_extract(text)
    if fast is not None:
        return fast
    parser = _AnchorParser()
    parser.feed(text)
    parser.close()
    return parser.found


def _attributes(text: str) -> Attributes:
    found: Attributes = {}
    for name, equals, double, single, bare in _ATTRIBUTES.findall(text):
        value: str | None = None
        if equals:  # findall gives "" for each group that did not take part
            value = double or single or bare
            if "&" in value:
                value = unescape(value)
        found[name.lower()] = value
    return found


def fast_extract(text: str) -> Extracted | None:
    """None where the page holds markup this does not read."""
    found = Extracted()
    anchor: Attributes | None = None
    words: list[str] = []
    at = 0
    for m in _TOKEN.finditer(text):
        if m.start() != at:
            return None  # a "<" no token starts with
        at = m.end()
        kind = m.lastindex
        if kind == _TEXT:
            if anchor is not None:
                words.append(unescape(m.group(1)))
        elif kind == _ANCHOR:
            words_text = m.group(3)
            if "&" in words_text:
                words_text = unescape(words_text)
            found.anchors.append((_attributes(m.group(2)), words_text.strip()))
            anchor = None
        elif kind == _START:
            tag = m.group(4).lower()
            closed = bool(m.group(6))
            if tag == "a":
                anchor, words = _attributes(m.group(5)), []
                if closed:
                    found.anchors.append((anchor, ""))
                    anchor = None
            elif tag == "meta":
                attributes = _attributes(m.group(5))
                name, content = attributes.get("name"), attributes.get("content")
                if name and content is not None:
                    found.metas[name] = content
            elif tag in _RAW:
                return None
            elif tag in _PLAIN_TEXT:
                end = _PLAIN_TEXT_END.match(text, at)
                if closed or end is None or end.group(1).lower() != tag:
                    return None
        elif kind == _END and anchor is not None and m.group(7).lower() == "a":
            found.anchors.append((anchor, "".join(words).strip()))
            anchor = None
    return found if at == len(text) else None


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = Extracted()
        self._open: Attributes | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []
        elif tag == "meta":
            attributes = dict(attrs)
            name, content = attributes.get("name"), attributes.get("content")
            if name and content is not None:
                self.found.metas[name] = content

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.found.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None
