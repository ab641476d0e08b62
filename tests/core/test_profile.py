from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.profile import (
    MAX_PROFILE_LENGTH,
    Fact,
    HostProfile,
    Libc,
    host_class,
    merge,
    parse_profile,
)
from proxy.errors import BadRequest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", HostProfile()),
        ("python=3.11", HostProfile(python=Fact((3, 11), "url"))),
        ("python=3.11.7", HostProfile(python=Fact((3, 11), "url"))),
        ("impl=cp", HostProfile(impl=Fact("cp", "url"))),
        ("impl=CPython", HostProfile(impl=Fact("cp", "url"))),
        ("impl=pypy", HostProfile(impl=Fact("pp", "url"))),
        ("impl=graalpy", HostProfile(impl=Fact("graalpy", "url"))),
        ("arch=x86_64", HostProfile(arch=Fact("x86_64", "url"))),
        # Debian's, Docker's and macOS's names: the machine Linux wheels call otherwise.
        ("arch=amd64", HostProfile(arch=Fact("x86_64", "url"))),
        ("arch=arm64", HostProfile(arch=Fact("aarch64", "url"))),
        ("libc=glibc-2.28", HostProfile(libc=Fact(Libc("glibc", (2, 28)), "url"))),
        ("libc=musl-1.2", HostProfile(libc=Fact(Libc("musl", (1, 2)), "url"))),
        ("libc=musl-1.2.3", HostProfile(libc=Fact(Libc("musl", (1, 2)), "url"))),
        ("glibcxx=3.4.25", HostProfile(glibcxx=Fact((3, 4, 25), "url"))),
        ("glibcxx=3.4", HostProfile(glibcxx=Fact((3, 4), "url"))),
        ("cuda=12.4", HostProfile(cuda=Fact((12, 4), "url"))),
        ("cuda=12", HostProfile(cuda=Fact((12, 0), "url"))),
        ("cuda=none", HostProfile(cuda=Fact(None, "url"))),
        ("sm=8.9", HostProfile(sms=Fact(((8, 9),), "url"))),
        ("sm=9.0+8.0+9.0", HostProfile(sms=Fact(((8, 0), (9, 0)), "url"))),
        ("isa=x86-64-v3", HostProfile(isa=Fact(3, "url"))),
        ("isa=x86-64", HostProfile(isa=Fact(1, "url"))),
        # unknown keys are ignored; blanks and stray commas are tolerated
        ("future=whatever,python=3.12", HostProfile(python=Fact((3, 12), "url"))),
        ("future=a,future=b,python=3.12", HostProfile(python=Fact((3, 12), "url"))),
        (" python = 3.12 ,", HostProfile(python=Fact((3, 12), "url"))),
    ],
)
def test_parse(text: str, expected: HostProfile) -> None:
    assert parse_profile(text, "url") == expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("python=3", "python='3'"),
        ("python=three", "python='three'"),
        ("impl=c-python", "impl='c-python'"),
        ("arch=X86_64", "arch='X86_64'"),
        ("arch=x86 64", "arch='x86 64'"),
        ("libc=glibc2.28", "libc='glibc2.28'"),
        ("libc=bionic-1.0", "libc='bionic-1.0'"),
        ("glibcxx=3.4.x", "glibcxx='3.4.x'"),
        ("cuda=twelve", "cuda='twelve'"),
        ("cuda=", "cuda=''"),
        ("sm=89", "sm='89'"),
        ("sm=8.0+", "sm='8.0+'"),
        ("isa=x86-64-v5", "isa='x86-64-v5'"),
        ("python", "'python' is not key=value"),
        ("=3.11", "'=3.11' is not key=value"),
        ("python=3.11,python=3.12", "python given twice"),
        ("x" * 600, "longer than"),
    ],
)
def test_malformed_profile_names_the_bad_part(text: str, named: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_profile(text, "header")
    assert named in str(info.value)
    assert info.value.status_code == 400


def test_unknown_key_with_odd_value_is_still_ignored() -> None:
    assert parse_profile("colour=ultra violet!,arch=aarch64", "url") == HostProfile(
        arch=Fact("aarch64", "url")
    )


def test_canonical_string_is_sorted_and_normalised() -> None:
    a = parse_profile("sm=9.0+8.0,python=3.11.7,libc=glibc-2.28,cuda=12.4", "url")
    b = parse_profile("cuda=12.4 ,libc=glibc-2.28,python=3.11,sm=8.0+9.0", "header")
    assert a.to_string() == b.to_string() == "cuda=12.4,libc=glibc-2.28,python=3.11,sm=8.0+9.0"


def test_canonical_string_round_trips() -> None:
    text = (
        "arch=x86_64,cuda=none,glibcxx=3.4.30,impl=cp,isa=x86-64-v3,"
        "libc=musl-1.2,python=3.13,sm=7.5+8.6"
    )
    profile = parse_profile(text, "url")
    assert profile.to_string() == text
    assert parse_profile(profile.to_string(), "header").to_string() == text


def test_each_fact_remembers_its_source() -> None:
    profile = merge(
        parse_profile("libc=glibc-2.28", "url"),
        parse_profile("libc=glibc-2.17,cuda=12.4", "header"),
        parse_profile("python=3.12", "user_data"),
        parse_profile("python=3.11,arch=x86_64,cuda=11.8", "user-agent"),
        parse_profile("isa=x86-64-v2,arch=aarch64", "default"),
    )
    assert profile.to_string() == (
        "arch=x86_64,cuda=12.4,isa=x86-64-v2,libc=glibc-2.28,python=3.12"
    )
    assert profile.sources() == {
        "arch": "user-agent",
        "cuda": "header",
        "isa": "default",
        "libc": "url",
        "python": "user_data",
    }


def test_merge_of_nothing_is_empty() -> None:
    assert merge() == HostProfile()
    assert not merge(HostProfile(), HostProfile())
    assert merge(HostProfile(), parse_profile("arch=x86_64", "url"))


def test_cuda_none_is_a_fact_not_an_absence() -> None:
    said_none = merge(parse_profile("cuda=none", "url"), parse_profile("cuda=12.4", "default"))
    assert said_none.cuda == Fact(None, "url")
    assert said_none.to_string() == "cuda=none"


def test_host_class_keeps_only_the_facts_asked_for() -> None:
    a = parse_profile("python=3.11,libc=glibc-2.28,cuda=12.4,sm=8.9", "url")
    b = parse_profile("python=3.11,libc=glibc-2.28,cuda=11.8", "header")
    assert host_class(a, {"python", "libc"}) == host_class(b, {"python", "libc"})
    assert host_class(a, {"python", "libc"}) == "libc=glibc-2.28,python=3.11"
    assert host_class(a, {"cuda"}) != host_class(b, {"cuda"})
    assert host_class(a, ()) == ""
    assert host_class(a) == a.to_string()


_versions = st.tuples(st.integers(0, 9999), st.integers(0, 9999))
_profiles = st.builds(
    HostProfile,
    python=st.none() | st.builds(Fact, _versions, st.just("url")),
    impl=st.none() | st.builds(Fact, st.sampled_from(["cp", "pp", "graalpy"]), st.just("url")),
    arch=st.none()
    | st.builds(Fact, st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True), st.just("url")),
    libc=st.none()
    | st.builds(
        Fact, st.builds(Libc, st.sampled_from(["glibc", "musl"]), _versions), st.just("url")
    ),
    glibcxx=st.none()
    | st.builds(
        Fact, st.lists(st.integers(0, 9999), min_size=1, max_size=4).map(tuple), st.just("url")
    ),
    cuda=st.none() | st.builds(Fact, st.none() | _versions, st.just("url")),
    sms=st.none()
    | st.builds(
        Fact, st.lists(_versions, min_size=1, unique=True).map(sorted).map(tuple), st.just("url")
    ),
    isa=st.none() | st.builds(Fact, st.integers(1, 4), st.just("url")),
)


@given(_profiles)
def test_any_profile_survives_its_string(profile: HostProfile) -> None:
    text = profile.to_string()
    if len(text) <= MAX_PROFILE_LENGTH:
        assert parse_profile(text, "url") == profile


def test_a_profile_hashes_and_compares_by_its_facts_alone() -> None:
    one = parse_profile("libc=glibc-2.17,python=3.11,sm=8.0", "url")
    other = merge(
        parse_profile("python=3.11", "url"), parse_profile("libc=glibc-2.17,sm=8.0", "url")
    )
    copied = pickle.loads(pickle.dumps(one))
    assert one == other == copied
    assert hash(one) == hash(other) == hash(copied)
    assert len({one, other, copied}) == 1
    assert one != parse_profile("libc=glibc-2.17,python=3.11,sm=8.0", "header")  # sources count
    assert bool(one) and not bool(HostProfile()) and not bool(merge(HostProfile()))
    assert "_hash" not in repr(one)
