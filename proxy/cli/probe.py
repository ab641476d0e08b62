"""``hostfit probe [--json] [--index-url URL] [--variants]``: print this machine's host
profile, or (``--variants``) its wheel-variant properties (PEP 825/850) as a static file."""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
from urllib.parse import quote, urlsplit

from proxy.core.variant_fit import static_properties
from proxy.probe.host import Probe, probe


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="detect this machine's host profile",
        description=(
            "Detect this machine's libc, libstdc++, CPU level, NVIDIA driver and GPUs, "
            "and print the host profile string hostfit filters by."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    parser.add_argument(
        "--index-url",
        metavar="URL",
        type=_http_url,
        help="hostfit's address: also print the index URL carrying the profile, "
        "and pip.conf and uv.toml snippets",
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="print this machine's wheel-variant properties (nvidia, x86_64) as PEP 850 "
        "static provider entries, for builds and installs on machines without its GPU",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.variants:
        print(render_variants(probe()), end="")
        return 0
    print(render(probe(), index_url=args.index_url, as_json=args.json), end="")
    return 0


def render_variants(result: Probe) -> str:
    """``{namespace: {"static-properties": {feature: [values, best first]}, "feature-order":
    [...]}}``: what the providers would detect here, written as PEP 850 static providers
    (a namespace this machine says nothing about is left out)."""
    return json.dumps(static_properties(result.profile), indent=2) + "\n"


def render(result: Probe, *, index_url: str | None = None, as_json: bool = False) -> str:
    profile = result.profile.to_string()
    url = profile_url(index_url, profile) if index_url else None
    if as_json:
        data: dict[str, object] = {
            "profile": profile,
            "facts": result.profile.values(),
            "found": result.found,
            "driver": result.driver,
            "gpus": [
                {"index": g.index, "name": g.name, "sm": f"{g.sm[0]}.{g.sm[1]}"}
                for g in result.gpus
            ],
        }
        if url:
            data |= {"index_url": url, "pip_conf": pip_conf(url), "uv_toml": uv_toml(url)}
        return json.dumps(data, indent=2) + "\n"
    if not url:
        return profile + "\n"
    return f"{profile}\n{url}\n\n# pip.conf\n{pip_conf(url)}\n# uv.toml\n{uv_toml(url)}"


_VIEW = re.compile(r"/(?:universal|p/[^/]*)$")


def profile_url(index_url: str, profile: str) -> str:
    """``http://host:8080/`` -> ``http://host:8080/p/<profile>/simple/``."""
    parts = urlsplit(index_url)
    path = parts.path.rstrip("/").removesuffix("/simple").rstrip("/")
    # A view's own index URL (``/universal/simple/``, ``/p/<profile>/simple/``) names the
    # proxy under its view: the profile's view replaces it.
    base = parts._replace(path=_VIEW.sub("", path), query="", fragment="").geturl()
    if not profile:
        return f"{base}/simple/"
    return f"{base}/p/{quote(profile, safe='=,+')}/simple/"


def pip_conf(url: str) -> str:
    trusted = trusted_host(url)
    extra = f"trusted-host = {trusted}\n" if trusted else ""
    return f"[global]\nindex-url = {url}\n{extra}"


def uv_toml(url: str) -> str:
    # uv fetches plain-http indexes as they are: its allow-insecure-host is about skipping
    # certificate checks, which hostfit never suggests.
    return f'[[index]]\nurl = "{url}"\ndefault = true\n'


def trusted_host(url: str) -> str | None:
    """The host pip needs in ``trusted-host`` to use ``url``, or None.

    pip ignores an index that is not a secure origin (https, localhost, 127.0.0.0/8,
    ::1) unless its host is trusted.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme == "https" or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return f"[{host}]" if ":" in host else host


def _http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"not an http(s) URL without query: {text!r}")
    return text
