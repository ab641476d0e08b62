"""Hash names and digests are lower case on every parsed file, however upstream wrote them."""

from __future__ import annotations

import json

import pytest

from proxy.core.pages import parse_json_page, render_json_page

DIGEST = "AB" * 32


@pytest.mark.parametrize(
    ("hashes", "expected"),
    [
        ({"sha256": DIGEST}, {"sha256": DIGEST.lower()}),
        ({"SHA256": DIGEST}, {"sha256": DIGEST.lower()}),
        ({"sha256": DIGEST, "MD5": "CD" * 16}, {"sha256": DIGEST.lower(), "md5": "cd" * 16}),
        ({"blake2b": "EF" * 32}, {"blake2b": "ef" * 32}),
        ({}, {}),
    ],
)
def test_hashes_are_lowered(hashes: dict[str, str], expected: dict[str, str]) -> None:
    entry = {"filename": "demo-1.0.tar.gz", "url": "demo-1.0.tar.gz", "hashes": hashes}
    body = json.dumps({"name": "demo", "files": [entry]}).encode()
    page = parse_json_page(body, "https://upstream.test/simple/demo/")
    assert page.files[0].hashes == expected
    assert json.loads(render_json_page(page))["files"][0]["hashes"] == expected
