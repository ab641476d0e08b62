"""The wheel tags a *client* supports, computed from its declared profile.

`packaging.tags` does the work, fed with explicit arguments: `sys_tags()` reads the
machine it runs on, which is this server, never the client.

A fact the host did not tell never hides a file. Without ``python`` the
interpreter/ABI part of a tag is not judged; without both ``arch`` and ``libc`` the
platform part is not judged. To judge the two halves separately, packaging is asked
for the tags of one stand-in platform: it yields every (interpreter, ABI) pair once
per platform, so the pairs found there are exactly those allowed on each real one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from proxy.core.profile import HostProfile, Libc
from proxy.core.variants import split_label

_STAND_IN = "hostfit_stand_in_platform"

# manylinux_2_17 is the first glibc policy defined for these; x86 starts at 2_5.
_X86 = frozenset({"x86_64", "i686"})
_LEGACY_MANYLINUX = {
    (2, 17): (
        "manylinux2014",
        # armv8l: no wheel says it, but packaging lists it, and this list is packaging's
        frozenset({"x86_64", "i686", "aarch64", "armv7l", "armv8l", "ppc64", "ppc64le", "s390x"}),
    ),
    (2, 12): ("manylinux2010", _X86),
    (2, 5): ("manylinux1", _X86),
}


@dataclass(frozen=True, slots=True)
class ClientTags:
    """What a client accepts. ``None`` parts are unknown and accept everything."""

    platforms: tuple[str, ...] | None
    shapes: frozenset[tuple[str, str, bool]] | None  # (interpreter, abi, platform is "any")
    open_interpreters: frozenset[str]  # interpreters whose ABI names the profile cannot tell
    impl_known: bool
    tags: tuple[Tag, ...]  # best first; empty unless python, arch and libc are all known

    def supports(self, tag: Tag) -> bool:
        is_any = tag.platform == "any"
        if not is_any and self.platforms is not None and tag.platform not in self.platforms:
            return False
        if self.shapes is None or (tag.interpreter, tag.abi, is_any) in self.shapes:
            return True
        if tag.interpreter in self.open_interpreters:
            return True
        # An unnamed implementation may be the one this tag is for.
        return not self.impl_known and not tag.interpreter.startswith(("cp", "py"))


@functools.lru_cache(maxsize=256)
def client_tags(profile: HostProfile) -> ClientTags:
    """Remembered: a fleet has few profiles, and every gated download asks again
    (hundreds of tags for a CPython host)."""
    platforms = None
    if profile.arch is not None and profile.libc is not None:
        platforms = tuple(linux_platforms(profile.arch.value, profile.libc.value))
    if profile.python is None:
        return ClientTags(platforms, None, frozenset(), False, ())
    version = profile.python.value
    impl = profile.impl.value if profile.impl is not None else None
    stand_in = list(_tags(version, impl or "cp", [_STAND_IN]))
    shapes = frozenset((t.interpreter, t.abi, t.platform == "any") for t in stand_in)
    open_interpreters: frozenset[str] = frozenset()
    if impl not in (None, "cp"):
        open_interpreters = frozenset({f"{impl}{version[0]}{version[1]}"})
    ordered = tuple(dict.fromkeys(_tags(version, impl or "cp", platforms))) if platforms else ()
    return ClientTags(platforms, shapes, open_interpreters, impl is not None, ordered)


def wheel_supported(filename: str, tags: ClientTags) -> bool:
    """A name that is not a valid wheel filename is not for this check to hide."""
    try:
        _, _, _, wheel_tags = parse_wheel_filename(split_label(filename)[0])
    except InvalidWheelFilename:
        return True
    return any(tags.supports(t) for t in wheel_tags)


# Machines whose userland takes another machine's wheels too, as packaging's
# `_linux_platforms` has them: a 32-bit ARM userland on an ARMv8 CPU says armv8l.
_ALSO_TAKES = {"armv8l": ("armv8l", "armv7l")}


def linux_platforms(arch: str, libc: Libc) -> Iterator[str]:
    """Platform tags a Linux host accepts, best first, in packaging's order."""
    archs = _ALSO_TAKES.get(arch, (arch,))
    for each in archs:
        yield f"linux_{each}"  # a wheel built on the host itself comes first
    for each in archs:
        yield from _policy_platforms(each, libc)


def _policy_platforms(arch: str, libc: Libc) -> Iterator[str]:
    major, minor = libc.version
    if libc.family == "musl":
        for m in range(minor, -1, -1):
            yield f"musllinux_{major}_{m}_{arch}"
    else:
        floor = 5 if arch in _X86 else 17
        for glibc_major in range(major, 1, -1):
            top = minor if glibc_major == major else 99
            bottom = floor if glibc_major == 2 else 0
            for m in range(top, bottom - 1, -1):
                yield f"manylinux_{glibc_major}_{m}_{arch}"
                legacy = _LEGACY_MANYLINUX.get((glibc_major, m))
                if legacy is not None and arch in legacy[1]:
                    yield f"{legacy[0]}_{arch}"


def _tags(
    version: tuple[int, int], impl: str, platforms: list[str] | tuple[str, ...]
) -> Iterator[Tag]:
    nodot = f"{version[0]}{version[1]}"
    if impl == "cp":
        # Whether the host is free-threaded or a debug build is not in the profile,
        # so both ABIs are allowed (one packaging call each: the first ABI decides
        # whether abi3 applies).
        if version >= (3, 8):
            yield from cpython_tags(version, [f"cp{nodot}"], platforms)
        else:
            yield from cpython_tags(version, [f"cp{nodot}m", f"cp{nodot}"], platforms)
        if version >= (3, 13):
            yield from cpython_tags(version, [f"cp{nodot}t"], platforms)
    else:
        yield from generic_tags(f"{impl}{nodot}", ["none"], platforms)
    yield from compatible_tags(version, f"{impl}{nodot}", platforms)
