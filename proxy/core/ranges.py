"""HTTP Range requests (RFC 9110, section 14): one byte range, or the whole file.

Pure: a header and a size in, the span to send out. Several ranges at once are
answered with the whole file, which the RFC allows and installers never ask for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    stop: int  # exclusive

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{size}"


class Unsatisfiable(Exception):
    """The range lies wholly past the end: 416."""


def requested_span(header: str | None, size: int) -> Span | None:
    """The one span asked for; None means send the whole file (no or unusable header)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first and not last:
        return None
    if not first:  # the last N bytes
        if int(last) == 0 or size == 0:
            raise Unsatisfiable
        return Span(max(0, size - int(last)), size)
    start = int(first)
    stop = int(last) + 1 if last else size
    if last and stop <= start:
        return None  # invalid: ignored, as the RFC says
    if start >= size:
        raise Unsatisfiable
    return Span(start, min(stop, size))
