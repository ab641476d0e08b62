import pytest

from proxy.core.negotiate import HTML_LEGACY, HTML_V1, JSON_V1, accepts_gzip, negotiate
from proxy.errors import NotAcceptable

PIP = f"{JSON_V1}, {HTML_V1}; q=0.1, text/html; q=0.01"
UV = f"{JSON_V1}, {HTML_V1};q=0.2, text/html;q=0.01"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, HTML_LEGACY),
        ("", HTML_LEGACY),
        ("*/*", HTML_LEGACY),
        (PIP, JSON_V1),
        (UV, JSON_V1),
        (JSON_V1, JSON_V1),
        (HTML_V1, HTML_V1),
        ("text/html", HTML_LEGACY),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("application/vnd.pypi.simple.latest+html", HTML_V1),
        (f"{JSON_V1};q=0.5, {HTML_V1};q=0.9", HTML_V1),
        (f"{JSON_V1};q=0, */*", HTML_LEGACY),  # only */* left: legacy HTML
        ("application/*", JSON_V1),
        ("text/*", HTML_LEGACY),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", HTML_LEGACY),
        (f"{HTML_V1}, {JSON_V1}", JSON_V1),  # equal q: server preference
        (f"{JSON_V1};q=0.5, */*;q=0.9", HTML_LEGACY),  # the specific range sets JSON q
        (f"{JSON_V1}; q=bogus, text/html;q=0.3", HTML_LEGACY),
        (f"{JSON_V1} ; Q=1.0", JSON_V1),
        ("garbage, text/html", HTML_LEGACY),
        # Legacy HTML for a bare */* only where the client did not rank text/html lower.
        ("text/html;q=0, */*", JSON_V1),
        ("*/*, text/html;q=0.1", JSON_V1),
        ("text/html;q=0.5, */*;q=0.5", HTML_LEGACY),
    ],
)
def test_accept(accept: str | None, expected: str) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    "accept",
    ["application/json", "image/png", f"{JSON_V1};q=0, {HTML_V1};q=0, text/html;q=0", "*/*;q=0"],
)
def test_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(accept)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (JSON_V1, JSON_V1),
        (HTML_V1, HTML_V1),
        ("text/html", HTML_LEGACY),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        # a literal '+' in a query string, decoded to a space
        ("application/vnd.pypi.simple.v1 json", JSON_V1),
        ("application/vnd.pypi.simple.v1 html", HTML_V1),
    ],
)
def test_format_parameter_overrides_accept(fmt: str, expected: str) -> None:
    assert negotiate("text/html", fmt) == expected


def test_unknown_format_parameter() -> None:
    with pytest.raises(NotAcceptable, match="xml"):
        negotiate(None, "application/xml")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0", False),
        ("identity", False),
        ("*", True),
        ("x-gzip", True),
        ("GZIP;Q=0.5", True),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected
