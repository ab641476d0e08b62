import html
import json

import pytest

from proxy.core.links import link_page
from proxy.core.pages import (
    PageError,
    parse_html_page,
    parse_json_page,
    render_html_page,
    render_json_page,
)

PAGE_URL = "https://upstream.test/simple/demo/"

JSON_PAGE = {
    "meta": {"api-version": "1.4", "_last-serial": 7},
    "name": "Demo",
    "versions": ["1.0", "2.0"],
    "project-status": {"status": "quarantined", "reason": "under review"},
    "alternate-locations": ["https://elsewhere.test/simple/demo/"],
    "future-key": {"nested": [1, 2]},
    "files": [
        {
            "filename": "demo-1.0-py3-none-any.whl",
            "url": "../../files/demo-1.0-py3-none-any.whl",
            "hashes": {"sha256": "AA" * 32, "md5": "bb" * 16},
            "requires-python": ">=3.8, <4",
            "yanked": "broken build",
            "core-metadata": {"sha256": "cc" * 32},
            "dist-info-metadata": {"sha256": "cc" * 32},
            "upload-time": "2024-01-02T03:04:05.000000Z",
            "size": 1234,
            "provenance": "https://upstream.test/provenance/demo-1.0",
            "unknown-file-key": True,
        },
        {
            "filename": "demo-2.0.tar.gz",
            "url": "https://files.test/demo-2.0.tar.gz",
            "hashes": {"sha256": "dd" * 32},
            "yanked": True,
        },
    ],
}


def test_json_round_trip_keeps_every_key() -> None:
    page = parse_json_page(json.dumps(JSON_PAGE).encode(), PAGE_URL)
    assert page.name == "demo"
    assert page.api_version == "1.4"
    first, second = page.files
    assert first.url == "https://upstream.test/files/demo-1.0-py3-none-any.whl"
    assert first.sha256 == "aa" * 32
    assert first.yanked == "broken build"
    assert second.yanked is True
    assert first.requires_python == ">=3.8, <4"
    assert first.core_metadata == {"sha256": "cc" * 32}
    assert first.size == 1234 and first.upload_time == "2024-01-02T03:04:05.000000Z"

    again = json.loads(render_json_page(page))
    for key in ("versions", "project-status", "alternate-locations", "future-key"):
        assert again[key] == JSON_PAGE[key]
    assert again["meta"] == JSON_PAGE["meta"]
    original_file = dict(JSON_PAGE["files"][0])  # type: ignore[index]
    rendered_file = again["files"][0]
    for key, value in original_file.items():
        if key not in ("url", "hashes"):
            assert rendered_file[key] == value, key
    assert rendered_file["hashes"] == {"sha256": "aa" * 32, "md5": "bb" * 16}


def test_html_attributes_and_meta() -> None:
    body = b"""<!DOCTYPE html><html><head>
    <meta name="pypi:repository-version" content="1.1">
    <meta name="pypi:project-status" content="archived">
    <meta name="pypi:tracks" content="https://other.test/simple/demo/">
    </head><body>
    <a href="/files/demo-1.0.whl#sha256=ABCD" data-requires-python="&gt;=3.8"
       data-yanked="" data-core-metadata="sha256=beef" data-gpg-sig="false"
       data-custom="x">demo-1.0.whl</a>
    <a href="demo-0.9.tar.gz#md5=1234" data-yanked="bad release"
       data-dist-info-metadata="true">demo-0.9.tar.gz</a>
    </body></html>""".replace(b"=ABCD", b"=ABCD" + b"EF" * 30)  # a full sha256
    page = parse_html_page(body, PAGE_URL, "Demo")
    first, second = page.files
    assert first.url == "https://upstream.test/files/demo-1.0.whl"
    assert first.hashes == {"sha256": "abcd" + "ef" * 30}
    assert first.requires_python == ">=3.8"
    assert first.yanked is True
    assert first.core_metadata == {"sha256": "beef"}
    assert first.extra["gpg-sig"] is False and first.extra["custom"] == "x"
    assert second.url == "https://upstream.test/simple/demo/demo-0.9.tar.gz"
    assert second.yanked == "bad release"
    assert second.core_metadata is True
    assert page.api_version == "1.1"
    assert page.meta["project-status"] == {"status": "archived"}
    assert page.meta["tracks"] == ["https://other.test/simple/demo/"]

    rendered = render_html_page(page).decode()
    assert 'data-requires-python="&gt;=3.8"' in rendered
    assert 'data-yanked="bad release"' in rendered
    assert '<meta name="pypi:project-status" content="archived">' in rendered
    reparsed = parse_html_page(render_html_page(page), PAGE_URL, "demo")
    assert [(f.filename, f.hashes, f.yanked, f.requires_python) for f in reparsed.files] == [
        (f.filename, f.hashes, f.yanked, f.requires_python) for f in page.files
    ]


