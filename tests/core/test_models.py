"""`File.lists_metadata` answers as ``bool(core_metadata)`` for every shape upstream sends."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.core.models import File

SHAPES: list[Any] = [None, False, True, "", "true", 0, 1, {}, {"sha256": "ab"}, [], ["x"]]


@pytest.mark.parametrize("core", SHAPES)
@pytest.mark.parametrize("dist_info", SHAPES)
def test_lists_metadata_is_the_truth_of_core_metadata(core: Any, dist_info: Any) -> None:
    extra = {
        key: value
        for key, value in (("core-metadata", core), ("dist-info-metadata", dist_info))
        if value is not None
    }
    file = File("a-1-py3-none-any.whl", "https://example.invalid/a.whl", {}, extra)
    assert file.lists_metadata is bool(file.core_metadata)
