"""Which GPUs run a binary's GPU code: CUDA's binary compatibility rules, in one place.

A fat binary carries SASS (machine code for one GPU architecture) and PTX (virtual
code the driver JIT-compiles). Targets are written as the reports hold them:
``"8.6"`` for sm_86, ``"9.0a"`` for sm_90a, ``"10.0f"`` for sm_100f.

- SASS ``X.Y`` runs on X.z for z >= Y, never on another major.
- SASS ``X.Ya`` is architecture-specific: that GPU only (sm_90a runs on 9.0 alone).
- SASS ``X.Yf`` is family-specific: the same major from X.Y on (sm_100f on 10.0 and
  10.3, not on 11.0 or 12.0).
- PTX ``X.Y`` is JIT-compiled for any GPU from X.Y on, by a driver at least as new as
  the toolkit that wrote it (the caller's to check: this module knows GPUs, not drivers).
  PTX ``X.Ya`` and ``X.Yf`` use features only that GPU or that family has: the driver
  JIT-compiles them for the GPUs their SASS would run on, and no others.
  A build run under minor version compatibility (`proxy.core.cuda`) has no usable PTX:
  its callers pass none.

A target that cannot be read answers None: it might be the one a GPU runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from proxy.core.dotted import dotted

Gpu = tuple[int, int]
Runs = Callable[[Gpu], bool]

_TARGET = re.compile(r"(\d+)\.(\d+)([af]?)")


def sass_target(text: str) -> Runs | None:
    m = _TARGET.fullmatch(text)
    if m is None:
        return None
    target = (int(m[1]), int(m[2]))
    if m[3] == "a":
        return lambda gpu: gpu == target
    return lambda gpu: gpu[0] == target[0] and gpu[1] >= target[1]


def ptx_target(text: str) -> Runs | None:
    m = _TARGET.fullmatch(text)
    if m is None:
        return None
    if m[3]:
        return sass_target(text)
    target = (int(m[1]), int(m[2]))
    return lambda gpu: gpu >= target


def target_order(text: str) -> tuple[int, int, int, str]:
    """A sort key: ``"9.0" < "9.0a" < "10.0f"``; what cannot be read sorts last."""
    m = _TARGET.fullmatch(text)
    return (0, int(m[1]), int(m[2]), m[3]) if m else (1, 0, 0, text)


def runs_on(sass: Sequence[str], ptx: Sequence[str], gpu: Gpu) -> bool | None:
    """Whether some of this code runs on ``gpu``; None where a target cannot be read and
    none of the readable ones runs there."""
    targets = [sass_target(t) for t in sass] + [ptx_target(t) for t in ptx]
    if any(run(gpu) for run in targets if run is not None):
        return True
    return None if any(run is None for run in targets) else False


def describe(sass: Sequence[str], ptx: Sequence[str]) -> str:
    """``"SASS 7.5, 8.0; PTX 9.0"``, for people."""
    parts = []
    if sass:
        parts.append("SASS " + ", ".join(sass))
    if ptx:
        parts.append("PTX " + ", ".join(ptx))
    return "; ".join(parts) or "no GPU code"


def gpus_text(gpus: Sequence[Gpu]) -> str:
    return ", ".join(dotted(g) for g in gpus)
