"""`screen` judges each origin once per page: it must keep and withhold exactly what
judging every file's URL on its own would."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from proxy.core.models import File
from proxy.core.origins import origin_of, refusal, screen

ALLOWED = frozenset(
    o for o in (origin_of("https://files.test/"), origin_of("http://127.0.0.1:8080/")) if o
)
AUTHORITIES = [
    "https://files.test", "https://FILES.test", "https://files.test:443", "https://files.test.",
    "http://127.0.0.1:8080", "http://127.0.0.1", "https://user:pw@files.test",
    "https://files.test:8443", "https://other.test", "https://[::1]", "https://files.test\t",
    "ftp://files.test", "HTTPS://files.test", "https://169.254.169.254", "", "/", "//files.test",
]  # fmt: skip
PATHS = ["/a.whl", "/", "?x=1", "#f", "/b/c.tar.gz", "", "/\t/x", "\\x"]

urls = st.builds(lambda a, p: a + p, st.sampled_from(AUTHORITIES), st.sampled_from(PATHS))


@given(st.lists(urls, max_size=20))
@example(["https://files.test/a.whl", "https://files.test\\x"])
@example(["http://127.0.0.1:8080/a.whl", "http://127.0.0.1:8080@evil.test/b.whl"])
def test_screen_agrees_with_each_url_judged_alone(links: list[str]) -> None:
    files = [File(f"f{i}.whl", url, {}) for i, url in enumerate(links)]
    screened = screen(files, ALLOWED)
    assert screened.files == tuple(f for f in files if refusal(f.url, ALLOWED) is None)
    assert screened.withheld == tuple(
        (f, why) for f in files if (why := refusal(f.url, ALLOWED)) is not None
    )
