"""Policies on one project's files, and project facts in the compatibility decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxy.core.decide import decide
from proxy.core.models import File
from proxy.core.profile import parse_profile
from proxy.core.report import Report, Requires
from proxy.core.rule_policy import apply_policies, listed
from proxy.core.rules import load_rules, shipped_texts

P = "rules/p.toml"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CP = "cp311-cp311"


def file(filename: str, **extra: Any) -> File:
    keys = {k.replace("_", "-"): v for k, v in extra.items()}
    return File(filename, f"https://files.example/{filename}", {"sha256": "0" * 64}, keys)


def hidden(text: str, *files: File, project: str = "pkg") -> dict[str, list[str]]:
    outcome = apply_policies(load_rules({P: text}), project, files, NOW)
    assert all(r.kind == "rule" for reasons in outcome.hidden.values() for r in reasons)
    return {name: [r.message for r in reasons] for name, reasons in outcome.hidden.items()}


W1 = file(f"pkg-1.0-{CP}-manylinux_2_17_x86_64.whl")
W2 = file(f"pkg-2.0-{CP}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
S2 = file("pkg-2.0.tar.gz")
I686 = file(f"pkg-2.0-{CP}-manylinux_2_17_i686.whl")
ANY = file("pkg-2.0-py3-none-any.whl")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        (
            "[[deny]]\nproject = 'pkg'\nversion = '>=2'\nreason = 'CVE-1'",
            {
                W2.filename: [f"rule {P}: deny[0]: pkg >=2 is denied: CVE-1"],
                S2.filename: [f"rule {P}: deny[0]: pkg >=2 is denied: CVE-1"],
            },
        ),
        ("[[deny]]\nproject = 'other'", {}),
        (
            "[[pin]]\nproject = 'pkg'\nversion = '==2.0'",
            {W1.filename: [f"rule {P}: pin[0]: pinned to ==2.0: 1.0 set aside"]},
        ),
        (
            "[[allow]]\nproject = 'pkg'\nversion = '<2'",
            {
                W2.filename: [f"rule {P}: allow[0]: pkg 2.0 is not on the allow list"],
                S2.filename: [f"rule {P}: allow[0]: pkg 2.0 is not on the allow list"],
            },
        ),
        (
            "[[allow]]\nproject = 'numpy'",
            {
                name: [f"rule {P}: allow: pkg is not on the allow list"]
                for name in (W1.filename, W2.filename, S2.filename)
            },
        ),
        ("[platforms]\nallow = ['manylinux*_x86_64', 'any']", {}),
        (
            "[platforms]\ndeny = ['manylinux2014_*']",
            {},  # W2 is also manylinux_2_17: not every one of its platforms is denied
        ),
        (
            "[platforms]\ndeny = ['manylinux2014_*', 'manylinux_2_17_*']",
            {
                W1.filename: [f"rule {P}: platforms: platform manylinux_2_17_x86_64 denied"],
                W2.filename: [
                    f"rule {P}: platforms: platform "
                    "manylinux2014_x86_64/manylinux_2_17_x86_64 denied"
                ],
            },
        ),
    ],
)
def test_policies(text: str, expected: dict[str, list[str]]) -> None:
    assert hidden(text, W1, W2, S2) == expected


def test_platform_allow_list_hides_other_platforms_but_not_sdists_or_pure_wheels() -> None:
    text = "[platforms]\nallow = ['*_x86_64', 'any']"
    assert hidden(text, W1, I686, ANY, S2) == {
        I686.filename: [f"rule {P}: platforms: platform manylinux_2_17_i686 not allowed"]
    }


def test_several_reasons_are_all_given() -> None:
    text = "[[deny]]\nproject = 'pkg'\n[[pin]]\nproject = 'pkg'\nversion = '==2.0'"
    assert hidden(text, W1) == {
        W1.filename: [
            f"rule {P}: deny[0]: pkg is denied",
            f"rule {P}: pin[0]: pinned to ==2.0: 1.0 set aside",
        ]
    }


LEGACY_ARCHIVES = (".tgz", ".tar", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tlz", ".tar.lz")


@pytest.mark.parametrize("ext", [*LEGACY_ARCHIVES, ".tar.lzma", ".TAR.GZ", ".Zip"])
def test_a_versioned_deny_reads_the_version_of_every_archive_pip_installs(ext: str) -> None:
    text = "[[deny]]\nproject = 'pkg'\nversion = '<2'\nreason = 'RCE'"
    old, new = file(f"pkg-1.0{ext}"), file(f"pkg-2.0{ext}")
    assert hidden(text, old, new) == {old.filename: [f"rule {P}: deny[0]: pkg <2 is denied: RCE"]}


@pytest.mark.parametrize("name", ["pkg-1.0-py2.7.egg", "pkg-latest.tgz", "pkg.tar.gz"])
def test_a_versioned_deny_hides_a_file_whose_version_cannot_be_read(name: str) -> None:
    unknown = file(name)
    assert hidden("[[deny]]\nproject = 'pkg'\nversion = '>=3'", unknown, S2) == {
        name: [f"rule {P}: deny[0]: pkg >=3 is denied; this file's version is unknown"]
    }


def test_pin_and_allow_keep_a_legacy_archive_of_a_version_they_let_through() -> None:
    tgz = file("pkg-1.0.tgz")
    assert hidden("[[pin]]\nproject = 'pkg'\nversion = '==1.0'", tgz) == {}
    assert hidden("[[allow]]\nproject = 'pkg'\nversion = '<2'", tgz) == {}


def test_yanked_files_are_hidden_only_when_asked() -> None:
    yanked = file("pkg-3.0.tar.gz", yanked="broken build")
    plain = file("pkg-3.1.tar.gz", yanked=False)
    assert hidden("", yanked, plain) == {}
    assert hidden("[defaults]\nyanked = 'hide'", yanked, plain) == {
        yanked.filename: [f"rule {P}: defaults.yanked: yanked files are hidden"]
    }


def upload(age: timedelta) -> str:
    return (NOW - age).isoformat().replace("+00:00", "Z")


def test_quarantine_hides_young_files_and_says_when_the_next_one_comes_out() -> None:
    rules = load_rules({P: "[quarantine]\nmin_age = '7d'\nexempt = ['Trusted']"})
    old = file("pkg-1.0.tar.gz", upload_time=upload(timedelta(days=30)))
    young = file("pkg-2.0.tar.gz", upload_time=upload(timedelta(days=2, hours=3)))
    younger = file("pkg-2.1.tar.gz", upload_time=upload(timedelta(hours=5)))
    unknown = file("pkg-2.2.tar.gz")
    outcome = apply_policies(rules, "pkg", [old, young, younger, unknown], NOW)
    assert {k: [r.message for r in v] for k, v in outcome.hidden.items()} == {
        young.filename: [f"rule {P}: quarantine: uploaded 2d ago, quarantined until 7d old"],
        younger.filename: [f"rule {P}: quarantine: uploaded 5h ago, quarantined until 7d old"],
    }
    assert outcome.until == NOW + timedelta(days=5, hours=-3)
    later = apply_policies(rules, "pkg", [young], NOW + timedelta(days=5))
    assert later.hidden == {} and later.until is None
    assert apply_policies(rules, "trusted", [young], NOW).hidden == {}


def test_an_upload_time_at_the_calendars_end_stays_quarantined() -> None:
    rules = load_rules({P: "[quarantine]\nmin_age = '36500d'"})
    last = file("pkg-1.0.tar.gz", upload_time="9999-12-31T00:00:00Z")
    outcome = apply_policies(rules, "pkg", [last, file("pkg-0.9.tar.gz")], NOW)
    assert list(outcome.hidden) == [last.filename] and outcome.until is None


def test_quarantine_can_hide_files_without_an_upload_time() -> None:
    text = "[quarantine]\nmin_age = '1h'\nmissing_upload_time = 'hide'"
    naive = file("pkg-1.1.tar.gz", upload_time="2025-01-01T00:00:00")  # no zone: unusable
    assert hidden(text, file("pkg-1.0.tar.gz"), naive) == {
        name: [f"rule {P}: quarantine: no upload time, so quarantine cannot clear it"]
        for name in ("pkg-1.0.tar.gz", "pkg-1.1.tar.gz")
    }


@pytest.mark.parametrize(
    ("text", "project", "shown"),
    [
        ("", "pkg", True),
        ("[[deny]]\nproject = 'pkg'", "pkg", False),
        ("[[deny]]\nproject = 'pkg'\nversion = '<1'", "pkg", True),
        ("[[allow]]\nproject = 'numpy'", "pkg", False),
        ("[[allow]]\nproject = 'numpy'", "numpy", True),
    ],
)
def test_which_projects_are_listed(text: str, project: str, shown: bool) -> None:
    assert listed(load_rules({P: text}), project) is shown


FACTS = """
[sources]
doc = "the project's release notes"

