"""The one translation of httpx errors met upstream into hostfit's errors (502 and 504)."""

from __future__ import annotations

import httpx
import pytest

from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.outbound import upstream_error, upstream_errors

URL = "http://127.0.0.1:1/simple/demo/"


def failing(exc: Exception) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_a_timeout_is_an_upstream_timeout() -> None:
    client = failing(httpx.ReadTimeout("slow"))
    with client, pytest.raises(UpstreamTimeout) as raised, upstream_errors(URL, f"fetching {URL}"):
        client.get(URL)
    assert raised.value.status_code == 504
    assert str(raised.value) == f"upstream {URL}: fetching {URL}: timed out (ReadTimeout)"
    assert raised.value.__suppress_context__  # the httpx error is in the text, not chained


def test_other_httpx_errors_are_upstream_errors_with_their_text() -> None:
    client = failing(httpx.ConnectError("refused by peer"))
    with client, pytest.raises(UpstreamError) as raised, upstream_errors(URL, "requesting"):
        client.get(URL)
    assert type(raised.value) is UpstreamError and raised.value.status_code == 502
    assert raised.value.detail == "requesting: ConnectError: refused by peer"


def test_credentials_in_the_text_are_redacted() -> None:
    error = upstream_error(URL, "fetching", httpx.ConnectError("http://user:pw@host/ failed"))
    assert "pw" not in str(error)


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), upstream_errors(URL, "fetching"):
        raise KeyError("not httpx")
