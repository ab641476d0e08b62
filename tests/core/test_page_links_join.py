"""The page parsers join links without urllib where urllib would change nothing: the
result must be urljoin's (and urldefrag's, for HTML hrefs), whatever the link."""

from __future__ import annotations

from urllib.parse import urldefrag, urljoin

from hypothesis import example, given
from hypothesis import strategies as st

from proxy.core.pages import Resolver, _split_href

BASES = [
    "https://upstream.test/simple/demo/",
    "http://127.0.0.1:8080/simple/demo/",
    "https://user:secret@mirror.test:8443/pypi/simple/demo/?x=1#top",
    "HTTPS://Upper.Test/Simple/demo",
    "file:///srv/simple/demo/",
    "",
]
PREFIXES = [
    "", "/", "//", "https://", "http://", "HTTPS://", "https:", "https:///", "ftp://",
    "../", "./", "/./", "/../", "?", "#", " ", "\t",
]  # fmt: skip
PIECES = [
    "a", "Z", "0", "-", ".", "..", "_", "~", "%20", "%", "/", "//", ":", "@", "!", "$", "&",
    "'", "(", "*", "+", ",", ";", "=", "?", "#", "[", "]", "\\", " ", "\t", "\n", "é",
    "files.test", "packages/ab/cd/", "demo-1.0-py3-none-any.whl", "sha256=", "ab" * 8,
]  # fmt: skip

links = st.builds(
    lambda prefix, pieces: prefix + "".join(pieces),
    st.sampled_from(PREFIXES),
    st.lists(st.sampled_from(PIECES), max_size=12),
)


@given(st.sampled_from(BASES), links)
@example("https://upstream.test/simple/demo/", "/files/packages/ab/demo-1.0.tar.gz")
@example("https://upstream.test/simple/demo/", "/files//x/./y")
@example("https://upstream.test/simple/demo/", "https://files.test/a/b.whl")
@example("http://127.0.0.1:8080/simple/demo/", "https://files.test/a/b.whl")
@example("https://upstream.test/simple/demo/", "https://files.test/a?")
@example("https://upstream.test/simple/demo/", "https:///x")
def test_a_link_is_joined_as_urljoin_joins_it(base: str, link: str) -> None:
    try:
        expected = urljoin(base, link)
    except ValueError:  # urllib refuses some netlocs; so does the fallback
        return
    assert Resolver(base)(link) == expected


@given(st.sampled_from(BASES), links, st.sampled_from(["", "#sha256=" + "ab" * 32, "#md5=x"]))
@example("https://upstream.test/simple/demo/", "/f/demo-1.0.whl", "#sha256=" + "ab" * 32)
@example("https://upstream.test/simple/demo/", "demo-1.0.whl", "#sha256=" + "ab" * 32)
@example("", "https://files.test/demo-1.0.whl", "#sha256=ab")
def test_an_href_is_split_as_urldefrag_splits_the_joined_link(
    base: str, link: str, fragment: str
) -> None:
    href = link + fragment
    try:
        expected = tuple(urldefrag(urljoin(base, href)))
    except ValueError:
        return
    assert _split_href(href, Resolver(base)) == expected
