"""Page-level choices (`proxy.core.select`): the sdists of versions no wheel of which fits."""

from __future__ import annotations

import pytest

from proxy.core.decide import decide
from proxy.core.frontier import pip_choice
from proxy.core.models import File
from proxy.core.profile import parse_profile
from proxy.core.report import Report, Requires
from proxy.core.select import select
from proxy.core.tags import client_tags


def _files(names: list[str]) -> list[File]:
    return [
        File(n, f"https://files.test/{n}", {"sha256": f"{i:064x}"}) for i, n in enumerate(names)
    ]


def _served(names: list[str], profile_text: str) -> tuple[set[str], str | None]:
    profile = parse_profile(profile_text, "url")
    files = _files(names)
    verdicts = select(files, {f.filename: decide(f, None, profile) for f in files}, profile)
    choice = pip_choice(files, verdicts, profile, client_tags(profile))
    return {n for n in names if verdicts[n].keep}, choice.filename if choice else None


def test_an_old_host_takes_the_older_wheel_rather_than_build_the_newest() -> None:
    names = [
        "lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "lib-1.0.tar.gz",
        "lib-2.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "lib-2.0.tar.gz",
    ]
    served, choice = _served(names, "python=3.11,impl=cp,arch=x86_64,libc=glibc-2.17")
    assert served == {names[0], names[1]}
    assert choice == names[0]


@pytest.mark.parametrize("ancient", [True, False])
def test_a_python_no_wheel_fits_yet_builds_the_newest_not_an_ancient_release(
    ancient: bool,
) -> None:
    """No version has a wheel for Python 3.14: hiding every sdist beside them left pip
    an ancient sdist-only release (or nothing), where it would have built the newest."""
    names = ["lib-0.1.tar.gz"] if ancient else []
    for version in ("1.0", "2.0"):
        names += [
            f"lib-{version}-cp312-cp312-manylinux_2_17_x86_64.whl",
            f"lib-{version}-cp313-cp313-manylinux_2_17_x86_64.whl",
            f"lib-{version}.tar.gz",
        ]
    served, choice = _served(names, "python=3.14,impl=cp,arch=x86_64,libc=glibc-2.39")
    assert served == {n for n in names if n.endswith(".tar.gz")}
    assert choice == "lib-2.0.tar.gz"


@pytest.mark.parametrize(
    "fallback",
    [
        {"yanked": True},  # pip never takes a yanked file for an unpinned requirement
        {"requires-python": "<3"},  # nor one whose Requires-Python excludes the host
    ],
)
def test_a_fallback_pip_would_not_take_hides_no_sdist(fallback: dict[str, object]) -> None:
    """An old pure wheel fits by its tags but pip passes it by: counted as the older
    version to fall back to, it hid the newest sdists again, and pip had nothing."""
    names = ["lib-0.1-py3-none-any.whl", "lib-2.0-cp313-cp313-manylinux_2_17_x86_64.whl"]
    files = [
        File(names[0], "https://files.test/a", {"sha256": "a" * 64}, fallback),
        File(names[1], "https://files.test/b", {"sha256": "b" * 64}),
        File("lib-2.0.tar.gz", "https://files.test/c", {"sha256": "c" * 64}),
    ]
    profile = parse_profile("python=3.14,impl=cp,arch=x86_64,libc=glibc-2.39", "url")
    verdicts = select(files, {f.filename: decide(f, None, profile) for f in files}, profile)
    assert verdicts["lib-2.0.tar.gz"].keep
    choice = pip_choice(files, verdicts, profile, client_tags(profile))
    assert choice is not None and choice.filename == "lib-2.0.tar.gz"


@pytest.mark.parametrize("libc", ["", ",libc=glibc-2.35"])
def test_a_wheel_hidden_on_the_libc_its_tags_imply_orphans_no_sdist(libc: str) -> None:
    """pip on Alpine tells no libc: a manylinux wheel with an executable an import loads is
    hidden from it on glibc's account (only glibc installs that wheel), which says nothing
    of whether a wheel of its version fits this host; its sdist stays. A host that told
    glibc has no wheel of 2.0 that fits, and takes 1.0's."""
    names = [
        "lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "lib-1.0.tar.gz",
        "lib-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "lib-2.0.tar.gz",
    ]
    profile = parse_profile(f"python=3.11,impl=cp,arch=x86_64{libc}", "url")
    files = _files(names)
    broken = Report(names[2], "0" * 64, requires=Requires(executables=("lib/_ext.so",)))
    reports = {names[2]: broken}
    verdicts = {f.filename: decide(f, reports.get(f.filename), profile) for f in files}
    assert not verdicts[names[2]].keep
    assert [r.assumed for r in verdicts[names[2]].reasons] == [not libc]
    served = {n for n, v in select(files, verdicts, profile).items() if v.keep}
    if libc:
        assert served == {names[0], names[1]}
    else:
        assert served == {names[0], names[1], names[3]}
