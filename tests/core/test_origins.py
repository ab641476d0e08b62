from __future__ import annotations

import base64

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxy.core.models import File
from proxy.core.origins import (
    TLS,
    Origin,
    Outbound,
    UpstreamAccess,
    origin_of,
    plan_origins,
    refusal,
    screen,
)
from proxy.errors import ConfigError

UP = Origin("http", "127.0.0.1", 8001)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8001/simple/", UP),
        ("HTTP://User:pw@127.0.0.1:8001/x", UP),
        ("https://Index.Example./simple/", Origin("https", "index.example", 443)),
        ("http://[fe80::1]:80/x.whl", Origin("http", "fe80::1", 80)),
        ("file:///etc/passwd", None),
        ("ftp://h/x", None),
        ("http://h:99999/x", None),
        ("/relative/x.whl", None),
    ],
)
def test_origin_of(url: str, origin: Origin | None) -> None:
    assert origin_of(url) == origin


def test_origin_str_omits_default_ports() -> None:
    assert str(Origin("https", "h", 443)) == "https://h"
    assert str(UP) == "http://127.0.0.1:8001"
    assert str(Origin("http", "fe80::1", 8080)) == "http://[fe80::1]:8080"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8001/files/a.whl", None),
        ("http://127.0.0.1:8002/files/a.whl", "refused http://127.0.0.1:8002: not an upstream"),
        ("http://localhost:8001/files/a.whl", "refused http://localhost:8001: not an upstream"),
        ("https://127.0.0.1:8001/files/a.whl", "refused https://127.0.0.1:8001: not an upstream"),
        ("http://169.254.169.254/x.whl", "refused http://169.254.169.254: a link-local"),
        ("http://[fe80::1]/x.whl", "refused http://[fe80::1]: a link-local"),
        ("http://[::ffff:169.254.169.254]/x.whl", "link-local or cloud metadata"),
        ("http://metadata.google.internal/x.whl", "link-local or cloud metadata"),
        ("file:///etc/passwd", "scheme 'file' is never fetched"),
        ("ftp://u:secret@h/x.whl", "refused ftp://u:***@h/x.whl: scheme 'ftp'"),
    ],
)
def test_refusal(url: str, why: str | None) -> None:
    found = refusal(url, frozenset({UP}))
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found


def test_plan_strips_credentials_and_allows_each_upstream_its_own_origin() -> None:
    plan = plan_origins(
        ["http://user:secret@127.0.0.1:8001/simple/", "http://127.0.0.1:8003/other/"],
        ["https://files.example/packages/"],
    )
    first, second = plan.upstreams
    assert first.url == "http://127.0.0.1:8001/simple/"
    files_example = Origin("https", "files.example", 443)
    assert first.files == {UP, files_example}
    assert second.files == {Origin("http", "127.0.0.1", 8003), files_example}
    assert plan.outbound.allowed == first.files | second.files
    token = base64.b64encode(b"user:secret").decode()
    assert plan.outbound.authorization("http://127.0.0.1:8001/files/a.whl") == f"Basic {token}"
    assert plan.outbound.authorization("http://127.0.0.1:8003/files/a.whl") is None
    assert plan.outbound.authorization("https://files.example/a.whl") is None


def test_pip_default_index_gets_its_file_host_and_no_other_upstream_does() -> None:
    pip_default = ("https://index.example/simple", "files.example")
    plan = plan_origins(
        ["https://index.example/simple/", "https://mirror.example/simple/"], (), pip_default
    )
    default, mirror = plan.upstreams
    assert Origin("https", "files.example", 443) in default.files
    assert mirror.files == {Origin("https", "mirror.example", 443)}
    # Another path on the same host is not pip's default index.
    other = plan_origins(["https://index.example/private/simple/"], (), pip_default)
    assert other.upstreams[0].files == {Origin("https", "index.example", 443)}


