"""Revisions of pages a layer changed: the revision below, the layer, what it changed.

A page's revision must change whenever its content may have (the `Index` contract in
`proxy.edge.index`): renderings, ETags and decisions are cached by it. A layer that
changes a page's files derives the new revision here, from the revision below and
the lines that say what it changed (the names it kept, the rules it applied, ...), so
equal revisions mean equal content, and two layers never make the same suffix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DIGEST_LENGTH = 16


def digest(lines: Iterable[str]) -> str:
    """A short digest of lines (file names, rule digests; none contains a newline)."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:DIGEST_LENGTH]


def revised(revision: str, layer: str, changed: Iterable[str]) -> str:
    """``<revision>/<layer>-<digest of changed>``."""
    return f"{revision}/{layer}-{digest(changed)}"
