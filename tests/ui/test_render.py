"""The pure renderers: structure, statuses in words, escaping of every foreign string, speed."""

from __future__ import annotations

import argparse
import html
import time
from html.parser import HTMLParser
from typing import Any

import pytest
from packaging.utils import NormalizedName

from proxy.cli import explain as explain_command
from proxy.core.decide import Reason, Verdict
from proxy.core.explain import explanation, explanation_html
from proxy.core.frontier import Frontier
from proxy.core.models import File, Page
from proxy.core.profile import parse_profile
from proxy.core.report import ElfFile, NativeFile, Report, Requires
from proxy.ui.landing import (
    Affected,
    HostClass,
    Install,
    Landing,
    ReasonCount,
    UpstreamInfo,
    render_landing,
)
from proxy.ui.project import by_version, render_project, rows
from proxy.ui.wheel import Refusal, render_wheel

EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
PROFILE = "arch=x86_64,impl=cp,libc=glibc-2.17,python=3.11"
TAG = "cp311-cp311-manylinux_2_17_x86_64"


class Tags(HTMLParser):
    """Every start tag with its attributes; text as one string."""

    def __init__(self, body: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def joined(self) -> str:
        return "".join(self.text)


def assert_inert(body: str) -> Tags:
    parsed = Tags(body)
    assert parsed.named("script") == []
    assert parsed.named("img") == []
    assert not any(k.startswith("on") for _, attrs in parsed.tags for k in attrs)
    return parsed


def wheel(version: str, sha: str = "a", tag: str = TAG, **extra: object) -> File:
    name = f"demo-{version}-{tag}.whl"
    return File(name, f"https://files.test/{name}", {"sha256": sha * 64}, dict(extra))


def explained(files: list[File], verdicts: dict[str, Verdict], **kwargs: object) -> dict:  # type: ignore[type-arg]
    page = Page(NormalizedName("demo"), tuple(files))
    profile = parse_profile(PROFILE, "url")
    return explanation(page, verdicts, {}, profile, **kwargs)  # type: ignore[arg-type]


def test_project_view_newest_hidden_older_chosen() -> None:
    files = [wheel("1.9", "a"), wheel("1.10", "b"), wheel("1.8", "c"), wheel("1.7", "d")]
    glibc = Reason("glibc", "glibc: needs 2.34, host has 2.17")
    verdicts = {
        files[0].filename: Verdict((glibc,)),
        files[1].filename: Verdict((glibc,)),
        files[2].filename: Verdict(),
        files[3].filename: Verdict(),
    }
    frontier = Frontier((), (), (), None)
    data = explained(
        files,
        verdicts,
        frontier=frontier,
        choice=files[2],
        unreported=frozenset({files[3].filename}),
    )
    body = render_project("demo", profile=PROFILE, files=files, explained=data)
    parsed = assert_inert(body)
    text = parsed.joined
    # The answer first: version, file, verified.
    assert text.index("Version 1.8") < text.index("Versions, newest first")
    assert "\u2714 verified" in text
    # Newest first, by version, not by string (1.10 above 1.9).
    order = [text.index(f"{v} (") for v in ("1.10", "1.9", "1.8", "1.7")]
    assert order == sorted(order)
    # Statuses in words, each with its glyph.
    assert text.count("\u2718 hidden") == 2
    assert text.count("\u2714 kept") == 1
    assert text.count("\u2026 not verified yet") == 1
    assert "glibc: needs 2.34, host has 2.17" in text
    # The chosen version is open and marked.
    details = {d.get("id"): d for d in parsed.named("details")}
    assert "open" in details["v-1.8"]
    assert "a plain install takes this" in text
    # The form edits the profile in place; the JSON link carries it.
    form = parsed.named("form")[0]
    assert form["action"] == "/ui/project/demo/" and form["method"] == "get"
    inputs = {i["name"]: i for i in parsed.named("input") if i.get("type") == "text"}
    assert inputs["profile"]["value"] == PROFILE
    labels = [label["for"] for label in parsed.named("label")]
    assert {"profile", "hidden-show", "hidden-hide"} <= set(labels)
    links = [a["href"] for a in parsed.named("a")]
    assert any(h and h.startswith("/explain/demo/?profile=") and "format=json" in h for h in links)
    # Tables have header cells with a scope.
    assert all(th.get("scope") in ("col", "row") for th in parsed.named("th"))


def test_hidden_files_can_be_left_out() -> None:
    files = [wheel("2.0", "a"), wheel("1.0", "b")]
    verdicts = {
        files[0].filename: Verdict((Reason("glibc", "glibc: x"),)),
        files[1].filename: Verdict(),
    }
    data = explained(files, verdicts, choice=files[1])
    body = render_project("demo", profile=PROFILE, files=files, explained=data, show_hidden=False)
    text = Tags(body).joined
    assert "\u2718 hidden" not in text
    assert "Every file of this version is hidden from this host." in text
    assert files[1].filename in text and files[0].filename not in text
    checked = [i for i in Tags(body).named("input") if "checked" in i]
    assert [i["value"] for i in checked] == ["hide"]


def test_a_build_kept_by_a_fact_says_so_in_every_view() -> None:
    """The verdict's notes (a ``runs_without_driver`` fact keeping a CUDA build on a host
    without a driver) reach the explanation's data, its HTML and the project view, in
    place of "fits"."""
    files = [wheel("2.0", "a")]
    note = "cuda: needs CUDA 12, host has no NVIDIA driver: kept, rule r: fact[0] says so"
    data = explained(files, {files[0].filename: Verdict((), frozenset(), (note,))})
    assert data["files"][0]["notes"] == [note] and data["files"][0]["status"] == "kept"
    page = explanation_html(data)
    assert note in html.unescape(page) and "fits this host" not in page
    body = render_project("demo", profile=PROFILE, files=files, explained=data)
    text = assert_inert(body).joined
    assert note in text and "Fits this host by its tags" not in text


def test_every_upstream_string_is_escaped() -> None:
    odd = File(f"demo-0.1{EVIL}.tar.gz", "https://files.test/x", {"sha256": "e" * 64})
    yanked = wheel("1.0", "f", tag="py3-none-any", yanked=EVIL, **{"requires-python": EVIL})
    verdicts = {
        odd.filename: Verdict((Reason("rule", f"rule: {EVIL}"),)),
        yanked.filename: Verdict(),
    }
    notes = {
        yanked.filename: {"served_as": EVIL, "status": "done", "change": EVIL, "rules": [EVIL]}
    }
    data = explained([odd, yanked], verdicts, rewrites=notes)
    body = render_project("demo", profile=PROFILE, files=[odd, yanked], explained=data)
    text = assert_inert(body).joined
    assert text.count(EVIL) >= 5  # filename, rule reason, yanked, Requires-Python, rewrite
    assert "other files" in text  # a name without a version is listed, not dropped


def test_without_a_profile_nothing_is_known() -> None:
    files = [wheel("1.0"), wheel("2.0", "b")]
    body = render_project("demo", profile="", files=files, explained=None)
    text = assert_inert(body).joined
    assert "Nothing is known about this host" in text
    assert text.index("2.0") < text.index("1.0 (")
    assert Tags(body).named("input")[0]["name"] == "profile"


def test_a_bad_profile_is_said_and_kept_editable() -> None:
    body = render_project("demo", profile=EVIL, files=[], explained=None, error=f"bad: {EVIL}")
    parsed = assert_inert(body)
    assert f"bad: {EVIL}" in parsed.joined
    assert parsed.named("input")[0]["value"] == EVIL
    assert parsed.named("p")[0].get("role") == "alert"


def test_versions_group_and_order() -> None:
    files = [wheel("1.0"), wheel("1.0rc1"), File("junk.zip", "u", {})]
    data = explained(files, {f.filename: Verdict() for f in files})
    groups = by_version(rows(files, data))
    assert [v for v, _ in groups] == ["1.0", "1.0rc1", "other files"]


def report(**changes: object) -> Report:
    elf = ElfFile(
        path=f"demo/{EVIL}.so",
        machine="x86_64",
        needed=("libc.so.6", "libstdc++.so.6"),
        version_needs={"libc.so.6": ("GLIBC_2.2.5", "GLIBC_2.34")},
        gpu_sms=("8.0", "9.0"),
        gpu_ptx=("9.0",),
    )
    values: dict[str, object] = {
        "filename": f"demo-1.0-{TAG}.whl",
        "sha256": "a" * 64,
        "elf_files": (elf,),
        "requires": Requires(libc="glibc", glibc="2.34", cuda_major=12, gpu_sms=("8.0", "9.0")),
        "bundled_libraries": ("libfoo.so.1",),
        "external_libraries": ("libc.so.6", "libstdc++.so.6"),
        "derived_platform_tag": "manylinux_2_34_x86_64",
        "overclaims": True,
        "native_files": (NativeFile(elf.path, "elf", "linux", "x86_64"),),
    }
    values.update(changes)
    return Report(**values)  # type: ignore[arg-type]


def test_wheel_view_reads_the_report() -> None:
    refused = [Refusal(PROFILE, ("glibc: needs 2.34, host has 2.17",))]
    body = render_wheel(report(), project="demo", refusals=refused)
    parsed = assert_inert(body)
    text = parsed.joined
    for expected in (
        f"demo/{EVIL}.so",
        "GLIBC_2.34",
        "libstdc++.so.6",
        "libfoo.so.1",
        "manylinux_2_34_x86_64",
        "manylinux_2_17_x86_64",
        "CUDA 12",
        "9.0",
        "not recorded",
        "glibc: needs 2.34, host has 2.17",
    ):
        assert expected in text, expected
    assert "yes: the wheel's own platform tag promises more" in text
    links = [a["href"] or "" for a in parsed.named("a")]
    assert any(h.startswith("/ui/project/demo/?profile=arch%3Dx86_64") for h in links)
    assert parsed.named("form")[0]["action"] == "/ui/project/demo/"


def test_wheel_view_of_an_unanalysable_wheel() -> None:
    bad = Report.unanalysable(f"demo-1.0-{TAG}.whl", "b" * 64, f"zip is broken {EVIL}")
    text = assert_inert(render_wheel(bad, project="demo")).joined
    assert f"unanalysable: zip is broken {EVIL}" in text
    assert "None: no ELF binary in this wheel." in text
    assert "No host class seen lately was refused this wheel." in text


def landing(**changes: object) -> Landing:
    base = "http://proxy.test:8080/"
    values: dict[str, object] = {
        "version": "0.1.0",
        "install": Install(
            index_url=f"{base}p/{PROFILE}/simple/",
            plain_url=f"{base}simple/",
            universal_url=f"{base}universal/simple/",
            pip_conf=f"[global]\nindex-url = {base}p/{PROFILE}/simple/\n",
            uv_toml=f'[[index]]\nurl = "{base}p/{PROFILE}/simple/"\ndefault = true\n',
            probe=f"hostfit probe --index-url {base}",
        ),
        "upstreams": (UpstreamInfo("https://***@index.test/simple/", ("torch*",), "pytorch"),),
        "rules_digest": "f" * 64,
        "rule_files": ("rules.toml",),
        "rule_counts": {"deny": 2, "pins": 0},
        "cache_dir": "/var/cache/hostfit",
        "cache_bytes": 3 * 1024**3,
        "cache_files": 12,
        "policy": "optimistic",
        "budget": 2.0,
        "analyses_run": 7,
        "walks_unsettled": 1,
        "wheels_wanted": 4,
        "now": 1000.0,
        "hosts": [HostClass(f"{PROFILE},x={EVIL}", 5, 2, 990.0, "demo")],
        "reasons": [ReasonCount("glibc", 3, 1)],
        "affected": [Affected("demo", 1, 3, 10)],
        "profile": PROFILE,
        "file_origins": ("https://files.test/",),
    }
    values.update(changes)
    return Landing(**values)  # type: ignore[arg-type]


def test_landing_page() -> None:
    parsed = assert_inert(render_landing(landing()))
    text = parsed.joined
    for expected in (
        f"pip install --index-url http://proxy.test:8080/p/{PROFILE}/simple/ PROJECT",
        "uv add --default-index",
        "index-url = http://proxy.test:8080/p/",
        "[[index]]",
        "hostfit probe --index-url http://proxy.test:8080/",
        f"PIP_USER_AGENT_USER_DATA='{PROFILE}' pip install --index-url http://proxy.test:8080/simple/",
        "http://proxy.test:8080/universal/simple/",
        "https://***@index.test/simple/",
        "pytorch",
        "Files may also come from https://files.test/.",
        "2 deny",
        "3.0 GiB in 12 file(s)",
        "10 s ago",
        f"x={EVIL}",
        "glibc",
    ):
        assert expected in text, expected
    form = parsed.named("form")[0]
    assert (form["action"], form["method"]) == ("/ui/project/", "get")
    assert [i["name"] for i in parsed.named("input")] == ["project", "profile"]
    meta = {m.get("name"): m.get("content") for m in parsed.named("meta")}
    assert meta["viewport"] == "width=device-width, initial-scale=1"
    assert "prefers-color-scheme:dark" in render_landing(landing())


def test_landing_page_before_any_traffic() -> None:
    text = Tags(render_landing(landing(hosts=[], reasons=[], affected=[], profile=""))).joined
    assert "No host has asked for a page yet." in text
    assert "PIP_USER_AGENT_USER_DATA" not in text


def test_a_large_project_renders_fast() -> None:
    """numpy lists about 4,400 files: explaining and rendering them takes well under a second."""
    platforms = [
        "cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-musllinux_1_1_x86_64",
        "cp311-cp311-win_amd64", "cp311-cp311-macosx_11_0_arm64",
        "cp310-cp310-manylinux_2_17_x86_64", "cp312-cp312-manylinux_2_17_aarch64",
        "cp39-cp39-win32", "cp312-cp312-macosx_10_9_x86_64",
        "pp310-pypy310_pp73-manylinux_2_17_x86_64", "cp313-cp313-manylinux_2_28_x86_64",
        "cp313-cp313t-manylinux_2_28_x86_64",
    ]  # fmt: skip
    files = [
        wheel(f"{major}.{minor}.{patch}", f"{n % 16:x}", tag)
        for n, (major, minor, patch, tag) in enumerate(
            (major, minor, patch, tag)
            for major in range(1, 5)
            for minor in range(10)
            for patch in range(10)
            for tag in platforms
        )
    ]
    assert len(files) == 4400
    tags = Reason("tags", "tags: not a tag this host supports")
    verdicts = {
        f.filename: Verdict() if "cp311-cp311-m" in f.filename else Verdict((tags,)) for f in files
    }
    timings = []
    for _ in range(3):  # the best of three: other work on a shared machine is noise
        start = time.perf_counter()
        data = explained(files, verdicts, choice=files[-11])
        body = render_project("demo", profile=PROFILE, files=files, explained=data)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.5, timings
    assert body.count("<tr") == 4400 + 400  # a row per file, a header row per version


def test_explain_command_prints_a_facts_note_in_place_of_fits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [wheel("2.0", "a"), wheel("1.0", "b")]
    note = "cuda: needs CUDA 12, host has no NVIDIA driver: kept, rule r: fact[0] says so"
    verdicts = {files[0].filename: Verdict((), frozenset(), (note,)), files[1].filename: Verdict()}
    data = explained(files, verdicts)

    async def answered(args: argparse.Namespace) -> dict[str, Any]:
        return data

    monkeypatch.setattr(explain_command, "_explain", answered)
    assert explain_command.run(argparse.Namespace(json=False)) == 0
    lines = {
        line.split()[1]: line for line in capsys.readouterr().out.splitlines() if "keep" in line
    }
    assert lines[files[0].filename].endswith(note)
    assert lines[files[1].filename].endswith("fits")
