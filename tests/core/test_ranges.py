"""Range headers as a table."""

from __future__ import annotations

import pytest

from proxy.core.ranges import Span, Unsatisfiable, requested_span


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("bytes=0-99", Span(0, 100)),
        ("bytes=100-", Span(100, 1000)),
        ("bytes=-100", Span(900, 1000)),
        ("bytes=-5000", Span(0, 1000)),
        ("bytes=990-5000", Span(990, 1000)),
        ("bytes = 5-9", Span(5, 10)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("items=0-1", None),
        ("bytes=9-5", None),
        ("bytes=x-5", None),
        ("bytes=-", None),
        ("bytes", None),
    ],
)
def test_requested_span(header: str | None, span: Span | None) -> None:
    assert requested_span(header, 1000) == span


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=-0", "bytes=5000-6000"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        requested_span(header, 1000)


def test_content_range() -> None:
    assert Span(0, 100).content_range(1000) == "bytes 0-99/1000"