def test_links_point_back_and_advertise_metadata() -> None:
    page = parse_json_page(json.dumps(JSON_PAGE).encode(), PAGE_URL)
    extracted = {"dd" * 32: "ee" * 32}
    linked = link_page(page, extracted)
    wheel, sdist = linked.files
    assert wheel.url == "../../files/demo/demo-1.0-py3-none-any.whl"
    assert wheel.core_metadata == {"sha256": "cc" * 32}  # upstream's own digest wins
    assert wheel.extra["dist-info-metadata"] == {"sha256": "cc" * 32}
    assert "core-metadata" not in sdist.extra  # PEP 658 is for wheels
    assert sdist.hashes == {"sha256": "dd" * 32}


def test_extracted_metadata_digest_is_advertised() -> None:
    data = json.loads(json.dumps(JSON_PAGE))
    del data["files"][0]["core-metadata"], data["files"][0]["dist-info-metadata"]
    page = parse_json_page(json.dumps(data).encode(), PAGE_URL)
    assert link_page(page, {}).files[0].core_metadata is True
    known = link_page(page, {"aa" * 32: "ff" * 32}).files[0]
    assert known.core_metadata == {"sha256": "ff" * 32}


GOOD = {"filename": "demo-1.0.tar.gz", "url": "demo-1.0.tar.gz", "hashes": {"sha256": "ab" * 32}}
UNUSABLE = [
    "evil/../x-1.0.tar.gz",
    "nul\x00-1.0.tar.gz",
    "crlf\r\nX-Injected: 1-1.0.tar.gz",
    "back\\slash-1.0.tar.gz",
    "..",
    ".",
    "",
]


# Relative links are joined by urllib; rooted and absolute ones take the parser's fast
# path for the usual entry: a bad entry is left off the same way on either.
@pytest.mark.parametrize(
    "url", ["demo-1.0.tar.gz", "/files/demo-1.0.tar.gz", "https://files.test/demo-1.0.tar.gz"]
)
def test_one_bad_file_entry_never_costs_the_page(url: str) -> None:
    good = {**GOOD, "url": url}
    entries: list[object] = [good, "not an object", {"filename": "no-url.tar.gz"}]
    entries += [{**good, "filename": name} for name in UNUSABLE]
    entries.append({**good, "filename": "bad-hash.tar.gz", "hashes": {"sha256": "../../x"}})
    for shape, digest in enumerate((5, None, ["ab" * 32], {"x": 1})):
        entries.append(
            {**good, "filename": f"odd-hash-{shape}.tar.gz", "hashes": {"sha256": digest}}
        )
    entries.append({**good, "filename": "null-hashes.tar.gz", "hashes": None})
    entries.append({**good, "filename": "odd-url.tar.gz", "url": 5})
    body = json.dumps({"name": "demo", "files": entries}).encode()
    dropped: list[str] = []
    page = parse_json_page(body, PAGE_URL, dropped)
    assert [f.filename for f in page.files] == ["demo-1.0.tar.gz"]
    assert len(dropped) == len(entries) - 1
    assert all(line.isascii() and "\n" not in line and "\r" not in line for line in dropped)
    assert parse_json_page(body, PAGE_URL).files == page.files  # the list is optional
    # A digest of the right length but not lowercase hex: lowered when it can be, else
    # left off, the others kept.
    odd = [
        good,
        {**good, "filename": "upper.tar.gz", "hashes": {"sha256": "AB" * 32}},
        {**good, "filename": "not-hex.tar.gz", "hashes": {"sha256": "zz" * 32}},
    ]
    dropped = []
    page = parse_json_page(json.dumps({"name": "demo", "files": odd}).encode(), PAGE_URL, dropped)
    assert [(f.filename, f.sha256) for f in page.files] == [
        ("demo-1.0.tar.gz", "ab" * 32),
        ("upper.tar.gz", "ab" * 32),
    ]
    assert len(dropped) == 1 and "not-hex.tar.gz" in dropped[0]

    anchors = "".join(
        f'<a href="x#sha256={"ab" * 32}">{html.escape(name)}</a>' for name in UNUSABLE if name
    )
    html_body = f'<a href="demo-1.0.tar.gz#sha256={"ab" * 32}">demo-1.0.tar.gz</a>{anchors}'
    dropped = []
    html_page = parse_html_page(html_body.encode(), PAGE_URL, "demo", dropped)
    assert [f.filename for f in html_page.files] == ["demo-1.0.tar.gz"]
    assert len(dropped) == len(UNUSABLE) - 1


