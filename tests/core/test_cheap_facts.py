"""Facts from core metadata: which Requires-Dist entries name a CUDA major."""

from __future__ import annotations

import pytest

from proxy.core.cheap_facts import cheap_requires

WHEEL = "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"


def metadata(*requires: str) -> bytes:
    lines = ["Metadata-Version: 2.1", "Name: pkg", "Version: 1.0"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("requires", "major"),
    [
        (("nvidia-cuda-runtime-cu12==12.4.127",), 12),
        (("numpy", "nvidia-cudnn-cu11>=8"), 11),
        (('nvidia-cublas-cu12; platform_system == "Linux" and platform_machine == "x86_64"',), 12),
        (('nvidia-cublas-cu12; platform_machine == "aarch64"',), None),  # not this wheel's machine
        (('nvidia-cublas-cu12; extra == "cuda"',), None),  # optional
        (('nvidia-cublas-cu12; python_version < "3.9"',), None),  # unknown here: never hides
        (("numpy", "nvidia-ml-py"), None),
        ((), None),
    ],
)
def test_cuda_major_from_requires_dist(requires: tuple[str, ...], major: int | None) -> None:
    found = cheap_requires(metadata(*requires), WHEEL)
    if major is None:
        assert found is None
    else:
        assert found is not None
        assert found[0].cuda_major == major
        assert found[1].startswith("Requires-Dist nvidia-")


def test_unreadable_metadata_says_nothing() -> None:
    assert cheap_requires(b"\xff\xfe not metadata", WHEEL) is None
    assert cheap_requires(metadata("not a requirement ((("), WHEEL) is None
