"""The one way a layer derives a page revision."""

from __future__ import annotations

from proxy.core.revision import digest, revised


def test_a_revision_names_the_page_below_and_the_layer() -> None:
    revision = revised("abc", "rw", ["a.whl", "b.whl"])
    assert revision.startswith("abc/rw-")
    assert revision == revised("abc", "rw", iter(["a.whl", "b.whl"]))


def test_it_changes_with_the_page_below_the_layer_and_what_changed() -> None:
    base = revised("abc", "rw", ["a.whl"])
    assert revised("abd", "rw", ["a.whl"]) != base
    assert revised("abc", "fill", ["a.whl"]) != base
    assert revised("abc", "rw", ["b.whl"]) != base
    assert revised("abc", "rw", ["a.whl", "b.whl"]) != revised("abc", "rw", ["a.whlb.whl"])


def test_digest_is_short_and_stable() -> None:
    assert digest([]) == digest(())
    assert len(digest(["x"])) == 16
