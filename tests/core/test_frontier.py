"""The frontier walk and pip's choice, as tables over small pages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from packaging.version import Version

from proxy.core.decide import Reason, Verdict
from proxy.core.frontier import needs_report, pip_choice, walk
from proxy.core.models import File
from proxy.core.profile import parse_profile
from proxy.core.tags import client_tags

HOST = parse_profile("python=3.11,impl=cp,arch=x86_64,libc=glibc-2.17", "url")
LINUX = "cp311-cp311-manylinux_2_17_x86_64"


def wheel(version: str, tag: str = LINUX, **extra: object) -> File:
    name = f"pkg-{version}-{tag}.whl"
    return File(name, name, {"sha256": f"{version}{tag}".ljust(64, "0")}, dict(extra))


def sdist(version: str) -> File:
    return File(f"pkg-{version}.tar.gz", "x", {"sha256": "f" * 64})


@dataclass(frozen=True)
class Row:
    id: str
    versions: tuple[str, ...]  # newest last, one Linux wheel each
    unfit: tuple[str, ...] = ()  # reported, and hidden
    reported: tuple[str, ...] = ()  # reported, and kept
    keep: int = 3
    wanted: tuple[str, ...] = ()
    offered: str | None = None
    verified: tuple[str, ...] = ()


TEN = tuple(f"1.{n}" for n in range(10))
ROWS = [
    Row("cold: newest four wanted", TEN, wanted=("1.9", "1.8", "1.7", "1.6")),
    Row(
        "hidden versions pass the walk down",
        TEN,
        unfit=("1.9", "1.8", "1.7", "1.6", "1.5", "1.4"),
        wanted=("1.3", "1.2", "1.1", "1.0"),
    ),
    Row(
        "settled on the newest fitting version",
        TEN,
        unfit=("1.9", "1.8", "1.7", "1.6", "1.5", "1.4"),
        reported=("1.3", "1.2", "1.1", "1.0"),
        offered="1.3",
        verified=("1.3", "1.2", "1.1", "1.0"),
    ),
    Row(
        "a pending version above holds back the offer",
        TEN,
        reported=("1.8", "1.7", "1.6"),
        wanted=("1.9",),
        verified=("1.8", "1.7", "1.6"),
    ),
    Row("keep 0: only the newest", TEN, keep=0, wanted=("1.9",)),
    Row(
        "everything unfit: settled, nothing offered",
        ("1.0", "1.1"),
        unfit=("1.0", "1.1"),
    ),
    Row("pre-releases are not walked", ("1.0", "2.0rc1"), wanted=("1.0",)),
    Row("only pre-releases are walked", ("2.0a1", "2.0rc1"), wanted=("2.0rc1", "2.0a1")),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_walk(row: Row) -> None:
    files = [wheel(v) for v in row.versions]
    verdicts = {
        f.filename: Verdict((Reason("glibc", "no"),) if v in row.unfit else ())
        for f, v in zip(files, row.versions, strict=True)
    }
    unreported = {
        f.filename
        for f, v in zip(files, row.versions, strict=True)
        if v not in row.unfit + row.reported
    }
    frontier = walk(files, verdicts, unreported, HOST, row.keep)
    assert [str(w.filename.split("-")[1]) for w in frontier.wanted] == list(row.wanted)
    assert frontier.offered == (Version(row.offered) if row.offered else None)
    assert [str(v) for v in frontier.verified] == list(row.verified)
    assert frontier.settled == (not row.wanted)


def test_yanked_and_python_mismatch_are_not_walked() -> None:
    files = [
        wheel("1.0"),
        wheel("1.1", **{"requires-python": ">=3.12"}),
        wheel("1.2", yanked="broken"),
    ]
    verdicts = {f.filename: Verdict() for f in files}
    frontier = walk(files, verdicts, {f.filename for f in files}, HOST, keep=0)
    assert [f.filename for f in frontier.wanted] == [files[0].filename]


def test_needs_report_takes_pure_wheels_only_beside_linux_wheels() -> None:
    beside = wheel("2.0", "py3-none-any")
    alone = wheel("1.0", "py3-none-any")
    files = [wheel("2.0"), beside, alone, wheel("2.0", "cp311-cp311-win_amd64"), sdist("2.0")]
    assert needs_report(files) == [files[0], beside]


def test_pip_choice_takes_the_best_tag_of_the_newest_kept_version() -> None:
    files = [
        wheel("2.0", "py3-none-any"),
        wheel("2.0"),
        wheel("2.0", "cp311-cp311-manylinux_2_28_x86_64"),
        wheel("1.0"),
        sdist("3.0"),
    ]
    verdicts = {f.filename: Verdict() for f in files}
    verdicts[files[2].filename] = Verdict((Reason("tags", "no"),))
    verdicts[files[4].filename] = Verdict((Reason("sdist", "no"),))
    assert pip_choice(files, verdicts, HOST, client_tags(HOST)) == files[1]
    hidden = {f.filename: Verdict((Reason("glibc", "no"),)) for f in files}
    assert pip_choice(files, hidden, HOST, client_tags(HOST)) is None


def test_a_pre_release_is_walked_to_and_chosen_where_every_final_is_hidden() -> None:
    """pip takes a pre-release where the page it gets has no final release: where every
    file of 2.0 is hidden for this host, the walk reads 2.1rc1 (the page was called
    settled with it unread) and pip's choice is it. Where 2.0 keeps a file, it is not."""
    final, rc = wheel("2.0"), wheel("2.1rc1")
    files = [final, sdist("2.0"), rc]
    hidden = Verdict((Reason("glibc", "glibc: needs 2.34, host has 2.17"),))
    verdicts = {final.filename: hidden, files[1].filename: hidden, rc.filename: Verdict()}
    frontier = walk(files, verdicts, {rc.filename}, HOST)
    assert frontier.wanted == (rc,) and not frontier.settled
    assert pip_choice(files, verdicts, HOST, client_tags(HOST)) == rc
    verdicts[files[1].filename] = Verdict()  # 2.0's sdist on the page: pip takes it
    frontier = walk(files, verdicts, {rc.filename}, HOST)
    assert frontier.wanted == () and frontier.settled
    assert pip_choice(files, verdicts, HOST, client_tags(HOST)) == files[1]