[[fact]]
project = "tfish"
version = ">=1.6"
requires = { x86_64_level = 2 }
note = "uses AVX"
source = "doc"

[[fact]]
project = "cudaplug"
requires = { cuda_major = 12 }
note = "loads CUDA with dlopen"
source = "doc"
"""


@pytest.mark.parametrize(
    ("filename", "profile", "messages"),
    [
        (
            f"tfish-1.6.0-{CP}-manylinux_2_17_x86_64.whl",
            "isa=x86-64-v1",
            [f"rule {P}: fact[0]: isa: needs x86-64-v2, host is x86-64-v1 (uses AVX)"],
        ),
        (  # a variant wheel (PEP 825) is the project's like any other
            f"tfish-1.6.0-{CP}-manylinux_2_17_x86_64-avx2.whl",
            "isa=x86-64-v1",
            [f"rule {P}: fact[0]: isa: needs x86-64-v2, host is x86-64-v1 (uses AVX)"],
        ),
        (f"tfish-1.5.0-{CP}-manylinux_2_17_x86_64.whl", "isa=x86-64-v1", []),
        (f"tfish-1.6.0-{CP}-manylinux_2_17_x86_64.whl", "isa=x86-64-v3", []),
        (f"tfish-1.6.0-{CP}-manylinux_2_17_x86_64.whl", "", []),  # told nothing: never hidden
        (
            "cudaplug-0.4-py3-none-any.whl",
            "cuda=none",
            [
                f"rule {P}: fact[1]: cuda: needs CUDA 12, host has no NVIDIA driver "
                "(loads CUDA with dlopen)"
            ],
        ),
        (
            "cudaplug-0.4-py3-none-any.whl",
            "cuda=11.8",
            [
                f"rule {P}: fact[1]: cuda: needs CUDA 12, host driver supports 11.8 "
                "(loads CUDA with dlopen)"
            ],
        ),
        ("cudaplug-0.4-py3-none-any.whl", "cuda=12.4", []),
        ("cudaplug-0.4.tar.gz", "cuda=none", []),  # sdists follow their wheels (select)
    ],
)
def test_facts_in_decide(filename: str, profile: str, messages: list[str]) -> None:
    facts = load_rules({P: FACTS}).facts
    verdict = decide(file(filename), None, parse_profile(profile, "url"), rules=facts)
    assert [r.message for r in verdict.reasons] == messages
    assert all(r.kind == "rule" for r in verdict.reasons)


def test_facts_add_to_what_the_report_says() -> None:
    facts = load_rules({P: FACTS}).facts
    name = f"tfish-2.0-{CP}-manylinux_2_17_x86_64.whl"
    report = Report(name, "0" * 64, requires=Requires(libc="glibc", glibc="2.28"))
    profile = parse_profile("libc=glibc-2.17,isa=x86-64-v1", "url")
    verdict = decide(file(name), report, profile, rules=facts)
    assert [r.kind for r in verdict.reasons] == ["glibc", "rule"]
    assert {"libc", "isa"} <= verdict.consulted


WITHOUT_DRIVER = """
[sources]
doc = "the project's documentation"

