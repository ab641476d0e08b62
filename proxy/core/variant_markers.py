"""PEP 825's variant markers, settled for one variant so that plain installers can read them.

``Requires-Dist: fast-gemm; "nvidia :: sm_arch :: 120_real" in variant_properties`` is a
marker no installer without variant support can parse (`packaging` refuses the unknown
variables), so a variant wheel rewritten for them must not carry it as it is. Each
variant clause is evaluated here, as PEP 825 says a variant-aware installer would: against
the label of the wheel and those of its properties the host supports, and replaced by a
comparison that always holds or never does; the rest of the marker is left for the
installer. Clauses:

- ``"ns" in variant_namespaces``, ``"ns :: feature" in variant_features``,
  ``"ns :: feature :: value" in variant_properties`` (and ``not in``), whitespace around
  ``::`` ignored;
- ``variant_label == "label"`` and ``!=``, either side;
- ``variant_label in "cu128 cu129"`` and ``not in`` (PEP 508's string containment),
  either side.

A clause left unsettled (a form not listed) would reach installers as metadata they
refuse, the whole version with it: `Unsettled`, and the rewrite is not made.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Markers compare a variable with a literal (never two literals): one that always
# holds, one that never does.
_TRUE, _FALSE = 'python_version >= "0"', 'python_version < "0"'
_SETS = r"variant_namespaces|variant_features|variant_properties"
_QUOTED = r"(?P<q>[\"'])(?P<value>[^\"']*)(?P=q)"
_IN = re.compile(rf"{_QUOTED}\s+(?P<op>not\s+in|in)\s+(?P<var>{_SETS})\b")
_LABEL_RIGHT = re.compile(rf"\bvariant_label\s*(?P<op>==|!=)\s*{_QUOTED}")
_LABEL_LEFT = re.compile(rf"{_QUOTED}\s*(?P<op>==|!=)\s*variant_label\b")
_LABEL_IN_RIGHT = re.compile(rf"\bvariant_label\s+(?P<op>not\s+in|in)\s+{_QUOTED}")
_LABEL_IN_LEFT = re.compile(rf"{_QUOTED}\s+(?P<op>not\s+in|in)\s+variant_label\b")
_VARIABLE = re.compile(r"\bvariant_(?:label|namespaces|features|properties)\b")
_SEPARATOR = re.compile(r"\s*::\s*")


class Unsettled(ValueError):
    """A variant clause this module cannot evaluate."""


def settle_markers(metadata: bytes, label: str, supported: Iterable[str]) -> bytes:
    """METADATA with every variant clause of its ``Requires-Dist`` lines settled;
    ``supported``: ``"ns :: feature :: value"`` properties of the wheel the host supports."""
    properties = {_normal(p) for p in supported}
    features = {p.rsplit(" :: ", 1)[0] for p in properties}
    namespaces = {p.split(" :: ", 1)[0] for p in properties}
    sets = {
        "variant_namespaces": namespaces,
        "variant_features": features,
        "variant_properties": properties,
    }

    def membership(m: re.Match[str]) -> str:
        found = _normal(m["value"]) in sets[m["var"]]
        return _TRUE if found == (m["op"] == "in") else _FALSE

    def equality(m: re.Match[str]) -> str:
        return _TRUE if (m["value"] == label) == (m["op"] == "==") else _FALSE

    def label_in(m: re.Match[str]) -> str:
        return _TRUE if (label in m["value"]) == (m["op"] == "in") else _FALSE

    def in_label(m: re.Match[str]) -> str:
        return _TRUE if (m["value"] in label) == (m["op"] == "in") else _FALSE

    head, blank, body, newline = split_headers(metadata.decode("utf-8"))
    lines = []
    for line in head.split(newline):
        if line.lower().startswith("requires-dist:") and "variant_" in line:
            line = _IN.sub(membership, line)
            line = _LABEL_LEFT.sub(equality, _LABEL_RIGHT.sub(equality, line))
            line = _LABEL_IN_LEFT.sub(in_label, _LABEL_IN_RIGHT.sub(label_in, line))
            if _VARIABLE.search(line):
                raise Unsettled(f"a variant clause hostfit cannot settle: {line.strip()!r}")
        lines.append(line)
    return (newline.join(lines) + blank + body).encode("utf-8")


def split_headers(text: str) -> tuple[str, str, str, str]:
    """``(head, blank, body, newline)`` of a METADATA text. The header block ends at the
    first blank line, LF or CRLF, whichever comes first; ``newline`` is the headers' own
    line ending, as their first line has it. A description written on Windows (CRLF
    under LF headers, in the body or folded into a Description header) must neither hide
    the headers' end nor make them look like CRLF lines, or no fix finds a header."""
    ends = [(at, sep) for sep in ("\n\n", "\r\n\r\n") if (at := text.find(sep)) >= 0]
    if not ends:
        head, blank, body = text, "", ""
    else:
        at, blank = min(ends)
        head, body = text[:at], text[at + len(blank) :]
    # From the first line: a folded Description header may carry the description's own
    # CRLFs (setuptools folds on LF only) under LF headers.
    first = head.find("\n")
    crlf = blank == "\r\n\r\n" or (first > 0 and head[first - 1] == "\r")
    return head, blank, body, "\r\n" if crlf else "\n"


def _normal(text: str) -> str:
    return _SEPARATOR.sub(" :: ", text.strip())
