"""Whether a dataclass instance holds what its annotations say, field by field.

For values read back from a store: what another version or a fault wrote can be
anything, and a wrong type would fail only later, where the value is used. The checks
are made once per class from its annotations; values are taken as JSON gives them (a
bool is no int here, a tuple is a tuple).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal


def holds_types(obj: Any) -> bool:
    return all(holds(getattr(obj, name)) for name, holds in _checks(type(obj)))


Check = Callable[[Any], bool]
_CHECKS: dict[type, tuple[tuple[str, Check], ...]] = {}


def _checks(cls: type) -> tuple[tuple[str, Check], ...]:
    """Each field's check, made once from the class's annotations (a big report has
    hundreds of ELF files: a check per value, not a walk of its type each time)."""
    found = _CHECKS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _CHECKS[cls] = tuple((name, _check(hint)) for name, hint in hints.items())
    return found


def _check(hint: Any) -> Check:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return lambda value: True
    if origin is Literal:
        return lambda value: any(value == arg and type(value) is type(arg) for arg in args)
    if origin is typing.Union or origin is types.UnionType:
        each = tuple(_check(h) for h in args)
        return lambda value: any(check(value) for check in each)
    if hint is type(None):
        return lambda value: value is None
    if origin is tuple:
        item = _check(args[0])
        return lambda value: value.__class__ is tuple and all(map(item, value))
    if origin is Mapping or origin is dict:
        key, item = _check(args[0]), _check(args[1])
        return lambda value: (
            isinstance(value, Mapping) and all(key(k) and item(v) for k, v in value.items())
        )
    if hint in (str, int, bool, float):  # as JSON gives them: a bool is no int here
        return lambda value: value.__class__ is hint
    return lambda value: isinstance(value, hint)
