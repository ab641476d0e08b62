"""The one parser of dotted versions."""

from __future__ import annotations

import pytest

from proxy.core.dotted import dotted, maybe_dotted, parse_dotted


@pytest.mark.parametrize(
    ("text", "value"), [("2.17", (2, 17)), ("3.4.19", (3, 4, 19)), ("12", (12,))]
)
def test_round_trip(text: str, value: tuple[int, ...]) -> None:
    assert parse_dotted(text) == value
    assert maybe_dotted(text) == value
    assert dotted(value) == text


@pytest.mark.parametrize("text", ["", "2.", ".2", "2..3", "2.x", "v2", " 2.17"])
def test_not_dotted(text: str) -> None:
    with pytest.raises(ValueError, match="not a dotted version"):
        parse_dotted(text)
    assert maybe_dotted(text) is None
    assert maybe_dotted(None) is None
