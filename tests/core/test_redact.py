from __future__ import annotations

import pytest

from proxy.core.redact import redact, split_credentials
from proxy.errors import ConfigError, UpstreamError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:secret@h:81/simple/", "http://user:***@h:81/simple/"),
        ("redis://:secret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("https://tok3n@h/simple/", "https://***@h/simple/"),
        ("x 'http://u:p@ss@h/a@b' y", "x 'http://u:***@h/a@b' y"),
        (
            "fetching https://u:s@a/x and https://v:t@b/y",
            "fetching https://u:***@a/x and https://v:***@b/y",
        ),
        ("https://h/f.whl?X-Amz-Signature=abc&v=1", "https://h/f.whl?X-Amz-Signature=***&v=1"),
        ("https://h/simple/?token=abc#frag", "https://h/simple/?token=***#frag"),
        ("https://h/f.whl?key=abc&v=1", "https://h/f.whl?key=***&v=1"),
        ("https://h/simple/?X-JFrog-Art-Api=abc", "https://h/simple/?X-JFrog-Art-Api=***"),
        (
            "https://h/simple/?apikey=abc;session_id=def",
            "https://h/simple/?apikey=***;session_id=***",
        ),
        ("Authorization: Basic dXNlcjpzZWNyZXQ=", "Authorization: ***"),
        ("{'authorization': 'Bearer abc.def'}", "{'authorization': '***'}"),
        # Nothing to hide:
        ("http://h/a@b", "http://h/a@b"),
        ("mail user@example.com", "mail user@example.com"),
        ("https://h/simple/?format=json", "https://h/simple/?format=json"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("url", "clean", "pair"),
    [
        ("http://h:1/simple/", "http://h:1/simple/", None),
        ("http://u:p@h:1/simple/", "http://h:1/simple/", ("u", "p")),
        ("https://us%40er:p%3Ass@h/simple/", "https://h/simple/", ("us@er", "p:ss")),
        ("https://tok@h/simple/", "https://h/simple/", ("tok", "")),
    ],
)
def test_split_credentials(url: str, clean: str, pair: tuple[str, str] | None) -> None:
    assert split_credentials(url) == (clean, pair)


def test_error_messages_are_redacted_when_made() -> None:
    error = UpstreamError("http://u:secret@h/simple/", "GET http://u:secret@h/simple/x/ failed")
    assert "secret" not in str(error)
    assert "secret" not in error.upstream + error.detail
    assert "secret" not in str(ConfigError("bad value 'redis://:secret@r/0' for redis"))
