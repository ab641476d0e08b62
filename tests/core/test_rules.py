"""Rules: the schema, one broken rule per kind of mistake with its exact message, the digest."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.utils import NormalizedName
from packaging.version import Version

from proxy.core.rules import Match, load_rules, shipped_texts
from proxy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
POLICY = "rules/policy.toml"

FULL = """
[defaults]
profile = "libc=glibc-2.28"
yanked = "hide"

[quarantine]
min_age = "2.5d"
exempt = ["Our_Lib"]
missing_upload_time = "hide"

[platforms]
allow = ["manylinux*", "any"]
deny = ["*_i686"]

[[deny]]
project = "Bad.Package"
version = "<2"
reason = "CVE-0000-0001"

[[deny]]
project = "evil"

[[allow]]
project = "numpy"

[[pin]]
project = "requests"
version = "==2.31.0"

[sources]
doc = "a document"

[[fact]]
project = "avxpkg"
version = ">=1.6"
requires = { x86_64_level = 3, cuda_major = 12, glibc = "2.28", glibcxx = "3.4.25" }
note = "uses AVX2"
source = "doc"

[[retag]]
project = "*"

[[metadata]]
project = "pandas"
version = "<2.2.2"
add_requires = ["numpy <2"]
remove_requires = ["NumPy"]
requires_python = ">=3.9"
source = "doc"
"""


def test_every_kind_of_rule_is_read() -> None:
    rules = load_rules({POLICY: FULL})
    assert rules.default_profile == "libc=glibc-2.28"
    assert (rules.yanked, rules.yanked_where) == ("hide", f"{POLICY}: defaults.yanked")
    assert rules.quarantine is not None
    assert rules.quarantine.min_age == 2.5 * 86400
    assert rules.quarantine.exempt == {"our-lib"}
    assert rules.quarantine.missing_upload_time == "hide"
    assert rules.platforms is not None
    assert (rules.platforms.allow, rules.platforms.deny) == (("manylinux*", "any"), ("*_i686",))
    first, second = rules.deny
    assert first.where == f"{POLICY}: deny[0]"
    assert first.match.project == "bad-package" and str(first.match.versions) == "<2"
    assert first.reason == "CVE-0000-0001"
    assert second.match == Match(NormalizedName("evil"), None)
    assert [a.match for a in rules.allow] == [Match(NormalizedName("numpy"))]
    assert [str(p.match.versions) for p in rules.pins] == ["==2.31.0"]
    (fact,) = rules.facts
    assert fact.requires.x86_64_level == 3 and fact.requires.cuda_major == 12
    assert (fact.requires.glibc, fact.requires.glibcxx) == ("2.28", "3.4.25")
    assert fact.source == "a document" and fact.note == "uses AVX2"
    assert rules.retag[0].match.project is None
    (fix,) = rules.metadata
    assert fix.add_requires == ("numpy<2",)
    assert fix.remove_requires == {"numpy"}
    assert fix.requires_python == ">=3.9"
    assert rules.filters


def test_no_rules_change_nothing() -> None:
    rules = load_rules({})
    assert not rules.filters and not rules.facts and not rules.retag and not rules.metadata
    assert rules.default_profile is None and rules.yanked == "keep"


@pytest.mark.parametrize(
    ("version", "covered"),
    # PEP 440: pre-releases count, but "<2" excludes 2's own pre-releases.
    [("1.9", True), ("1.9rc1", True), ("2.0rc1", False), ("2.0", False), (None, False)],
)
def test_match_follows_pep_440_including_pre_releases(version: str | None, covered: bool) -> None:
    rules = load_rules({POLICY: '[[deny]]\nproject = "x"\nversion = "<2"\n'})
    match = rules.deny[0].match
    assert match.covers("x", Version(version) if version else None) is covered
    assert not match.covers("y", Version("1.0"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deny = [", "invalid TOML: "),
        (
            'denyy = "x"',
            "denyy: unknown key (expected one of allow, best_variant, defaults, deny, fact, "
            "knowledge, metadata, pin, platforms, quarantine, retag, sources)",
        ),
        ('[deny]\nproject = "x"', "deny: expected an array of tables ([[deny]]), got a table"),
        ('defaults = "x"', "defaults: expected a table, got the string 'x'"),
        ("[[deny]]\nversion = '<1'", "deny[0].project: missing"),
        ("[[deny]]\nproject = 3", "deny[0].project: expected a string, got the number 3"),
        ("[[deny]]\nproject = 'foo bar'", "deny[0].project: invalid project name 'foo bar'"),
        ("[[deny]]\nproject = '*'", "deny[0].project: invalid project name '*'"),
        (
            "[[deny]]\nproject = 'a'\n[[deny]]\nproject = 'a'\n[[deny]]\nproject = 'b'\n"
            "version = '>>1'",
            "deny[2].version: invalid specifier '>>1'",
        ),
        (
            "[[deny]]\nproject = 'a'\nversion = ''",
            "deny[0].version: empty specifier (leave the key out to mean every version)",
        ),
        (
            "[[deny]]\nproject = 'a'\nversoin = '<1'",
            "deny[0].versoin: unknown key (expected one of project, version, reason)",
        ),
        ("[[pin]]\nproject = 'a'", "pin[0].version: missing"),
        (
            "[[pin]]\nproject = 'a'\nversion = '<2'\n[[pin]]\nproject = 'A'\nversion = '<3'",
            f"pin[1].project: 'a' is already pinned in {POLICY}: pin[0]",
        ),
        (
            "[defaults]\nprofile = 'libc=glibc-x'",
            "defaults.profile: bad host profile: libc='glibc-x': expected glibc-X.Y or musl-X.Y",
        ),
        ("[defaults]\nyanked = 'drop'", "defaults.yanked: expected 'keep' or 'hide', got 'drop'"),
        ("[defaults]\nyanked = true", "defaults.yanked: expected a string, got a boolean"),
        ("[quarantine]\nexempt = ['a']", "quarantine.min_age: missing"),
        (
            "[quarantine]\nmin_age = '99999999999d'",
            "quarantine.min_age: duration '99999999999d' is longer than 100 years",
        ),
        (
            "[quarantine]\nmin_age = '" + "9" * 400 + "s'",
            "quarantine.min_age: duration '" + "9" * 400 + "s' is longer than 100 years",
        ),
        (
            "[quarantine]\nmin_age = '3 days'",
            "quarantine.min_age: invalid duration '3 days' "
            "(a number and s, m, h, d or w, e.g. '7d')",
        ),
        (
            "[quarantine]\nmin_age = '1d'\nexempt = 'a'",
            "quarantine.exempt: expected an array of strings, got the string 'a'",
        ),
        (
            "[quarantine]\nmin_age = '1d'\nexempt = ['a', 2]",
            "quarantine.exempt[1]: expected a string, got the number 2",
        ),
        (
            "[platforms]\ndeny = ['linux x86']",
            "platforms.deny[0]: invalid platform pattern 'linux x86'",
        ),
        (
            "[knowledge]\nfacts = 'no'",
            "knowledge.facts: expected true or false, got the string 'no'",
        ),
        (
            "[[fact]]\nproject = 'a'\nnote = 'n'\nsource = 's'",
            "fact[0].requires: missing (or runs_without_driver = true)",
        ),
        (
            "[[fact]]\nproject = 'a'\nruns_without_driver = false\nnote = 'n'\nsource = 's'",
            "fact[0].runs_without_driver: only true means something: leave it out",
        ),
        (
            "[[fact]]\nproject = 'a'\nruns_without_driver = true\nrequires = { cuda_major = 12 }"
            "\nnote = 'n'\nsource = 's'",
            "fact[0].runs_without_driver: a fact gives requires or this, not both",
        ),
        (
            "[[fact]]\nproject = 'a'\nruns_without_driver = 'yes'\nnote = 'n'\nsource = 's'",
            "fact[0].runs_without_driver: expected true or false, got the string 'yes'",
        ),
        (
            "[[fact]]\nproject = 'a'\nrequires = {}\nnote = 'n'\nsource = 's'",
            "fact[0].requires: empty (give one of x86_64_level, cuda_major, glibc, glibcxx)",
        ),
        (
            "[[fact]]\nproject = 'a'\nrequires = { avx = true }\nnote = 'n'\nsource = 's'",
            "fact[0].requires.avx: unknown key (expected one of x86_64_level, cuda_major, "
            "glibc, glibcxx)",
        ),
        (
            "[[fact]]\nproject = 'a'\nrequires = { x86_64_level = 5 }\nnote = 'n'\nsource = 's'",
            "fact[0].requires.x86_64_level: 5 is out of range (1 to 4)",
        ),
        (
            "[[fact]]\nproject = 'a'\nrequires = { glibc = '2.x' }\nnote = 'n'\nsource = 's'",
            "fact[0].requires.glibc: '2.x' is not a dotted version",
        ),
        (
            "[[fact]]\nproject = 'a'\nrequires = { cuda_major = 12 }\nsource = 's'",
            "fact[0].note: missing",
        ),
        (
            "[[fact]]\nproject = 'a'\nrequires = { cuda_major = 12 }\nnote = 'n'",
            "fact[0].source: missing",
        ),
        (
            "[[fact]]\nproject = 'a'\nrequires = { cuda_major = 12 }\nnote = 'n'\nsource = 's'",
            "fact[0].source: 's' is not defined in [sources]",
        ),
        ("[sources]\ns = ' '", "sources.s: empty citation"),
        (
            "[[metadata]]\nproject = 'a'\nsource = 's'\n[sources]\ns = 'x'",
            "metadata[0]: nothing to change "
            "(give add_requires, remove_requires or requires_python)",
        ),
        (
            "[[metadata]]\nproject = 'a'\nadd_requires = ['numpy >>2']\nsource = 's'\n"
            "[sources]\ns = 'x'",
            "metadata[0].add_requires[0]: invalid requirement 'numpy >>2': ",
        ),
        (
            "[[metadata]]\nproject = 'a'\nremove_requires = ['-x-']\nsource = 's'\n"
            "[sources]\ns = 'x'",
            "metadata[0].remove_requires[0]: invalid project name '-x-'",
        ),
        (
            "[[metadata]]\nproject = 'a'\nrequires_python = '3.9'\nsource = 's'\n"
            "[sources]\ns = 'x'",
            "metadata[0].requires_python: invalid specifier '3.9'",
        ),
        ("[[retag]]\nproject = '*'\nversion = '~=1'", "retag[0].version: invalid specifier '~=1'"),
        (
            "[[allow]]\nproject = 'a'\nversions = '<2'",
            "allow[0].versions: unknown key (expected one of project, version)",
        ),
        (
            "[[allow]]\nproject = 'a'\nreason = 'only 1.x'",
            "allow[0].reason: unknown key (expected one of project, version)",
        ),
        (
            "[[retag]]\nproject = '*'\nversoin = '>=3'",
            "retag[0].versoin: unknown key (expected one of project, version)",
        ),
        ("[defaults]\nyanked = ''", "defaults.yanked: expected 'keep' or 'hide', got ''"),
        (
            "[quarantine]\nmin_age = '1d'\nmissing_upload_time = ''",
            "quarantine.missing_upload_time: expected 'keep' or 'hide', got ''",
        ),
        (
            "[defaults]\nprofile = 'glibc=2.28'",
            "defaults.profile: unknown key 'glibc' "
            "(expected one of arch, cuda, glibcxx, impl, isa, libc, python, sm)",
        ),
        (
            "[defaults]\nprofile = 'python=3.11,gpu=none'",
            "defaults.profile: unknown key 'gpu' "
            "(expected one of arch, cuda, glibcxx, impl, isa, libc, python, sm)",
        ),
        (
            "[defaults]\nprofile = ' , '",
            "defaults.profile: empty profile (leave the key out for none)",
        ),
    ],
)
def test_each_mistake_names_file_key_and_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rules({POLICY: text})
    if message.endswith(": "):  # the parser's own words follow
        assert str(caught.value).startswith(f"{POLICY}: {message}")
    else:
        assert str(caught.value) == f"{POLICY}: {message}"


def test_a_setting_made_twice_names_both_files() -> None:
    texts = {
        "rules/a.toml": "[defaults]\nyanked = 'hide'",
        "rules/b.toml": "[defaults]\nyanked = 'keep'",
    }
    with pytest.raises(ConfigError) as caught:
        load_rules(texts)
    assert str(caught.value) == "rules/b.toml: defaults.yanked: already set in rules/a.toml"
    texts = {
        "rules/a.toml": "[quarantine]\nmin_age = '1d'",
        "rules/b.toml": "[quarantine]\nmin_age = '2d'",
    }
    with pytest.raises(
        ConfigError, match=r"^rules/b.toml: quarantine: already set in rules/a.toml$"
    ):
        load_rules(texts)


def test_digest_follows_content_not_location() -> None:
    a = load_rules({"/etc/hostfit/rules/p.toml": FULL})
    b = load_rules({"rules/p.toml": FULL})
    c = load_rules({"rules/p.toml": FULL.replace("2.5d", "3d")})
    assert a.digest == b.digest != c.digest
    assert len(a.digest) == 64


def test_shipped_knowledge_loads_and_cites_its_sources() -> None:
    rules = load_rules(shipped_texts())
    assert rules.facts and all(f.shipped and f.source.strip() for f in rules.facts)
    assert {f.match.project for f in rules.facts} >= {"tensorflow", "cupy-cuda12x"}
    without_driver = {f.match.project for f in rules.facts if f.runs_without_driver}
    assert {"torch", "torchvision", "torchaudio", "nvidia-cuda-runtime-cu12"} <= without_driver
    assert not any(f.requires.cuda_major for f in rules.facts if f.runs_without_driver)
    assert rules.metadata == ()  # fixes rewrite wheels: off unless asked for
    enabled = load_rules({**shipped_texts(), POLICY: "[knowledge]\nmetadata_fixes = true"})
    assert enabled.metadata and all(m.shipped and m.source for m in enabled.metadata)
    off = load_rules({**shipped_texts(), POLICY: "[knowledge]\nfacts = false"})
    assert off.facts == ()


def test_the_example_rules_in_the_repository_are_valid_and_neutral() -> None:
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in sorted(ROOT.glob("rules/*.toml"))}
    assert texts, "rules/ ships example files"
    rules = load_rules(texts)
    assert not rules.filters and not rules.retag and not rules.metadata and not rules.facts
    assert rules.default_profile is None
