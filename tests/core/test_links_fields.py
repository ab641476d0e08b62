"""Linking builds each file with `File(...)` for speed: no field may be lost by it."""

from __future__ import annotations

from dataclasses import fields

from proxy.core.links import link_page
from proxy.core.models import File, Page

KNOWN = {
    "filename": "demo-1.0.tar.gz",
    "url": "https://upstream.test/demo-1.0.tar.gz",
    "hashes": {"sha256": "ab" * 32},
    "extra": {"size": 1},
}


def test_linking_changes_the_url_and_keeps_every_other_field() -> None:
    values = {f.name: KNOWN.get(f.name, object()) for f in fields(File)}
    file = File(**values)  # type: ignore[arg-type]
    (linked,) = link_page(Page(name="demo", files=(file,)), {}).files  # type: ignore[arg-type]
    assert linked.url == "../../files/demo/demo-1.0.tar.gz"
    for name, value in values.items():
        if name != "url":
            assert getattr(linked, name) == value, name


def test_names_quote_would_change_are_quoted() -> None:
    file = File("demo-1.0+cu118 x.tar.gz", "https://upstream.test/a", {})
    (linked,) = link_page(Page(name="demo", files=(file,)), {}).files  # type: ignore[arg-type]
    assert linked.url == "../../files/demo/demo-1.0%2Bcu118%20x.tar.gz"
