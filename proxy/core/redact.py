"""Secrets never leave: the one redaction every outbound text goes through.

Credentials ride in URLs (``https://user:secret@index.example/simple/``,
``redis://:password@cache:6379/0``), in query strings (``?token=...``) and in
``Authorization`` headers. `redact` replaces each with ``***`` wherever it appears in
a text (a URL, an error message, a log line), so callers need not know where a URL
hides in what they print. It is idempotent, and a username before a password is
kept (it says which account, not how to use it).

`split_credentials` is the other half: hostfit strips userinfo from upstream URLs
once, at start-up, and sends the credentials only in ``Authorization`` headers to
their own origin, so no URL it stores, logs or serves carries them.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "***"

# scheme://userinfo@ : userinfo runs to the last "@" before the host (a password may hold "@").
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>]*)@")
_SECRET_PARAM = re.compile(
    # Any name holding one of these words: ``key`` (Google's, Artifactory's api-key),
    # ``api`` (X-JFrog-Art-Api), ``session``; a name taken by mistake only hides more.
    r"(?P<name>[?&;][\w.-]*(?:token|secret|passw|pwd|signature|sig|credential|key|api"
    r"|session|auth)[\w.-]*=)[^&#;\s'\"<>]*",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?:basic|bearer|token|digest)\s+)?[^\s\"',;]+",
    re.IGNORECASE,
)


def _userinfo(match: re.Match[str]) -> str:
    user, sep, password = match["userinfo"].partition(":")
    if sep and password:
        return f"{match['scheme']}{user}:{REDACTED}@"  # user may be empty: redis://:pw@
    return f"{match['scheme']}{REDACTED}@"  # a token alone, or a user without password


def redact(text: str) -> str:
    """``text`` with every credential in it replaced by ``***``."""
    if "@" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _SECRET_PARAM.sub(rf"\g<name>{REDACTED}", text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(rf"\g<name>{REDACTED}", text)
    return text


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its userinfo, and the (username, password) it carried, decoded."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=hostport))
    return clean, (unquote(user), unquote(password))
