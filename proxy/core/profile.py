"""Host profiles: what is known about the requesting host, each fact with its source.

The profile string (DESIGN.md, "Profile string") is ``key=value`` pairs joined by
``,``. Unknown keys are ignored so that newer clients can talk to older servers; a
malformed value is a `BadRequest` naming the key and value, never a silent guess.
Values are normalised on parsing (``python=3.11.7`` -> ``3.11``, ``musl-1.2.3`` ->
``musl-1.2``), so equal hosts give equal canonical strings and equal cache keys.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Literal, TypeVar

from packaging.tags import INTERPRETER_SHORT_NAMES

from proxy.core.dotted import dotted, parse_dotted
from proxy.errors import BadRequest

Source = Literal["url", "header", "user_data", "user-agent", "default", "probe"]
LibcFamily = Literal["glibc", "musl"]

KEYS = ("arch", "cuda", "glibcxx", "impl", "isa", "libc", "python", "sm")
# A profile travels in URLs and headers; bound it so nobody can grow cache keys at will.
MAX_PROFILE_LENGTH = 512

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fact(Generic[T]):
    value: T
    source: Source


@dataclass(frozen=True, slots=True, order=True)
class Libc:
    family: LibcFamily
    version: tuple[int, int]

    def __str__(self) -> str:
        return f"{self.family}-{self.version[0]}.{self.version[1]}"


@dataclass(frozen=True, slots=True)
class HostProfile:
    """Every fact is optional: ``None`` means the host did not tell, which never hides a file.

    ``cuda`` is ``Fact(None, ...)`` when the host said ``cuda=none`` (no NVIDIA driver).
    Field names match the profile keys, except ``sms`` (key ``sm``).
    """

    python: Fact[tuple[int, int]] | None = None
    impl: Fact[str] | None = None
    arch: Fact[str] | None = None
    libc: Fact[Libc] | None = None
    glibcxx: Fact[tuple[int, ...]] | None = None
    cuda: Fact[tuple[int, int] | None] | None = None
    sms: Fact[tuple[tuple[int, int], ...]] | None = None
    isa: Fact[int] | None = None
    # Worked out once: a profile keys several caches on every request, and hashing the
    # nested facts anew each time was a measurable share of a cached page's cost.
    _hash: int = field(default=0, init=False, repr=False, compare=False)
    _known: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        facts = tuple(getattr(self, name) for name in _FIELD_NAMES)
        object.__setattr__(self, "_hash", hash(facts))
        object.__setattr__(self, "_known", any(fact is not None for fact in facts))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[HostProfile], tuple[Any, ...]]:
        # Rebuilt through __init__: a str's hash differs between processes.
        return HostProfile, tuple(getattr(self, name) for name in _FIELD_NAMES)

    def values(self) -> dict[str, str]:
        """Known facts as profile-string values, keyed by profile key."""
        out: dict[str, str] = {}
        for key in KEYS:
            fact = getattr(self, _FIELD[key])
            if fact is not None:
                out[key] = _FORMAT[key](fact.value)
        return out

    def sources(self) -> dict[str, Source]:
        out: dict[str, Source] = {}
        for key in KEYS:
            fact = getattr(self, _FIELD[key])
            if fact is not None:
                out[key] = fact.source
        return out

    def to_string(self, keys: Iterable[str] = KEYS) -> str:
        """Canonical profile string: keys sorted, values normalised, sources dropped."""
        if keys is KEYS:
            return _canonical(self)
        wanted = set(keys)
        return ",".join(f"{k}={v}" for k, v in sorted(self.values().items()) if k in wanted)

    def __bool__(self) -> bool:
        return self._known


def _all_keys(profile: HostProfile) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(profile.values().items()))


# Asked of the same few profiles on every request (cache keys): remembered. A profile is
# a frozen value, so its string never changes.
_canonical = functools.lru_cache(maxsize=4096)(_all_keys)
_FIELD_NAMES = tuple(f.name for f in fields(HostProfile) if f.compare)


def merge(*profiles: HostProfile) -> HostProfile:
    """Combine profiles given in order of precedence: per fact, the first that knows wins."""
    chosen: dict[str, object] = {}
    for name in _FIELD_NAMES:
        for profile in profiles:
            fact = getattr(profile, name)
            if fact is not None:
                chosen[name] = fact
                break
    return HostProfile(**chosen)  # type: ignore[arg-type]


def host_class(profile: HostProfile, keys: Iterable[str] = KEYS) -> str:
    """A stable key made of only the facts in ``keys``: hosts that agree on them share it.

    Use the facts a decision consulted (`proxy.core.decide.Verdict.consulted`), so a
    page whose wheels need nothing of CUDA is cached once for every GPU.
    """
    return profile.to_string(keys)


def parse_profile(text: str, source: Source) -> HostProfile:
    if len(text) > MAX_PROFILE_LENGTH:
        raise BadRequest(f"bad host profile: longer than {MAX_PROFILE_LENGTH} characters")
    facts: dict[str, Fact[object]] = {}
    seen: set[str] = set()
    for raw in text.split(","):
        pair = raw.strip()
        if not pair:
            continue  # tolerate a trailing or doubled comma
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise BadRequest(f"bad host profile: {pair!r} is not key=value")
        parser = _PARSE.get(key)
        if parser is None:
            continue  # unknown keys are ignored, repeated or not
        if key in seen:
            raise BadRequest(f"bad host profile: {key} given twice")
        seen.add(key)
        try:
            facts[_FIELD[key]] = Fact(parser(value), source)
        except ValueError as exc:
            raise BadRequest(f"bad host profile: {key}={value!r}: {exc}") from None
    return HostProfile(**facts)  # type: ignore[arg-type]


_NUMBERS = r"\d{1,4}"


def parse_python(value: str) -> tuple[int, int]:
    m = re.fullmatch(rf"({_NUMBERS})\.({_NUMBERS})(?:\.{_NUMBERS})?", value)
    if not m:
        raise ValueError("expected a version such as 3.11")
    return int(m[1]), int(m[2])


def parse_impl(value: str) -> str:
    lowered = value.lower()
    if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", lowered):
        raise ValueError("expected an implementation such as cp or pp")
    return INTERPRETER_SHORT_NAMES.get(lowered, lowered)


# Other systems' names for the machines Linux wheels are tagged with: a host that says
# arch=amd64 (Debian's and Docker's name) is an x86_64 host, and is given its wheels.
MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def parse_arch(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]{1,32}", value):
        raise ValueError("expected a machine such as x86_64 or aarch64")
    return MACHINE_ALIASES.get(value, value)


def parse_libc(value: str) -> Libc:
    m = re.fullmatch(rf"(glibc|musl)-({_NUMBERS})\.({_NUMBERS})(?:\.{_NUMBERS})?", value)
    if not m:
        raise ValueError("expected glibc-X.Y or musl-X.Y")
    family: LibcFamily = "glibc" if m[1] == "glibc" else "musl"
    return Libc(family, (int(m[2]), int(m[3])))


def parse_version(value: str) -> tuple[int, ...]:
    if not re.fullmatch(rf"{_NUMBERS}(?:\.{_NUMBERS}){{0,3}}", value):
        raise ValueError("expected a dotted version such as 3.4.25")
    return parse_dotted(value)


def parse_cuda(value: str) -> tuple[int, int] | None:
    if value == "none":
        return None
    m = re.fullmatch(rf"({_NUMBERS})(?:\.({_NUMBERS}))?", value)
    if not m:
        raise ValueError("expected a CUDA version such as 12.4, or none")
    return int(m[1]), int(m[2] or 0)


def parse_sms(value: str) -> tuple[tuple[int, int], ...]:
    sms: set[tuple[int, int]] = set()
    for part in value.split("+"):
        m = re.fullmatch(rf"({_NUMBERS})\.({_NUMBERS})", part)
        if not m:
            raise ValueError("expected compute capabilities such as 8.9 or 8.0+9.0")
        sms.add((int(m[1]), int(m[2])))
    return tuple(sorted(sms))


def parse_isa(value: str) -> int:
    m = re.fullmatch(r"x86-64(?:-v([1-4]))?", value)
    if not m:
        raise ValueError("expected x86-64, x86-64-v2, x86-64-v3 or x86-64-v4")
    return int(m[1] or 1)


def _cuda_text(version: tuple[int, int] | None) -> str:
    return "none" if version is None else dotted(version)


_FIELD = {key: ("sms" if key == "sm" else key) for key in KEYS}
_PARSE: dict[str, Callable[[str], object]] = {
    "python": parse_python,
    "impl": parse_impl,
    "arch": parse_arch,
    "libc": parse_libc,
    "glibcxx": parse_version,
    "cuda": parse_cuda,
    "sm": parse_sms,
    "isa": parse_isa,
}
_FORMAT: dict[str, Callable[[Any], str]] = {
    "python": dotted,
    "impl": str,
    "arch": str,
    "libc": str,
    "glibcxx": dotted,
    "cuda": _cuda_text,
    "sm": lambda sms: "+".join(dotted(sm) for sm in sms),
    "isa": lambda level: f"x86-64-v{level}",
}
