"""The variants layer groups a page's variant wheels after a cheap look at each name (its
dash count): it must find exactly the wheels `variant_version` reads a version from."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from packaging.utils import NormalizedName

from proxy.core.models import File, Page
from proxy.core.variants import variant_version
from proxy.edge.layers.variants import _groups

PARTS = ["demo", "1.0", "2", "1b", "cp311", "py3", "none", "any", "x86_64", "cu12", "0a1b2c3d"]
names = st.builds(
    lambda parts, end: "-".join(parts) + end,
    st.lists(st.sampled_from(PARTS), min_size=1, max_size=9),
    st.sampled_from([".whl", ".tar.gz", "-variants.json", ""]),
)


@given(st.lists(names, max_size=12))
@example(["demo-1.0-py3-none-any-cu12.whl", "demo-1.0-2-py3-none-any-cu12.whl"])
@example(["demo-1.0-py3-none-any.whl", "demo-1.0-1b-py3-none-any.whl"])
def test_the_variant_wheels_grouped_are_those_with_a_variant_version(filenames: list[str]) -> None:
    page = Page(
        name=NormalizedName("demo"),
        files=tuple(File(name, f"https://files.test/{i}", {}) for i, name in enumerate(filenames)),
    )
    expected: dict[object, list[File]] = {}
    for f in page.files:
        version = variant_version(f.filename) if f.is_wheel else None
        if version is not None:
            expected.setdefault(version, []).append(f)
    groups = _groups(page)
    assert {v: list(g.wheels) for v, g in groups.items()} == expected
