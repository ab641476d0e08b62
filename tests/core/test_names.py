import pytest

from proxy.core.names import normalize_project
from proxy.errors import NotFound


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("demo", "demo"),
        ("Demo", "demo"),
        ("Demo_Pkg", "demo-pkg"),
        ("demo.pkg", "demo-pkg"),
        ("demo--_.pkg", "demo-pkg"),
        ("A1", "a1"),
        ("zope.interface", "zope-interface"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_project(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "-demo", "demo-", ".demo", "de mo", "démo", "../etc", "a/b", "x" * 201, "_"]
)
def test_invalid(raw: str) -> None:
    with pytest.raises(NotFound):
        normalize_project(raw)
