"""The fast anchor reader must find what html.parser finds, attribute order included (it
is the order of a file's keys), or give up; and it must not give up on index pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.core.anchors import Extracted, _AnchorParser, extract, fast_extract
from proxy.core.models import File, Page
from proxy.core.pages import parse_html_page, render_html_page
from tests.support.upstream import _anchor, _html_document

ROOT = Path(__file__).resolve().parents[2]


def reference(text: str) -> Extracted | None:
    parser = _AnchorParser()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # html.parser's own failures: the fast path must not read such pages
        return None
    return parser.found


def ordered(found: Extracted) -> tuple[object, ...]:
    return ([(list(a.items()), t) for a, t in found.anchors], list(found.metas.items()))


def agrees(text: str) -> Extracted | None:
    fast = fast_extract(text)
    expected = reference(text)
    if fast is not None:
        assert expected is not None, text
        assert ordered(fast) == ordered(expected), text
    if expected is not None:
        assert ordered(extract(text)) == ordered(expected)
    return fast


# Well-formed index markup: the fast path must read all of it. ------------------------

WS = st.sampled_from([" ", "  ", "\n", "\t", "\r\n", "\f"])
TEXT = st.lists(
    st.sampled_from(
        [
            "demo-1.0.tar.gz",
            " ",
            "\n",
            "&amp;",
            "&lt;",
            "&#62;",
            "&#x3C;",
            "&gt",
            "&notin;",
            "&",
            "é",
            "\xa0",
            "\x00",
            ">",
            "=",
            '"',
            "'",
            "/",
            "&#0;",
            "&#xD800;",
            "&unknown;",
        ]
    ),
    max_size=6,
).map("".join)
NAMES = st.sampled_from(
    ["href", "HREF", "data-yanked", "data-requires-python", "data-core-metadata",
     "data-dist-info-metadata", "data-gpg-sig", "name", "content", "data-x", "x:y", "a.b",
     "_u", "rel"]
)  # fmt: skip
BARE = (
    st.lists(
        st.sampled_from(["a", "../x.whl", "/", "#sha256=ab", "&amp;", "%20", "&", ";", "'", "<"]),
        min_size=1,
        max_size=4,
    )
    .map("".join)
    .filter(lambda value: value[0] != "'")  # a quote opens a quoted value
)


@st.composite
def attribute(draw: st.DrawFn) -> str:
    name = draw(NAMES)
    shape = draw(st.sampled_from(["none", "double", "single", "bare"]))
    if shape == "none":
        return draw(WS) + name
    eq = draw(st.sampled_from(["=", " = ", "=\n", "\t="]))
    if shape == "bare":
        value = draw(BARE)
    else:
        quote = '"' if shape == "double" else "'"
        value = quote + draw(TEXT).replace(quote, "") + quote
    return draw(WS) + name + eq + value


@st.composite
def start_tag(draw: st.DrawFn) -> str:
    tag = draw(st.sampled_from(["a", "A", "meta", "br", "h1", "body", "p", "span"]))
    attributes = "".join(draw(st.lists(attribute(), max_size=4)))
    end = draw(st.sampled_from([">", "/>", " >", " />", "\n>"]))
    return f"<{tag}{attributes}{end}"


PLAIN_PIECES = st.one_of(
    start_tag(),
    TEXT.filter(bool),
    st.sampled_from(["</a>", "</A>", "</a >", "</a\n>", "</meta>", "</body>", "</h1>"]),
    st.sampled_from(
        [
            "<!DOCTYPE html>",
            "<!doctype>",
            "<title>Links for x</title>",
            "<!--SERIAL 12-->",
            "<!-- a-b <a href=x>c</a> -->",
            "<!--x- -->",
        ]
    ),
)


@given(st.lists(PLAIN_PIECES, max_size=14).map("".join))
@settings(max_examples=400)
@example('<a href="x" data-yanked>t</a><a data-yanked="" href=y>u</a>')
@example("<a href=a/b/>x</a><a href='q' />")
@example('<A HREF="u" href="v" Data-X="&amp;&lt;é">&#62; t &notin</A>')
@example('<meta name="pypi:repository-version" content="1.1"><meta name="n" content>')
def test_index_markup_is_read_fast_and_as_html_parser_reads_it(text: str) -> None:
    assert agrees(text) is not None


# Anything: the fast path reads it as html.parser does, or gives up. --------------------

OTHER_PIECES = st.sampled_from(
    ["<!-- c -->", "<!--->", "<!-->", "<!---->", "<!-- a--->", "<!-- a --!>", "<!-- a -- >",
     "<!-- a -- b -->", "<!---x-->", "<!-- <a href=x>c</a> -->", "<?x?>", "<![CDATA[<a>]]>", "<",
     "< a", "<!x>", "</>", "</ a>", "</a x>", "<a\xa0href=x>", "<a href=x\xa0>", "<a\vhref=x>",
     "<a href=\"x\"data-y=z>", "<a href=x\"y>", "<a href= >", "<a href==x>", "<a-b href=x>",
     "<script><a href=x>s</a></script>", "<style>a</style>", "<title><a href=x>t</a></title>",
     "<title>a &amp; b</title>", "<textarea>x</textarea>", "<title/>", "<plaintext>",
     "<a href=x/ >", "<a href=\"x\"/ >", "<a/b>", "<a href=x", "&#", "&", "<a href=`x`>",
     "<noscript><a href=x>n</a></noscript>", "</title>", "<!DOCTYPE", "\v", "\xa0", "<a\n\v>"]
)  # fmt: skip


@given(st.lists(st.one_of(PLAIN_PIECES, OTHER_PIECES), max_size=14).map("".join))
@settings(max_examples=600)
@example("<a href=x>t</a><!-- c --><a href=y>u</a>")
@example("<title>x</title><a href=x>t</a>")
@example("<a href=x>t</a><")
def test_any_markup_is_read_as_html_parser_reads_it_or_left_to_it(text: str) -> None:
    agrees(text)


# Real pages: read fast. ---------------------------------------------------------------


def bench_page() -> str:
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from synthetic import Shape, render_html, synthetic_files  # type: ignore[import-not-found]

    rendered: bytes = render_html("demo", synthetic_files("demo", Shape(300)))
    return rendered.decode()


def support_upstream_page() -> str:
    entries: list[dict[str, Any]] = [
        {"filename": "demo-1.0.tar.gz", "url": "../../files/demo-1.0.tar.gz",
         "hashes": {"sha256": "ab" * 32}, "requires-python": ">=3.8", "yanked": "bad <x> & y",
         "core-metadata": {"sha256": "cd" * 32}},
        {"filename": "demo-1.0-py3-none-any.whl", "url": "https://files.test/d.whl",
         "hashes": {"sha256": "ef" * 32}, "yanked": True, "gpg-sig": False},
    ]  # fmt: skip
    meta = [("pypi:repository-version", "1.1"), ("pypi:project-status", "quarantined")]
    return _html_document("Links for demo", meta, "".join(_anchor(e) for e in entries))


def our_page() -> str:
    files = (
        File("demo-1.0.tar.gz", "../../files/demo/demo-1.0.tar.gz", {"sha256": "ab" * 32},
             {"requires-python": ">=3.8,<4", "yanked": "why: <no> & \"quotes\"",
              "core-metadata": {"sha256": "cd" * 32}, "gpg-sig": True, "provenance": "p&q"}),
    )  # fmt: skip
    page = Page(name="demo", files=files, meta={"project-status": {"status": "archived"}})  # type: ignore[arg-type]
    return render_html_page(page).decode()


PYPI_STYLE = (
    "<!DOCTYPE html>\n<html>\n  <head>\n"
    '    <meta name="pypi:repository-version" content="1.3">\n'
    "    <title>Links for demo</title>\n  </head>\n  <body>\n    <h1>Links for demo</h1>\n"
    '    <a href="https://files.test/packages/ab/cd/demo-1.0.tar.gz#sha256=abab" '
    'data-requires-python="&gt;=3.8" data-yanked="broken &amp; old" '
    'data-dist-info-metadata="sha256=cdcd" data-core-metadata="sha256=cdcd">'
    "demo-1.0.tar.gz</a><br />\n  </body>\n</html>\n<!--SERIAL 1-->"
)


@pytest.mark.parametrize(
    "make",
    [bench_page, support_upstream_page, our_page, lambda: PYPI_STYLE],
    ids=["bench", "support-upstream", "hostfit", "pypi-style"],
)
def test_index_pages_are_read_fast(make: object) -> None:
    text = make()  # type: ignore[operator]
    found = agrees(text)
    assert found is not None and found.anchors


def test_a_page_with_a_script_is_read_by_html_parser_all_the_same() -> None:
    text = PYPI_STYLE.replace("<!--SERIAL", "<script>'<a href=x>'</script><!--SERIAL")
    assert fast_extract(text) is None
    (anchor,) = extract(text).anchors
    assert anchor[0]["data-yanked"] == "broken & old" and anchor[1] == "demo-1.0.tar.gz"


def test_parsed_page_keeps_data_attributes_entities_and_yanked_reasons() -> None:
    page = parse_html_page(our_page().encode(), "https://up.test/simple/demo/", "demo")
    (file,) = page.files
    assert file.yanked == 'why: <no> & "quotes"'
    assert file.requires_python == ">=3.8,<4"
    assert file.extra["provenance"] == "p&q" and file.extra["gpg-sig"] is True
    assert file.core_metadata == {"sha256": "cd" * 32}
