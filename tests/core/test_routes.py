"""Routes: which upstreams answer for a project."""

from __future__ import annotations

import pytest
from packaging.utils import canonicalize_name

from proxy.core.routes import Owner, Routes, RouteSpec, normalize_pattern
from proxy.errors import ConfigError

TORCH = ("torch", "torchvision", "Torch_Audio", "nvidia-*", "triton")
ROUTES = Routes(
    [
        RouteSpec(TORCH, "torch"),  # 0: cu128
        RouteSpec(("corp-*",)),  # 1: private index
        RouteSpec(),  # 2: default
        RouteSpec(TORCH[:2], "torch"),  # 3: cpu, fewer projects
        RouteSpec(),  # 4: second default
    ]
)


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("torch", Owner((0, 3), "torch", "torch")),
        ("TORCH", Owner((0, 3), "torch", "torch")),
        ("torch.audio", Owner((0,), "Torch_Audio", "torch")),  # the cpu index does not have it
        ("nvidia-cudnn-cu12", Owner((0,), "nvidia-*", "torch")),
        ("nvidia_cublas_cu12", Owner((0,), "nvidia-*", "torch")),
        ("corp-tools", Owner((1,), "corp-*", None)),
        ("corp_tools", Owner((1,), "corp-*", None)),
        ("numpy", None),
        ("torchtext", None),
        ("corp", None),
    ],
)
def test_owner(name: str, owner: Owner | None) -> None:
    assert ROUTES.owner(canonicalize_name(name)) == owner


def test_unrouted_upstreams_serve_the_rest() -> None:
    assert ROUTES.unrouted == (2, 4)
    assert ROUTES.routed
    assert not Routes([RouteSpec(), RouteSpec()]).routed


@pytest.mark.parametrize(
    ("position", "listed", "shown"),
    [
        (0, "torch", True),
        (0, "numpy", False),  # a CUDA index's numpy is not served from there
        (2, "numpy", True),
        (2, "Torch", False),  # nor the default index's torch
        (3, "torch", True),
        (1, "corp-tools", True),
        (2, "corp-tools", False),
        (4, "requests", True),
    ],
)
def test_root_listing(position: int, listed: str, shown: bool) -> None:
    assert ROUTES.lists(position, listed) is shown


def test_first_upstream_that_matches_owns_the_project() -> None:
    routes = Routes([RouteSpec(("torch*",)), RouteSpec(("torch",)), RouteSpec()])
    assert routes.owner(canonicalize_name("torch")) == Owner((0,), "torch*", None)


@pytest.mark.parametrize("pattern", ["", "torch/x", "torch vision", "a,b", "../x"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match="project pattern"):
        normalize_pattern(pattern)


def test_normalized_patterns() -> None:
    assert normalize_pattern("Torch_*") == "torch-*"
    assert normalize_pattern("nvidia-cu[0-9][0-9]") == "nvidia-cu[0-9][0-9]"


def test_family_member_needs_projects() -> None:
    with pytest.raises(ConfigError, match="family 'torch'"):
        Routes([RouteSpec(("torch",), "torch"), RouteSpec((), "torch")])
