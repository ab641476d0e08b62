"""A cold page's JSON is rendered linked in one pass (`render_linked_json`): its bytes, so
its ETag, must be those of linking the page and rendering it, whatever the files."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from packaging.utils import NormalizedName

from proxy.core.links import link_page, render_linked_json
from proxy.core.models import File, Page
from proxy.core.pages import render_json_page

SHA = "ab" * 32
FILENAMES = [
    "demo-1.0-py3-none-any.whl",
    "demo-1.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    "demo-1.0-py3-none-any-cu12.whl",
    "demo-1.0.tar.gz",
    "demo-1.0+cu118 x.tar.gz",
    "demo-1.0-variants.json",
    "démo-1.0-py3-none-any.whl",
]
METADATA = [None, True, False, "", {}, {"sha256": "cd" * 32}, {"SHA256": "EF", "md5": "x"}]
OTHER_KEYS = {
    "requires-python": st.sampled_from([">=3.8", "", None]),
    "yanked": st.sampled_from([False, True, "broken"]),
    "size": st.integers(0, 10**9),
    "x-future": st.sampled_from([[1, {"a": "b"}], "é"]),
}


@st.composite
def files(draw: st.DrawFn) -> File:
    extra: dict[str, Any] = {}
    for key in draw(st.permutations(["core-metadata", "dist-info-metadata", *OTHER_KEYS])):
        if draw(st.booleans()):
            strategy = OTHER_KEYS.get(key, st.sampled_from(METADATA))
            extra[key] = draw(strategy)
    hashes: Any = draw(st.sampled_from([{"sha256": SHA}, {}, {"md5": "x"}]))
    if draw(st.booleans()):
        hashes = MappingProxyType(hashes)  # another Mapping than a dict: copied to render
    filename = draw(st.sampled_from(FILENAMES))
    return File(filename, f"https://files.test/{filename}", hashes, extra)


@given(
    st.lists(files(), max_size=8),
    st.sampled_from(["demo", "demo-pkg", "a b"]),
    st.sampled_from([{}, {SHA: "ee" * 32}]),
    st.sampled_from([{}, {"meta": {"api-version": "1.1", "_last-serial": 3}, "versions": ["1"]}]),
)
@example([File("demo-1.0-py3-none-any.whl", "u", {"sha256": SHA}, {"size": 1})], "demo", {}, {})
def test_one_pass_renders_the_bytes_of_linking_then_rendering(
    page_files: list[File], name: str, known: dict[str, str], meta: dict[str, Any]
) -> None:
    page = Page(name=NormalizedName(name), files=tuple(page_files), meta=meta)
    expected = render_json_page(link_page(page, known))
    assert render_linked_json(page, known) == expected
    json.loads(expected)  # and it is JSON