[[fact]]
project = "cpuok"
runs_without_driver = true
note = "CUDA builds run on the CPU"
source = "doc"

[[fact]]
project = "cpuok"
version = ">=3"
requires = { x86_64_level = 3 }
note = "uses AVX2"
source = "doc"
"""


@pytest.mark.parametrize(
    ("project", "profile", "kinds", "kept_by_fact"),
    [
        # the fact: no driver, its CUDA build runs on the CPU (and the verdict says so)
        ("cpuok", "cuda=none", [], True),
        ("cpuok-variant", "cuda=none", [], True),  # a variant wheel of it likewise
        ("cpuok", "cuda=11.8", ["cuda"], False),  # a driver too old for CUDA 12 still hides it
        ("cpuok", "cuda=12.4", [], False),  # a driver: the fact has nothing to say
        ("other", "cuda=none", ["cuda"], False),  # another project's CUDA build: hidden
    ],
)
def test_a_project_whose_cuda_builds_run_without_a_driver(
    project: str, profile: str, kinds: list[str], kept_by_fact: bool
) -> None:
    facts = load_rules({P: WITHOUT_DRIVER}).facts
    label = "-cu12" if project.endswith("-variant") else ""
    name = f"{project.removesuffix('-variant')}-2.0-{CP}-manylinux_2_17_x86_64{label}.whl"
    report = Report(name, "0" * 64, requires=Requires(cuda_major=12))
    verdict = decide(file(name), report, parse_profile(profile, "url"), rules=facts)
    assert [r.kind for r in verdict.reasons] == kinds
    assert "cuda" in verdict.consulted  # the decision read the host's CUDA either way
    expected = (
        f"cuda: needs CUDA 12, host has no NVIDIA driver: kept, rule {facts[0].where} says it"
        " runs on the CPU (CUDA builds run on the CPU)"
    )
    assert verdict.notes == ((expected,) if kept_by_fact else ())


def test_a_fact_of_need_still_applies_beside_one_that_runs_without_a_driver() -> None:
    facts = load_rules({P: WITHOUT_DRIVER}).facts
    name = f"cpuok-3.0-{CP}-manylinux_2_17_x86_64.whl"
    report = Report(name, "0" * 64, requires=Requires(cuda_major=12))
    profile = parse_profile("cuda=none,isa=x86-64-v2", "url")
    verdict = decide(file(name), report, profile, rules=facts)
    assert [r.message for r in verdict.reasons] == [
        f"rule {P}: fact[1]: isa: needs x86-64-v3, host is x86-64-v2 (uses AVX2)"
    ]
    # A fact that states a need of CUDA 12 is relaxed the same way for such a project.
    need = WITHOUT_DRIVER + '\n[[fact]]\nproject = "cpuok"\nrequires = { cuda_major = 12 }\n'
    need += 'note = "n"\nsource = "doc"\n'
    facts = load_rules({P: need}).facts
    plain = f"cpuok-2.0-{CP}-manylinux_2_17_x86_64.whl"
    assert decide(file(plain), None, parse_profile("cuda=none", "url"), rules=facts).keep


@pytest.mark.parametrize(
    ("project", "version", "kept"),
    [
        ("torch", "1.12.1", False),  # its CUDA libraries in the wheel, not checked
        ("torch", "1.13.1", True),  # the first with the -cu11 NVIDIA packages
        ("torch", "2.0.1", True),
        ("torch", "2.15.0", True),
        ("torchvision", "0.14.1", False),  # torch 1.13's: no Python 3.11 wheel to check
        ("torchvision", "0.15.2", True),
        ("torchaudio", "0.13.1", False),
        ("torchaudio", "2.0.2", True),
        ("nvidia-cudnn-cu11", "8.5.0.96", True),
        ("nvidia-cublas-cu12", "12.8.4.1", True),
        ("nvidia-cuda-runtime", "13.0.96", True),
    ],
)
def test_the_shipped_facts_let_the_checked_pytorch_builds_reach_a_host_without_a_driver(
    project: str, version: str, kept: bool
) -> None:
    """From torch 1.13, whose CUDA builds install the NVIDIA libraries as packages, and
    the torchvision and torchaudio of torch 2.0 on: those checked (project-facts.toml)."""
    facts = load_rules(shipped_texts()).facts
    name = f"{project.replace('-', '_')}-{version}-{CP}-manylinux_2_28_x86_64.whl"
    report = Report(name, "0" * 64, requires=Requires(cuda_major=11))
    assert decide(file(name), report, parse_profile("cuda=none", "url"), rules=facts).keep is kept
