"""Project names: PEP 503 normalisation and validation without any I/O."""

from __future__ import annotations

import functools

from packaging.utils import InvalidName, NormalizedName, canonicalize_name

from proxy.errors import NotFound


def normalize_project(raw: str) -> NormalizedName:
    """The PEP 503 form of a project name; `NotFound` for a name no index can hold."""
    if not raw or len(raw) > 200:
        raise NotFound(f"invalid project name {raw[:200]!r}")
    try:
        return _canonical(raw)
    except InvalidName:
        raise NotFound(f"invalid project name {raw!r}") from None


# Every page request normalises its name (two regexes in packaging); installers ask for
# the same few thousand again and again. Only valid names are remembered (an invalid
# one raises), at most 200 characters each.
_canonical = functools.lru_cache(maxsize=8192)(functools.partial(canonicalize_name, validate=True))
