"""A JSON page's usual entry is taken by one quick test (`parse_json_page`); every other
entry by the full one (`_json_file`, then `_keep`). Whatever the entries, the page must
be what the full test alone would make of each: the same files, in the same order."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from proxy.core.models import File
from proxy.core.pages import Resolver, _json_file, _keep, parse_json_page

PAGE_URL = "https://upstream.test/simple/demo/"
NAMES = st.one_of(
    st.sampled_from(["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl", "", " ", ".", ".."]),
    st.sampled_from(["a/b", "a\\b", "nul\x00x", "line\u2028sep", "tab\tx", "é.whl", "x\x7f"]),
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.integers(),
    st.none(),
)
URLS = st.one_of(
    st.sampled_from(["/files/demo-1.0.tar.gz", "https://files.test/d.whl", "demo-1.0.tar.gz"]),
    st.sampled_from(["//cdn.test/x", "/a/../b", "/a/./b", "http://h.test/a b", "/x?q=1"]),
    st.sampled_from(["https://h.test/%2F", "ftp://h.test/x", "", "/", "https://h.test/a#f"]),
    st.integers(),
)
DIGESTS = st.sampled_from(["ab" * 32, "AB" * 32, "zz" * 32, "ab" * 31, "ab" * 33, "", 5, None])
HASHES: st.SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries({"sha256": DIGESTS}),
    st.sampled_from([{}, {"md5": "x"}, {"SHA256": "ab" * 32}, {"sha256": "ab" * 32, "md5": "y"}]),
    st.none(),
    st.just([]),
)


@st.composite
def entries(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["not an object", 7, None, []]))
    entry: dict[str, Any] = {"size": draw(st.integers(0, 99))}
    for key, values in (("filename", NAMES), ("url", URLS), ("hashes", HASHES)):
        if draw(st.integers(0, 9)) > 0:
            entry[key] = draw(values)
    return entry


def by_the_full_test(items: list[Any]) -> list[File]:
    resolve = Resolver(PAGE_URL)
    kept = []
    for item in copy.deepcopy(items):
        if not isinstance(item, dict):
            continue
        filename, url = item.pop("filename", None), item.pop("url", None)
        file = _json_file(item, filename, url, item.pop("hashes", {}), resolve, None)
        if file is not None and _keep(file, None):
            kept.append(file)
    names = [f.filename for f in kept]
    return [f for i, f in enumerate(kept) if f.filename not in names[:i]]  # the first of each


@given(st.lists(entries(), max_size=6))
@example([{"filename": "", "url": "https://files.test/x", "hashes": {"sha256": "ab" * 32}}])
@example([{"filename": "d.tar.gz", "url": "/d.tar.gz", "hashes": {"sha256": "AB" * 32}}])
def test_the_quick_test_keeps_what_the_full_test_keeps(items: list[Any]) -> None:
    body = json.dumps({"name": "demo", "files": items}).encode()
    dropped: list[str] = []
    page = parse_json_page(body, PAGE_URL, dropped)
    assert list(page.files) == by_the_full_test(items)
    assert len(dropped) == len(items) - len(page.files)  # each left off is said once


# Pages of usual entries with one now and then off the usual shape: each entry is still
# what the full test makes of it, whichever test took it.
USUAL_NAMES = st.sampled_from(["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl", "d~x.zip"])
USUAL_URLS = st.sampled_from(
    ["/files/d.whl", "/f/%C3%A9.whl", "https://files.test/d.whl", "http://h.test/a/b.whl"]
)
USUAL_DIGESTS = st.sampled_from(["ab" * 32, "0" * 64, "0123456789abcdef" * 4])


@st.composite
def usual_entries(draw: st.DrawFn) -> Any:
    entry: dict[str, Any] = {
        "filename": draw(USUAL_NAMES),
        "url": draw(USUAL_URLS),
        "hashes": {"sha256": draw(USUAL_DIGESTS)},
        "size": draw(st.integers(0, 99)),
    }
    if draw(st.integers(0, 19)) == 0:  # one entry in twenty off the usual shape
        return draw(entries())
    return entry


@given(st.lists(usual_entries(), max_size=12))
@example([{"filename": "d.whl", "url": "/a/./b.whl", "hashes": {"sha256": "ab" * 32}}])
@example([{"filename": "d.whl", "url": "/a/b/..", "hashes": {"sha256": "ab" * 32}}])
@example([{"filename": "d.whl", "url": "/a.whl\n", "hashes": {"sha256": "ab" * 32}}])
@example([{"filename": "a/b", "url": "/a.whl", "hashes": {"sha256": "ab" * 32}}])
@example([{"filename": "..", "url": "/a.whl", "hashes": {"sha256": "ab" * 32}}])
@example([{"filename": ".", "url": "/a.whl", "hashes": {"sha256": "ab" * 32}}])
@example([{"filename": "d.whl", "url": "/a.whl", "hashes": {"sha256": "ab" * 32, "MD5": "X"}}])
@example([{"filename": "d.whl", "url": "/a.whl", "hashes": {"sha256": "ab" * 31 + "a "}}])
@example([{"filename": "d.whl", "url": "/a.whl", "hashes": {"sha256": "ab" * 30 + " ab "}}])
@example([{"filename": "d.whl", "url": "/a.whl", "hashes": {"sha256": "AB" * 32}}])
@example(
    [
        {"filename": "d.whl", "url": "/a.whl", "hashes": {"sha256": "ab" * 32}},
        {"filename": "e.whl", "url": "https://h.test/e.whl", "hashes": {"sha256": "ab" * 32}},
    ]
)
def test_a_page_of_usual_entries_is_what_the_full_test_makes_of_each(items: list[Any]) -> None:
    body = json.dumps({"name": "demo", "files": items}).encode()
    dropped: list[str] = []
    page = parse_json_page(body, PAGE_URL, dropped)
    assert list(page.files) == by_the_full_test(items)
    assert len(dropped) == len(items) - len(page.files)