def test_a_filename_listed_twice_keeps_its_first_entry() -> None:
    """The proxy serves a file by its name: a second entry's hash would be advertised
    beside the first's bytes."""
    first, second = (
        {**GOOD, "hashes": {"sha256": "ab" * 32}},
        {**GOOD, "hashes": {"sha256": "cd" * 32}},
    )
    other = {**GOOD, "filename": "demo-2.0.tar.gz"}
    dropped: list[str] = []
    body = json.dumps({"name": "demo", "files": [first, other, second]}).encode()
    page = parse_json_page(body, PAGE_URL, dropped)
    assert [(f.filename, f.sha256) for f in page.files] == [
        ("demo-1.0.tar.gz", "ab" * 32),
        ("demo-2.0.tar.gz", "ab" * 32),
    ]
    assert dropped == ["'demo-1.0.tar.gz': listed again; the first entry is kept"]
    anchors = "".join(
        f'<a href="demo-1.0.tar.gz#sha256={digest * 64}">demo-1.0.tar.gz</a>' for digest in "ef"
    )
    dropped = []
    html_page = parse_html_page(anchors.encode(), PAGE_URL, "demo", dropped)
    assert [f.sha256 for f in html_page.files] == ["e" * 64] and len(dropped) == 1


def test_upstream_text_is_escaped_in_html() -> None:
    hostile = {
        **GOOD,
        "filename": 'q"><img src=x onerror=alert(1)>-1.0.tar.gz',
        "yanked": '"><script>alert(1)</script>',
        "requires-python": '>=3.8"><b>',
    }
    body = json.dumps(
        {
            "name": "demo",
            "files": [hostile],
            "project-status": {"status": "<i>archived</i>", "reason": '"><script>'},
            "tracks": ['"><script>'],
        }
    ).encode()
    page = parse_json_page(body, PAGE_URL)
    rendered = render_html_page(page).decode()
    for raw in ("<img", "<script", "<b>", "<i>", '"><'):
        assert raw not in rendered
    reparsed = parse_html_page(rendered.encode(), PAGE_URL, "demo")
    (file,) = reparsed.files
    assert file.filename == hostile["filename"] and file.yanked == hostile["yanked"]
    assert json.loads(render_json_page(page))["files"][0]["yanked"] == hostile["yanked"]


def test_html_data_attributes_never_stand_in_for_a_files_own_keys() -> None:
    """``data-url`` on an anchor would override the linked URL in the JSON rendering and
    send clients to a URL of the upstream's choosing, past the proxy."""
    wheel = "demo-1.0-py3-none-any.whl"
    body = (
        f'<a href="/files/{wheel}#sha256={"aa" * 32}" data-url="https://evil.test/x.whl"'
        f' data-filename="other-9.0-py3-none-any.whl" data-hashes="none"'
        f' data-requires-python="&gt;=3.8" data-note="kept">{wheel}</a>'
    ).encode()
    page = parse_html_page(body, PAGE_URL, "demo")
    (file,) = page.files
    assert file.url == "https://upstream.test/files/" + wheel
    assert {"url", "filename", "hashes"}.isdisjoint(file.extra)
    assert file.extra["note"] == "kept" and file.extra["requires-python"] == ">=3.8"
    (entry,) = json.loads(render_json_page(link_page(page, {})))["files"]
    assert entry["url"] == f"../../files/demo/{wheel}"
    assert entry["filename"] == wheel and entry["hashes"] == {"sha256": "aa" * 32}


@pytest.mark.parametrize("bad", [b"NaN", b"Infinity", b'"\\ud800"'])
def test_a_page_that_is_not_json_is_refused_whole(bad: bytes) -> None:
    body = b'{"name":"demo","files":[{"filename":"a.tar.gz","url":"a.tar.gz","x":' + bad + b"}]}"
    with pytest.raises(PageError, match="invalid JSON page"):
        parse_json_page(body, PAGE_URL)