@pytest.mark.parametrize(
    ("upstreams", "file_origins", "message"),
    [
        (["ftp://u:secret@h/"], [], r"upstream 'ftp://u:\*\*\*@h/' is not an http\(s\) URL"),
        (["http://h/"], ["file:///tmp"], "file origin 'file:///tmp' is not"),
        (["http://h/"], ["http://169.254.169.254/"], "link-local or cloud metadata"),
        (["http://a:1@h/x/", "http://a:2@h/y/"], [], "different credentials .* http://h"),
    ],
)
def test_plan_refuses(upstreams: list[str], file_origins: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_origins(upstreams, file_origins)


def test_an_upstream_may_itself_be_link_local() -> None:
    plan = plan_origins(["http://169.254.10.10:8080/simple/"])
    assert plan.outbound.refusal("http://169.254.10.10:8080/files/a.whl") is None
    assert plan.outbound.refusal("http://169.254.169.254/latest/") is not None


def test_outbound_round_trips_through_json() -> None:
    outbound = plan_origins(["http://u:p@127.0.0.1:8001/simple/"], ["https://f.example"]).outbound
    assert Outbound.from_json(outbound.to_json()) == outbound
    only = Outbound.only("http://127.0.0.1:8001/files/a.whl")
    assert only.allowed == {UP} and not only.headers


def test_screen_keeps_allowed_links_and_says_why_of_the_rest() -> None:
    files = [
        File("a-1.0-py3-none-any.whl", "http://127.0.0.1:8001/files/a.whl", {}),
        File("a-1.1-py3-none-any.whl", "http://127.0.0.1:9999/a.whl", {}),
        File("a-1.2-py3-none-any.whl", "http://169.254.169.254/x.whl", {}),
    ]
    screened = screen(files, frozenset({UP}))
    assert screened.files == (files[0],)
    assert [(f.filename, why.split(":")[0]) for f, why in screened.withheld] == [
        ("a-1.1-py3-none-any.whl", "refused http"),
        ("a-1.2-py3-none-any.whl", "refused http"),
    ]
    assert "127.0.0.1:9999" in screened.withheld[0][1]


LINKS = st.sampled_from(
    [
        "http://127.0.0.1:8001/files/a.whl",
        "http://127.0.0.1:80011/files/a.whl",
        "http://127.0.0.1:8001.evil.test/a.whl",
        "http://u:p@127.0.0.1:8001/a.whl",
        "http://127.0.0.1:8001@evil.test/a.whl",
        "http://evil.test@127.0.0.1:8001/a.whl",
        "HTTP://127.0.0.1:8001/a.whl",
        "http://127.0.0.1:08001/a.whl",
        "http://127.0.0.1:8001:/a.whl",
        "http://%31%32%37.0.0.1:8001/a.whl",
        "http://[::1]:8001/a.whl",
        "https://127.0.0.1:8001/a.whl",
        "http://169.254.169.254/x.whl",
        "/files/a.whl",
        "http://127.0.0.1:8001",
        "http://127.0.0.1:8001\\@evil.test/a.whl",
    ]
)


@given(st.lists(LINKS, max_size=8))
@example(["http://127.0.0.1:8001/files/a.whl"] * 3 + ["http://127.0.0.1:80011/files/a.whl"])
def test_a_page_is_screened_as_each_of_its_links_would_be(urls: list[str]) -> None:
    """Most pages link one origin: `screen` keeps them whole at once; the same files and
    reasons as asking `refusal` of each link."""
    files = tuple(File(f"a-{i}.whl", url, {}) for i, url in enumerate(urls))
    said = [(f, refusal(f.url, frozenset({UP}))) for f in files]
    screened = screen(files, frozenset({UP}))
    assert screened.files == tuple(f for f, why in said if why is None)
    assert screened.withheld == tuple((f, why) for f, why in said if why is not None)


def test_credentials_stay_out_of_reprs() -> None:
    plan = plan_origins(["http://u:hunter2@127.0.0.1:8001/simple/"])
    assert "hunter2" not in repr(plan)


def test_an_upstreams_own_settings_reach_its_origins_only() -> None:
    headers = (("Authorization", "Bearer t"), ("X-Api-Key", "k"))
    tls = TLS(("corp.pem",), "client.pem", "client.key")
    access = UpstreamAccess(
        "https://index.corp/simple/", headers, tls, ("https://files.corp", "http://plain.corp")
    )
    plan = plan_origins(
        [access, "https://public.example/simple/"], ["https://cdn.example"], ca=["extra.pem"]
    )
    outbound = plan.outbound
    for url in ("https://index.corp/x", "https://files.corp/a.whl", "http://plain.corp/a.whl"):
        assert outbound.headers_for(url) == headers
    for url in ("https://cdn.example/a.whl", "https://public.example/simple/x/"):
        assert outbound.headers_for(url) == () and outbound.authorization(url) is None
    own = TLS(("extra.pem", "corp.pem"), "client.pem", "client.key")
    assert outbound.tls_for("https://files.corp/a.whl") == own
    assert outbound.tls_for("http://plain.corp/a.whl") == TLS(("extra.pem",))  # not https
    assert outbound.tls_for("https://public.example/") == TLS(("extra.pem",))
    corp, public = plan.upstreams
    assert Origin("https", "files.corp", 443) in corp.files
    assert Origin("https", "files.corp", 443) not in public.files
    assert Outbound.from_json(outbound.to_json()) == outbound
    assert "Bearer t" not in repr(plan)


def test_one_origin_gets_one_setting() -> None:
    a = UpstreamAccess("https://h/a/", tls=TLS(cert="a.pem"))
    b = UpstreamAccess("https://h/b/", tls=TLS(cert="b.pem"))
    with pytest.raises(ConfigError, match=r"different TLS settings .* https://h"):
        plan_origins([a, b])
    with pytest.raises(ConfigError, match="different credentials"):
        plan_origins([UpstreamAccess("https://h/a/", (("X-Key", "1"),)), "https://u:p@h/b/"])
    with pytest.raises(ConfigError, match="credentials given twice"):
        plan_origins([UpstreamAccess("https://u:p@h/a/", (("Authorization", "Bearer x"),))])
