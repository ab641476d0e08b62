"""CUDA's binary compatibility rules, as a table."""

from __future__ import annotations

import pytest

from proxy.core.gpu import describe, runs_on, target_order


@pytest.mark.parametrize(
    ("sass", "ptx", "gpu", "runs"),
    [
        (("6.0",), (), (6, 1), True),  # same major, older minor
        (("6.1",), (), (6, 0), False),  # newer minor
        (("7.5",), (), (6, 1), False),
        (("8.0",), (), (9, 0), False),  # never across majors
        (("9.0a",), (), (9, 0), True),
        (("9.0a",), (), (9, 1), False),  # architecture-specific
        (("9.0a",), (), (10, 0), False),  # not on a later major either
        (("10.0a",), (), (10, 3), False),
        (("10.0f",), (), (10, 3), True),  # family-specific
        (("10.0f",), (), (10, 0), True),
        (("10.3f",), (), (10, 0), False),  # not on an older minor
        (("10.0f",), (), (11, 0), False),  # nor on another major
        (("12.0f",), (), (12, 1), True),
        ((), ("9.0a",), (9, 0), True),  # architecture-specific PTX: that GPU only
        ((), ("9.0a",), (10, 0), False),
        ((), ("9.0a",), (9, 1), False),
        ((), ("10.0f",), (10, 3), True),  # family-specific PTX: that family only
        ((), ("10.0f",), (12, 0), False),
        (("9.0a",), ("9.0a",), (10, 0), False),
        (("9.0a",), ("9.0",), (10, 0), True),  # plain PTX still JIT-compiles forwards
        (("9.0b",), (), (9, 0), None),  # a letter we do not know: it might be the one
        ((), ("8.0",), (12, 0), True),  # PTX is JIT-compiled forwards
        ((), ("9.0",), (8, 9), False),
        (("7.5",), ("7.5",), (6, 1), False),
        (("sm_61",), (), (6, 1), None),  # unreadable: it might be the one
        (("sm_61", "6.0"), (), (6, 1), True),
        ((), ("compute_90",), (8, 0), None),
        ((), (), (8, 0), False),
    ],
)
def test_runs_on(
    sass: tuple[str, ...], ptx: tuple[str, ...], gpu: tuple[int, int], runs: bool | None
) -> None:
    assert runs_on(sass, ptx, gpu) is runs


def test_describe() -> None:
    assert describe(("7.5", "8.0"), ("9.0",)) == "SASS 7.5, 8.0; PTX 9.0"
    assert describe((), ()) == "no GPU code"


def test_target_order() -> None:
    targets = ["sm_90", "10.0f", "9.0a", "12.0", "9.0", "10.0a", "8.6"]
    assert sorted(targets, key=target_order) == [
        "8.6",
        "9.0",
        "9.0a",
        "10.0a",
        "10.0f",
        "12.0",
        "sm_90",
    ]
