"""Variant properties judged against a host profile: which labels fit, which fits best.

The properties hostfit can judge are those of the providers installers ship
(nvidia-variant-provider 0.0.1 and x86_64-variant-provider 0.2.1, as uv vendors them):

- ``nvidia :: cuda_version_lower_bound :: X[.Y]``: the driver's CUDA is at least X.Y
  (``12`` means 12.0).
- ``nvidia :: cuda_version_upper_bound :: X[.Y]``: the driver's CUDA is below X.Y.
- ``nvidia :: sm_arch :: {M}{m}_real | {M}{m}_virtual`` (CMake's spelling: ``120_real``
  is SASS for 12.0, ``90a_real`` for sm_90a, ``80_virtual`` PTX for 8.0): judged by
  CUDA's binary compatibility rules (`proxy.core.gpu`) on every GPU of the host.
- ``x86_64 :: level :: v1..v4``: the CPU is at least that level.

A label fits when every feature it lists has a value that fits (PEP 825). The answer
is three-valued: False only when the host's facts say so; None where a fact is unknown
or a namespace, feature or value is one hostfit cannot judge, which never hides a
wheel and never makes a wheel the one chosen for a host.

hostfit's rules are those of the hardware, where the providers simplify: the NVIDIA
provider reads only the highest GPU and accepts PTX of that major's ``.0`` only. Being
never stricter than the provider, pruning never takes away a wheel an installer would
have chosen. `static_properties` gives the providers' own lists, for installers that
take a host's properties from a file instead of running the providers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from proxy.core.decide import Reason
from proxy.core.gpu import Runs, ptx_target, sass_target
from proxy.core.profile import HostProfile
from proxy.core.variants import Properties, VariantMetadata

Fit = bool | None
Rank = tuple[int, ...]  # lower is better

NVIDIA, X86_64 = "nvidia", "x86_64"
LOWER, UPPER, SM_ARCH, LEVEL = (
    "cuda_version_lower_bound", "cuda_version_upper_bound", "sm_arch", "level",
)  # fmt: skip
FEATURE_ORDER = {NVIDIA: (LOWER, UPPER, SM_ARCH), X86_64: (LEVEL,)}

# nvidia-variant-provider's range: outside it the provider says nothing.
CUDA_RANGE = ((11, 0), (15, 20))
MIN_SM = (5, 0)

_CUDA = re.compile(r"(\d{1,3})(?:\.(\d{1,3}))?")
_SM = re.compile(r"(\d{1,3})(\d)([af]?)_(real|virtual)")
_LEVEL = re.compile(r"v([1-4])")


def label_fit(properties: Properties, profile: HostProfile, *, every_gpu: bool = False) -> Fit:
    """``every_gpu``: ``sm_arch`` must run on each GPU of the host, not just one of them."""
    fits = [
        _feature_fit(ns, feature, values, profile, every_gpu)
        for ns, features in properties.items()
        for feature, values in features.items()
    ]
    if False in fits:
        return False
    return None if None in fits else True


def unfit_labels(meta: VariantMetadata, profile: HostProfile) -> frozenset[str]:
    """Labels whose wheels cannot work on this host."""
    return frozenset(label for label, p in meta.variants.items() if label_fit(p, profile) is False)


def best_label(meta: VariantMetadata, labels: Iterable[str], profile: HostProfile) -> str | None:
    """PEP 825's variant ordering over the labels that surely fit; None if none does.

    Namespaces rank as the metadata says; features and values as the providers rank
    them (the nearest CUDA bound, the host's own GPU before older SASS, SASS before PTX,
    the highest CPU level). Its GPU code must run on every GPU of the host, as the
    build families ask (`proxy.core.families`). ``null`` fits every host and ranks last.
    """
    keyed = []
    for label in set(labels):
        props = meta.properties(label)
        if props is None or label_fit(props, profile, every_gpu=True) is not True:
            continue
        keys = _sort_keys(props, meta.namespaces, profile)
        if keys is not None:
            keyed.append((keys, label))
    if not keyed:
        return None
    return min(keyed, key=functools.cmp_to_key(_compare))[1]


def supported_properties(properties: Properties, profile: HostProfile) -> frozenset[str]:
    """``"ns :: feature :: value"`` of these properties this host surely supports: what a
    variant-aware installer evaluates the wheel's variant markers with (PEP 825)."""
    return frozenset(
        f"{ns} :: {feature} :: {value}"
        for ns, features in properties.items()
        for feature, values in features.items()
        for value in values
        if _value_fit(ns, feature, value, profile) is True
    )


