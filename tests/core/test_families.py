"""choose_builds(): per version, the one build of a family a host is offered."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from proxy.core.decide import Reason, Verdict
from proxy.core.families import Family, build_label, choose_builds, parse_build
from proxy.core.models import File
from proxy.core.profile import parse_profile
from proxy.core.report import Report, Requires

TAG = "cp311-cp311-manylinux_2_17_x86_64"
ORDER = ("cu126", "cu128", "cu118", "cpu")

# The family the end-to-end tests serve: cu118 keeps SASS for old GPUs, cu126 has SASS
# from 5.0 and PTX 9.0, cu128 starts at 7.5 (like PyTorch's cu128 builds).
GPU_CODE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cu118": (("3.7", "5.0", "6.0", "6.1", "7.0", "7.5", "8.0", "8.6", "9.0"), ("9.0",)),
    "cu126": (("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "9.0"), ("9.0",)),
    "cu128": (("7.5", "8.0", "8.6", "9.0", "10.0", "12.0"), ("12.0",)),
}


def wheel(version: str, label: str) -> File:
    name = f"torch-{version}+{label}-{TAG}.whl"
    return File(name, f"http://up/{name}", {"sha256": f"{label}{version}".ljust(64, "0")})


def page(*versions: str, labels: tuple[str, ...] = ORDER) -> list[File]:
    return [wheel(v, label) for v in versions for label in labels]


def reports_for(files: list[File], code: Mapping[str, tuple[tuple[str, ...], ...]] = GPU_CODE) -> (
    dict[str, Report]
):  # fmt: skip
    out = {}
    for f in files:
        if "+" not in f.filename:
            continue
        label = f.filename.split("+")[1].split("-")[0]
        sass, ptx = code.get(label, ((), ()))
        cuda = None if label == "cpu" else int(label[2:-1])
        requires = Requires(cuda_major=cuda, gpu_sms=sass or None, gpu_ptx=ptx or None)
        out[f.sha256 or ""] = Report(f.filename, f.sha256 or "", requires=requires)
    return out


def kept(chosen: Mapping[str, Verdict]) -> set[str]:
    return {name.split("+")[1].split("-")[0] for name, v in chosen.items() if v.keep}


FAMILY = Family("torch", ORDER)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        # cu126's SASS 6.0 runs on 6.1 under minor version compatibility, but cu118 needs
        # no compatibility mode
        ("cuda=12.4,sm=6.1", {"cu118"}),
        ("cuda=12.6,sm=6.1", {"cu126"}),  # SASS 6.0 runs on 6.1
        ("cuda=12.8,sm=6.1", {"cu126"}),  # cu128 starts at 7.5: never for a GTX 1080 Ti
        ("cuda=12.8,sm=9.0", {"cu128"}),
        ("cuda=12.8,sm=8.9", {"cu128"}),  # SASS 8.6 runs on 8.9
        ("cuda=13.0,sm=12.0", {"cu128"}),
        ("cuda=12.8,sm=5.2", {"cu126"}),  # SASS 5.0 runs on 5.2
        ("cuda=12.8,sm=3.5", {"cpu"}),  # no build has code for 3.5 (and PTX 9.0 is newer)
        ("cuda=12.8,sm=3.7", {"cu118"}),
        ("cuda=11.8,sm=8.6", {"cu118"}),
        ("cuda=11.4,sm=8.6", {"cu118"}),  # minor version compatibility: SASS 8.6
        ("cuda=11.4,sm=6.1", {"cu118"}),  # SASS 6.1
        ("cuda=11.4,sm=8.9", {"cu118"}),  # SASS 8.6 runs on 8.9
        ("cuda=11.4,sm=3.5", {"cpu"}),  # no SASS for 3.5
        ("cuda=11.4", {"cpu"}),  # GPUs unknown: no build shown to run without PTX JIT
        ("cuda=11.0,sm=8.6", {"cpu"}),  # a driver for 11.0 may predate 450.80.02
        # cu128 has SASS 12.0 but needs the compatibility mode; cu118's PTX 9.0 is
        # JIT-compiled by a driver newer than its toolkit: no compatibility mode needed
        ("cuda=12.4,sm=12.0", {"cu118"}),
        ("cuda=none", {"cpu"}),
        ("cuda=none,sm=9.0", {"cpu"}),
        ("cuda=12.8", {"cu128"}),  # GPUs unknown: by CUDA alone
        ("cuda=12.5", {"cu118"}),
        ("sm=9.0", {"cu126"}),  # CUDA unknown: the family's first build
        ("python=3.11", {"cu126"}),
        ("cuda=12.8,sm=6.1+9.0", {"cu126"}),  # every GPU must run it
        ("cuda=12.8,sm=3.5+9.0", {"cpu"}),
        ("cuda=12.8,sm=7.5+12.0", {"cu128"}),
    ],
)
def test_the_build_chosen(profile: str, expected: set[str]) -> None:
    files = page("2.7.0")
    verdicts = {f.filename: Verdict() for f in files}
    chosen = choose_builds(
        files,
        verdicts,
        parse_profile(profile, "url"),
        reports=reports_for(files),
        family=FAMILY,
    )
    assert kept(chosen.verdicts) == expected
    statuses = {c.build: c.status for c in chosen.builds}
    assert {b for b, s in statuses.items() if s == "chosen"} == expected
    for verdict in chosen.verdicts.values():
        if not verdict.keep:
            assert [r.kind for r in verdict.reasons] == ["build"]
            assert "2.7.0 is served as" in verdict.reasons[0].message


def test_ptx_saves_a_newer_gpu_and_the_driver_must_know_the_toolkit() -> None:
    files = page("1.0", labels=("cu126", "cpu"))
    code = {"cu126": (("8.0",), ("8.0",))}
    reports = reports_for(files, code)
    family = Family("f", ("cu126", "cpu"))
    verdicts = {f.filename: Verdict() for f in files}
    for profile, expected in (("cuda=12.6,sm=9.0", {"cu126"}), ("cuda=12.4,sm=9.0", {"cpu"})):
        chosen = choose_builds(
            files, verdicts, parse_profile(profile, "url"), reports=reports, family=family
        )
        assert kept(chosen.verdicts) == expected, profile


def test_each_version_chooses_on_its_own() -> None:
    # 2.8.0 exists only as cu128: an 11.8 driver is offered no 2.8.0 at all (pip takes 2.7.0).
    files = [*page("2.7.0"), wheel("2.8.0", "cu128")]
    verdicts = {f.filename: Verdict() for f in files}
    chosen = choose_builds(
        files,
        verdicts,
        parse_profile("cuda=11.8,sm=8.6", "url"),
        reports=reports_for(files),
        family=FAMILY,
    )
    assert {n for n, v in chosen.verdicts.items() if v.keep} == {files[2].filename}
    newest = [c for c in chosen.builds if c.version == "2.8.0"]
    assert [(c.build, c.status) for c in newest] == [("cu128", "set aside")]
    assert newest[0].why == "needs CUDA 12.8; the host's driver supports CUDA 11.8"
    assert "2.8.0 is served as no build" in chosen.verdicts[files[-1].filename].reasons[0].message


def choose(
    files: list[File], profile: str, reports: Mapping[str, Report] | None = None
) -> dict[tuple[str, str], tuple[str, str]]:
    """(version, build) -> (status, why)."""
    chosen = choose_builds(
        files,
        {f.filename: Verdict() for f in files},
        parse_profile(profile, "url"),
        reports=reports_for(files) if reports is None else reports,
        family=FAMILY,
    )
    return {(c.version, c.build): (c.status, c.why) for c in chosen.builds}


def test_a_newer_minor_build_runs_under_minor_version_compatibility_from_its_sass() -> None:
    files = [*page("2.7.0"), wheel("2.8.0", "cu128")]
    builds = choose(files, "cuda=12.4,sm=8.6")
    assert builds[("2.8.0", "cu128")] == (
        "chosen",
        "no build for a CUDA the driver supports runs here; this one runs under minor version"
        " compatibility (CUDA 12.8 on a driver for 12.4): its GPU code (SASS 7.5, 8.0, 8.6,"
        " 9.0, 10.0, 12.0; PTX 12.0) runs from SASS on the host's 8.6",
    )
    # Where a build the driver supports runs, it is preferred, though older.
    assert builds[("2.7.0", "cu118")][0] == "chosen"
    assert builds[("2.7.0", "cu126")] == (
        "set aside",
        "needs minor version compatibility (CUDA 12.6 on a driver for 12.4); +cu118, built for"
        " a CUDA the driver supports, is preferred",
    )


def test_a_newer_minor_build_needs_sass_for_every_known_gpu() -> None:
    files = [wheel("2.8.0", "cu128"), wheel("2.8.0", "cpu")]
    unknown = choose(files, "cuda=12.4")
    assert unknown[("2.8.0", "cu128")] == (
        "set aside",
        "needs minor version compatibility (CUDA 12.8 on a driver for 12.4): only SASS runs"
        " there, and the host did not tell its GPUs (sm=), so none is shown to run it without"
        " PTX JIT",
    )
    assert unknown[("2.8.0", "cpu")][0] == "chosen"
    two = choose(files, "cuda=12.4,sm=8.6+6.1")
    assert two[("2.8.0", "cu128")] == (
        "set aside",
        "needs minor version compatibility (CUDA 12.8 on a driver for 12.4): only SASS runs"
        " there (the driver cannot JIT PTX from a newer toolkit), and its GPU code (SASS 7.5,"
        " 8.0, 8.6, 9.0, 10.0, 12.0; PTX 12.0) has none for the host's 6.1",
    )
    # PTX the GPU could run is no help: the older driver refuses it.
    ptx_only = reports_for(files, {"cu128": (("8.0",), ("8.0",))})
    assert choose(files, "cuda=12.4,sm=9.0", reports=ptx_only)[("2.8.0", "cu128")][0] == (
        "set aside"
    )
    assert choose(files, "cuda=12.8,sm=9.0", reports=ptx_only)[("2.8.0", "cu128")][0] == "chosen"
    # A SASS target that cannot be read cannot show that it runs.
    unreadable = reports_for(files, {"cu128": (("sm_86",), ())})
    assert choose(files, "cuda=12.4,sm=8.6", reports=unreadable)[("2.8.0", "cu128")][0] == (
        "set aside"
    )


def test_of_builds_needing_the_compatibility_mode_the_nearest_the_driver() -> None:
    files = page("2.7.0", labels=("cu128", "cu126", "cpu"))
    builds = choose(files, "cuda=12.4,sm=8.6")
    assert builds[("2.7.0", "cu126")][0] == "chosen"
    assert builds[("2.7.0", "cu128")] == (
        "set aside",
        "needs minor version compatibility (CUDA 12.8 on a driver for 12.4); +cu126, nearer"
        " the driver's CUDA, is chosen",
    )
    assert builds[("2.7.0", "cpu")] == ("set aside", "a CUDA build, +cu126, runs on this host")


def test_no_minor_version_compatibility_before_cuda_11_or_below_its_floor() -> None:
    files = [wheel("1.0", "cu102"), wheel("1.0", "cpu")]
    code = {"cu102": (("6.1",), ())}
    builds = choose(files, "cuda=10.1,sm=6.1", reports=reports_for(files, code))
    assert builds[("1.0", "cu102")] == (
        "set aside",
        "needs CUDA 10.2; the host's driver supports CUDA 10.1, and CUDA 10 has no minor"
        " version compatibility",
    )
    assert builds[("1.0", "cpu")][0] == "chosen"
    eleven = [wheel("1.0", "cu118"), wheel("1.0", "cpu")]
    builds = choose(eleven, "cuda=11.0,sm=8.6")
    assert builds[("1.0", "cu118")] == (
        "set aside",
        "needs CUDA 11.8; the host's driver supports CUDA 11.0; minor version compatibility"
        " needs driver 450.80.02, and a driver that supports CUDA 11.0 may be older",
    )


def test_an_unanalysed_newer_minor_build_is_chosen_for_now_when_nothing_else_runs() -> None:
    files = [wheel("2.8.0", "cu128"), wheel("2.8.0", "cpu")]
    reports = reports_for(files)
    cu128 = files[0]
    waiting = {k: v for k, v in reports.items() if k != cu128.sha256}
    chosen = choose_builds(
        files,
        {f.filename: Verdict() for f in files},
        parse_profile("cuda=12.4,sm=8.6", "url"),
        reports=waiting,
        unreported={cu128.filename},
        family=FAMILY,
    )
    assert [(c.build, c.pending) for c in chosen.builds if c.status == "chosen"] == [
        ("cu128", True)
    ]


def test_unanalysed_build_is_chosen_for_now_then_the_next_once_it_misses() -> None:
    files = page("2.7.0")
    verdicts = {f.filename: Verdict() for f in files}
    profile = parse_profile("cuda=12.8,sm=6.1", "url")
    reports = reports_for(files)
    cu128 = next(f for f in files if "+cu128" in f.filename)
    cu126 = next(f for f in files if "+cu126" in f.filename)
    waiting = {k: v for k, v in reports.items() if k not in (cu128.sha256, cu126.sha256)}
    first = choose_builds(
        files,
        verdicts,
        profile,
        reports=waiting,
        unreported={cu128.filename, cu126.filename},
        family=FAMILY,
    )
    assert kept(first.verdicts) == {"cu128"}
    assert [c.pending for c in first.builds if c.status == "chosen"] == [True]
    # cu128's report is in: it misses sm_61, so cu126, still unanalysed, is next.
    second = choose_builds(
        files,
        verdicts,
        profile,
        reports={**waiting, cu128.sha256 or "": reports[cu128.sha256 or ""]},
        unreported={cu126.filename},
        family=FAMILY,
    )
    assert kept(second.verdicts) == {"cu126"}
    why = {c.build: c.why for c in second.builds}
    assert "does not run on the host's 6.1" in why["cu128"]
    third = choose_builds(files, verdicts, profile, reports=reports, family=FAMILY)
    assert kept(third.verdicts) == {"cu126"}
    assert not any(c.pending for c in third.builds)


def test_files_hidden_by_their_own_checks_are_listed_not_offered() -> None:
    files = page("2.7.0")
    verdicts = {f.filename: Verdict() for f in files}
    cu128 = next(f.filename for f in files if "+cu128" in f.filename)
    verdicts[cu128] = Verdict((Reason("sm", "sm: kernels for 7.5; host GPUs are 6.1"),))
    chosen = choose_builds(
        files,
        verdicts,
        parse_profile("cuda=12.8,sm=6.1", "url"),
        reports=reports_for(files),
        family=FAMILY,
    )
    status = {c.build: (c.status, c.why) for c in chosen.builds}
    assert status["cu128"] == ("not offered", "hidden by its own checks: sm: kernels for 7.5;"
                               " host GPUs are 6.1")  # fmt: skip
    assert chosen.verdicts[cu128].reasons == verdicts[cu128].reasons  # nothing added


def test_a_page_that_is_no_family_is_left_whole_when_cuda_is_unknown() -> None:
    files = page("2.7.0")
    verdicts = {f.filename: Verdict() for f in files}
    chosen = choose_builds(
        files, verdicts, parse_profile("sm=9.0", "url"), reports=reports_for(files)
    )
    assert all(v.keep for v in chosen.verdicts.values())
    assert chosen.builds == ()
    # ... and a single build is no choice there either.
    one = page("2.7.0", labels=("cu128",))
    alone = choose_builds(
        one, {f.filename: Verdict() for f in one}, parse_profile("cuda=12.4", "url"), reports={}
    )
    assert all(v.keep for v in alone.verdicts.values())


def test_upstream_build_label_for_files_without_a_local_version() -> None:
    plain = File(f"torch-2.7.0-{TAG}.whl", "http://cu126/x.whl", {"sha256": "a" * 64})
    cpu = File(f"torch-2.7.0+cpu-{TAG}.whl", "http://cpu/x.whl", {"sha256": "b" * 64})
    family = Family(
        "torch",
        ("cu126", "cpu"),
        labels={plain.filename: "cu126"},
        sources={plain.filename: "http://cu126/simple/", cpu.filename: "http://cpu/simple/"},
    )
    assert build_label(plain.filename, family) == "cu126"
    assert build_label(plain.filename, None) is None
    assert build_label(cpu.filename, None) == "cpu"
    verdicts = {plain.filename: Verdict(), cpu.filename: Verdict()}
    chosen = choose_builds(
        [plain, cpu], verdicts, parse_profile("cuda=none", "url"), reports={}, family=family
    )
    assert not chosen.verdicts[plain.filename].keep
    by_build = {c.build: c for c in chosen.builds}
    assert by_build["cpu"].sources == ("http://cpu/simple/",)
    assert by_build["cu126"].why == "the host has no NVIDIA driver (cuda=none)"


def test_sdists_and_unlabelled_files_are_no_builds() -> None:
    files = [*page("2.7.0"), File("torch-2.7.0.tar.gz", "http://up/s", {})]
    files.append(File(f"torch-2.7.0+rocm6.2-{TAG}.whl", "http://up/r", {"sha256": "c" * 64}))
    verdicts = {f.filename: Verdict() for f in files}
    chosen = choose_builds(
        files,
        verdicts,
        parse_profile("cuda=none", "url"),
        reports=reports_for(files[: len(ORDER)]),
        family=FAMILY,
    )
    assert chosen.verdicts["torch-2.7.0.tar.gz"].keep
    assert chosen.verdicts[files[-1].filename].keep  # a build hostfit cannot judge
    assert {c.build for c in chosen.builds} == set(ORDER)


@pytest.mark.parametrize(
    ("label", "cuda"),
    [("cu118", (11, 8)), ("cu92", (9, 2)), ("cu130", (13, 0)), ("cu126", (12, 6)),
     ("cpu", None), ("rocm6.2", "no"), ("cu1", "no"), ("cu12345", "no"), ("CPU", "no")],
)  # fmt: skip
def test_parse_build(label: str, cuda: object) -> None:
    build = parse_build(label)
    if cuda == "no":
        assert build is None
    else:
        assert build is not None and build.cuda == cuda


def test_without_a_driver_and_without_a_cpu_build_a_build_that_runs_on_the_cpu() -> None:
    """A version with CUDA builds only: a host with no driver gets none of them, unless a
    project fact says they run on the CPU without one; then the first in the family's
    order. Where there is a CPU build, that one."""
    files = [f for f in page("2.7.0") if "+cpu" not in f.filename]
    verdicts = {f.filename: Verdict() for f in files}
    no_driver = parse_profile("cuda=none", "url")
    chosen = choose_builds(files, verdicts, no_driver, reports={}, family=FAMILY)
    assert kept(chosen.verdicts) == set()
    able = frozenset(f.filename for f in files)
    chosen = choose_builds(
        files, verdicts, no_driver, reports={}, family=FAMILY, without_driver=able
    )
    assert kept(chosen.verdicts) == {FAMILY.order[0]}
    (first,) = [c for c in chosen.builds if c.status == "chosen"]
    assert "run on the CPU without a driver" in first.why
    everything = page("2.7.0")
    chosen = choose_builds(
        everything,
        {f.filename: Verdict() for f in everything},
        no_driver,
        reports={},
        family=FAMILY,
        without_driver=frozenset(f.filename for f in everything),
    )
    assert kept(chosen.verdicts) == {"cpu"}
