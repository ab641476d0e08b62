"""`File.lists_metadata` answers as ``bool(core_metadata)`` for every shape upstream sends."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.models import File, new_file

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


@given(
    st.text(),
    st.text(),
    st.dictionaries(st.text(), st.text(), max_size=2),
    st.dictionaries(st.text(), st.integers() | st.text() | st.none(), max_size=3),
)
def test_new_file_is_the_file_the_constructor_makes(
    filename: str, url: str, hashes: dict[str, str], extra: dict[str, Any]
) -> None:
    made, built = new_file(filename, url, hashes, extra), File(filename, url, hashes, extra)
    assert made == built and type(made) is File
    assert [getattr(made, f.name) for f in fields(File)] == [filename, url, hashes, extra]
    with pytest.raises(FrozenInstanceError):
        made.url = "elsewhere"  # type: ignore[misc]