def unfit_reason(label: str, properties: Properties, profile: HostProfile) -> Reason | None:
    """Why a variant wheel of this label cannot work on this host (kind ``variant``), or
    None when it may."""
    if label_fit(properties, profile) is not False:
        return None
    needs = describe_unfit(properties, profile)
    host = profile.to_string(("arch", "cuda", "isa", "sm"))
    return Reason("variant", f"variant {label}: needs {needs}; host has {host}")


def describe_unfit(properties: Properties, profile: HostProfile) -> str:
    """The features this host fails, for explain: ``nvidia :: sm_arch :: 90_real``."""
    failed = [
        f"{ns} :: {feature} :: {' | '.join(values)}"
        for ns, features in properties.items()
        for feature, values in features.items()
        if _feature_fit(ns, feature, values, profile) is False
    ]
    return "; ".join(failed)


Keyed = tuple[list[tuple[int, int, Rank]], str]


def _compare(a: Keyed, b: Keyed) -> int:
    (keys_a, label_a), (keys_b, label_b) = a, b
    for x, y in zip(keys_a, keys_b, strict=False):
        if x != y:
            return -1 if x < y else 1
    if len(keys_a) != len(keys_b):
        return -1 if len(keys_a) > len(keys_b) else 1  # more properties ranks first
    return -1 if label_a < label_b else 1 if label_a > label_b else 0


def _sort_keys(
    props: Properties, namespaces: tuple[str, ...], profile: HostProfile
) -> list[tuple[int, int, Rank]] | None:
    keys = []
    for ns, features in props.items():
        order = FEATURE_ORDER.get(ns)
        if ns not in namespaces or order is None:
            return None
        for feature, values in features.items():
            if feature not in order:
                return None
            fitting = [v for v in values if _value_fit(ns, feature, v, profile)]
            if not fitting:
                return None
            ranks = [_value_rank(ns, feature, v) for v in fitting]
            keys.append((namespaces.index(ns), order.index(feature), min(ranks)))
    return sorted(keys)


# One property ----------------------------------------------------------------


def _feature_fit(
    ns: str, feature: str, values: Iterable[str], profile: HostProfile, every_gpu: bool = False
) -> Fit:
    if every_gpu and ns == NVIDIA and feature == SM_ARCH and profile.sms is not None:
        if profile.cuda is None:
            return None
        if profile.cuda.value is None:
            return False
        runs = [_sm_runs(v) for v in values]
        per_gpu = [
            True if any(r(gpu) for r in runs if r is not None) else None if None in runs else False
            for gpu in profile.sms.value
        ]
        return False if False in per_gpu else None if None in per_gpu else True
    fits = [_value_fit(ns, feature, v, profile) for v in values]
    if True in fits:
        return True
    return None if None in fits else False


def _value_fit(ns: str, feature: str, value: str, profile: HostProfile) -> Fit:
    if ns == NVIDIA:
        return _nvidia_fit(feature, value, profile)
    if ns == X86_64 and feature == LEVEL:
        return _level_fit(value, profile)
    return None


def _nvidia_fit(feature: str, value: str, profile: HostProfile) -> Fit:
    if feature not in (LOWER, UPPER, SM_ARCH):
        return None
    if profile.cuda is None:
        return None
    if profile.cuda.value is None:
        # No NVIDIA driver: nothing of this namespace works. A project fact that its
        # CUDA builds run on the CPU (`runs_without_driver`) does not change this: on
        # such a host the NVIDIA provider reports nothing, so installers that read
        # variants would not take these either; the project's CPU variant is the one.
        return False
    if feature == SM_ARCH:
        runs = _sm_runs(value)
        if runs is None or profile.sms is None:
            return None
        return any(runs(gpu) for gpu in profile.sms.value)
    bound = _cuda_bound(value)
    if bound is None:
        return None
    host = profile.cuda.value
    return host >= bound if feature == LOWER else host < bound


def _level_fit(value: str, profile: HostProfile) -> Fit:
    m = _LEVEL.fullmatch(value)
    if m is None:
        return None
    if profile.arch is not None and profile.arch.value != X86_64:
        return False
    if profile.isa is None:
        return None
    return int(m[1]) <= profile.isa.value


def _cuda_bound(value: str) -> tuple[int, int] | None:
    m = _CUDA.fullmatch(value)
    return (int(m[1]), int(m[2] or 0)) if m else None


def _sm_runs(value: str) -> Runs | None:
    m = _SM.fullmatch(value)
    if m is None:
        return None
    target = f"{int(m[1])}.{m[2]}"
    if m[4] == "real":
        return sass_target(target + m[3])
    return ptx_target(target) if not m[3] else None


def _value_rank(ns: str, feature: str, value: str) -> Rank:
    if feature in (LOWER, UPPER):
        m = _CUDA.fullmatch(value)
        assert m is not None  # only values that fit are ranked
        # The providers' order: 12.8, ..., 12.0, then the bare 12.
        return (-int(m[1]), 1 if m[2] is None else 0, -int(m[2] or 0))
    if feature == SM_ARCH:
        m = _SM.fullmatch(value)
        assert m is not None
        return (0 if m[4] == "real" else 1, -int(m[1]), -int(m[2]), 1 if m[3] else 0)
    m = _LEVEL.fullmatch(value)
    assert m is not None and ns == X86_64
    return (-int(m[1]),)


# The host's properties as providers state them ------------------------------


def static_properties(profile: HostProfile) -> dict[str, dict[str, Any]]:
    """PEP 850 provider entries (``static-properties`` with ``feature-order``) stating
    what nvidia-variant-provider 0.0.1 and x86_64-variant-provider 0.2.1 would detect
    on this host; a namespace the profile cannot speak for is left out."""
    out: dict[str, dict[str, Any]] = {}
    nvidia = _nvidia_static(profile)
    if nvidia:
        out[NVIDIA] = {"static-properties": nvidia, "feature-order": list(nvidia)}
    arch = profile.arch.value if profile.arch is not None else None
    if profile.isa is not None and arch in (None, X86_64):
        levels = [f"v{level}" for level in range(profile.isa.value, 0, -1)]
        out[X86_64] = {"static-properties": {LEVEL: levels}, "feature-order": [LEVEL]}
    return out


def _nvidia_static(profile: HostProfile) -> dict[str, list[str]]:
    if profile.cuda is None or profile.cuda.value is None:
        return {}
    major, minor = host = profile.cuda.value
    (low_major, _), top = CUDA_RANGE
    if not CUDA_RANGE[0] <= host <= top:
        return {}

    def series(m: int, highest: int) -> list[str]:
        return [f"{m}.{n}" for n in range(highest, -1, -1)] + [str(m)]

    lower = series(major, minor)
    for m in range(major - 1, low_major - 1, -1):
        lower += series(m, top[1])
    upper = [v for m in range(top[0], major, -1) for v in series(m, top[1])]
    upper += [f"{major}.{n}" for n in range(top[1], minor, -1)]
    found: dict[str, list[str]] = {LOWER: lower}
    if upper:
        found[UPPER] = upper
    if profile.sms is not None and profile.sms.value:
        sm_major, sm_minor = max(profile.sms.value)
        if (sm_major, sm_minor) >= MIN_SM:
            real = [f"{sm_major}{n}_real" for n in range(sm_minor, -1, -1)]
            found[SM_ARCH] = [*real, f"{sm_major}0_virtual"]
    return found
