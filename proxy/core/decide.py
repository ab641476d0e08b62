"""The compatibility decision: does this file load on this host?

First the tags (the client's own supported tags, from its declared profile), then
each fact of the wheel's report against the host fact it needs. Rules of the game:

- A fact the host did not tell never hides a file; neither does a requirement the
  report cannot state precisely (an unparsable version, an unknown GPU target). One
  exception: a Linux host (one that told its machine) that did not tell its libc, as pip
  on Alpine tells none, installs a wheel tagged only ``musllinux_1_2`` on musl 1.2 or
  newer and one tagged only ``manylinux`` on glibc, and nowhere else; the checks of a
  libc's loader take that libc as the host's for that wheel, and their reasons say so
  (``Reason.assumed``): such a wheel was never another host's to install, so hiding it
  does not count as "no wheel of this version fits" (`proxy.core.select`).
- No report: tags only. An unanalysable one (bytes the analyser could not read: a zip
  feature wheels do not use, a binary cut short or lying in its headers, a limit, a
  crash) vouches for nothing, and hides the wheel from a host that told anything.
- libgcc_s's ``GCC_x`` versions are judged against the GCC the host's libstdc++ comes
  from (``glibcxx``, through `proxy.core.libstdcxx`), and hidden only where no release
  that libstdc++ may come from has them; a host that told only its glibc is not judged.
- Every reason that applies is given, so ``hostfit explain`` can show them all.
- CUDA: majors are compared (the report knows the runtime's major, ``libcudart.so.N``);
  ``cuda=none`` hides every wheel that needs a CUDA major, but those of a project whose
  CUDA builds load and run on the CPU when there is no driver (a project fact,
  ``runs_without_driver``: torch's builds on the public index are CUDA builds, and a
  CPU-only host would otherwise be offered no torch at all). A driver too old for the
  major still hides them: that host has a GPU, and an older build that fits it is the
  one it wants.
- GPUs: hidden only when no host GPU can run any of the wheel's kernels, by CUDA's
  binary compatibility rules (`proxy.core.gpu`).
- A CUDA wheel whose build label (``+cu128``, or ``build`` given by the caller) names a
  newer minor of the host's CUDA major runs only under minor version compatibility
  (`proxy.core.cuda`), where the driver cannot JIT-compile the newer toolkit's PTX:
  hidden when the host's GPUs would run it only through its PTX (its SASS is for none
  of them), or when it has PTX and no SASS (whatever the GPU), or when its major has no
  minor version compatibility
  (before CUDA 11). The report does not say which toolkit wrote the PTX, so the label
  stands for it; a wheel without one is judged by majors alone. A host whose CUDA
  version cannot show its driver past the major's floor (``cuda=11.0``) is judged the
  same for PTX, which it cannot run either way, and not hidden for the floor alone.
- The build chooser (`proxy.core.families`) asks more of a newer-minor build: SASS for
  *every* host GPU, and known GPUs. Here, as for ``sm``, one GPU that runs it is enough:
  this decides what would not load, for a pinned build too.
- Extension modules: a Linux wheel whose tags fit but whose modules all name interpreters
  other than the host's (``cpython-38`` under an ``abi3`` tag for Python 3.11, ``abi3``
  for PyPy) is hidden: the import finds none of them. Build flags (``m``, ``t``, ``d``)
  are not weighed; which wheels are judged at all is `proxy.core.aggregate`'s to say.
- Project facts (``rules``: `proxy.core.rules.Fact` entries, e.g. "needs AVX") are
  checked like report facts, whether or not the wheel was analysed; a fact that
  hides a file gives a ``rule`` reason naming the fact's file and entry.
- ``Verdict.consulted`` names the profile keys the decision read (known or not), so
  callers can key caches by `proxy.core.profile.host_class` of just those.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from string import ascii_lowercase
from typing import Literal

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from proxy.core.cuda import Build, CudaDriverTable, cuda_table, parse_build
from proxy.core.dotted import dotted, maybe_dotted
from proxy.core.gpu import runs_on
from proxy.core.libstdcxx import LibstdcxxTable, first_gcc_with, libstdcxx_table
from proxy.core.models import File
from proxy.core.policy import policy_table
from proxy.core.profile import MACHINE_ALIASES, HostProfile, Libc
from proxy.core.report import Report, Requires
from proxy.core.rules import Fact
from proxy.core.tags import ClientTags, client_tags
from proxy.core.variants import split_label
from proxy.core.versions import file_version, wheel_tags

ReasonKind = Literal[
    "tags", "libc", "glibc", "glibcxx", "cxxabi", "gcc", "execstack", "cuda", "sm", "isa",
    "variant", "build", "sdist", "rule", "native", "origin", "unanalysable",
]  # fmt: skip
# Reasons that mean "this wheel would not load there", or that nothing can say it would:
# the download gate refuses on these. Tags, variant and build choices and orphan sdists
# are the installer's own business.
LOAD_KINDS = frozenset(
    {"libc", "glibc", "glibcxx", "cxxabi", "gcc", "execstack", "cuda", "sm", "isa", "rule",
     "native", "unanalysable"}
)  # fmt: skip

# glibc 2.41 stopped making the stack executable for a dlopen()ed object that asks
# for it (PT_GNU_STACK with PF_X): dlopen fails with "cannot enable executable stack".
EXECSTACK_REFUSED_FROM = (2, 41)
# musl 1.1.20 stopped resolving initial-exec TLS relocations to a dlopen()ed library's
# own variables; a profile says musl's minor version only, so 1.2 is the first known.
MUSL_IE_TLS_REFUSED_FROM = (1, 2)
# glibc 2.30 began refusing to dlopen() a position-independent executable (DF_1_PIE), and
# its 2.28 and 2.29 release branches took the change (BZ #24323), which distributions of
# those versions ship: a profile does not say which patch level a host has.
GLIBC_PIE_REFUSED_FROM = (2, 28)
TAG_KEYS = frozenset({"python", "impl", "arch", "libc"})


@dataclass(frozen=True, slots=True)
class Reason:
    kind: ReasonKind
    message: str
    # Rests on the libc the wheel's tags imply, the host having told none: true of every
    # host that installs the wheel, and of no other.
    assumed: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    reasons: tuple[Reason, ...] = ()
    consulted: frozenset[str] = frozenset()
    # Why a wheel is kept where a check alone would hide it (a project fact's word).
    notes: tuple[str, ...] = ()

    @property
    def keep(self) -> bool:
        return not self.reasons

    @property
    def action(self) -> Literal["keep", "hide"]:
        return "keep" if self.keep else "hide"


def hidden_by_kind(verdicts: Mapping[str, Verdict]) -> dict[str, int]:
    """How many files the verdicts hide for each reason kind (a file counts once per kind)."""
    counts: dict[str, int] = {}
    for verdict in verdicts.values():
        for kind in {reason.kind for reason in verdict.reasons}:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def decide(
    file: File,
    report: Report | None,
    profile: HostProfile,
    rules: Sequence[Fact] | None = None,
    *,
    tags: ClientTags | None = None,
    abi_table: LibstdcxxTable | None = None,
    build: str | None = None,
    drivers: CudaDriverTable | None = None,
) -> Verdict:
    """``tags`` saves recomputing `client_tags(profile)` for every file of a page.

    ``rules``: project facts that may apply (those of other projects or versions are
    passed over), typically `Rules.facts_for(project)`. ``build``: the file's build label
    where its version carries none (a family member's configured ``build``).
    """
    reasons: list[Reason] = []
    consulted: set[str] = set()
    notes: list[str] = []
    facts = _facts_for(file.filename, rules) if rules and file.is_wheel else []
    without_driver = any(fact.runs_without_driver for fact in facts)
    tags_fit = True
    if file.is_wheel:
        outcome = _check_tags(file.filename, profile, tags or client_tags(profile))
        if outcome is not _SKIP:
            consulted |= TAG_KEYS
            if outcome is not None:
                reasons.append(outcome)
                tags_fit = False
    if report is not None and report.status == "unanalysable" and file.is_wheel and profile:
        # Its bytes could not be read (a hostile zip, a malformed binary): nothing vouches
        # for them, so a host that said what it is does not get them. (An analysis that
        # did not run is no report at all; the edge keeps those stand-ins from here.)
        reasons.append(Reason("unanalysable", f"unanalysable: {report.reason or 'no reason'}"))
    if report is not None and report.status == "ok":
        context = _Context(
            report.requires,
            profile,
            abi_table or libstdcxx_table(),
            _build(file.filename, build),
            drivers or cuda_table(),
            without_driver,
            tags_fit,
            file.filename,
        )
        for keys, check in _CHECKS:
            outcome = check(context)
            if outcome is not _SKIP:
                consulted.update(keys)
                if outcome is not None:
                    reasons.append(outcome)
        if without_driver:
            notes.extend(_driverless(context, facts))
    if facts:
        abi = abi_table or libstdcxx_table()
        for fact in facts:
            # A fact states a need of its own; the build label is the report's to weigh.
            context = _Context(
                fact.requires, profile, abi, None, drivers or cuda_table(), without_driver
            )
            for keys, check in _CHECKS:
                outcome = check(context)
                if outcome is not _SKIP:
                    consulted.update(keys)
                    if outcome is not None:
                        message = f"rule {fact.where}: {outcome.message} ({fact.note})"
                        reasons.append(Reason("rule", message))
    return Verdict(tuple(reasons), frozenset(consulted), tuple(notes))


def _driverless(c: _Context, facts: Sequence[Fact]) -> list[str]:
    """Why the CUDA check kept what it would have hidden but for the fact."""
    hidden = _cuda(replace(c, runs_without_driver=False))
    if _cuda(c) is not None or not isinstance(hidden, Reason):
        return []  # hidden all the same, or the fact changed nothing
    fact = next(f for f in facts if f.runs_without_driver)
    return [f"{hidden.message}: kept, rule {fact.where} says it runs on the CPU ({fact.note})"]


def runs_without_driver(file: File, rules: Sequence[Fact]) -> bool:
    """Whether a project fact says this wheel's CUDA build runs on the CPU without a driver."""
    return file.is_wheel and any(f.runs_without_driver for f in _facts_for(file.filename, rules))


def _facts_for(filename: str, facts: Sequence[Fact]) -> list[Fact]:
    try:  # a variant wheel (PEP 825) is its project's like any other
        name, version, _, _ = parse_wheel_filename(split_label(filename)[0])
    except InvalidWheelFilename:
        return []
    return [f for f in facts if f.match.covers(name, version)]


class _Skip(enum.Enum):
    """The check does not apply: the wheel needs nothing of that kind."""

    SKIP = enum.auto()


_SKIP = _Skip.SKIP
_Outcome = Reason | None | Literal[_Skip.SKIP]


def _check_tags(filename: str, profile: HostProfile, tags: ClientTags) -> _Outcome:
    tagged = wheel_tags(filename)
    if tagged is None:
        return _SKIP  # pip will not pick it either; not this check's to hide
    if any(tags.supports(t) for t in tagged):
        return None
    tag_text = "-".join(filename.removesuffix(".whl").split("-")[-3:])
    return Reason("tags", f"tags: {tag_text} does not fit {profile.to_string(TAG_KEYS)}")


@dataclass(frozen=True, slots=True)
class _Context:
    requires: Requires
    profile: HostProfile
    abi: LibstdcxxTable
    build: Build | None  # what the file says it was built with, when it is a CUDA build
    drivers: CudaDriverTable
    runs_without_driver: bool = False  # a project fact: its CUDA builds run on the CPU
    # False where the wheel's tags do not fit the host: the installer's own check, not
    # one of loading, so what follows from them alone is not judged again.
    tags_fit: bool = True
    filename: str = ""  # the wheel's, whose tags `installing_libc` may read

    def host_libc(self) -> Libc | None:
        return self.profile.libc.value if self.profile.libc is not None else None

    def installing_libc(self) -> Libc | None:
        """The host's libc as it told it, else, for a Linux host (one that told its
        machine: hostfit takes none from a macOS or Windows client), as the wheel's tags
        imply it: pip and uv install a wheel tagged only ``musllinux_1_2`` on musl 1.2 or
        newer and nowhere else, one tagged only ``manylinux`` on glibc alone (pip on
        musl tells no libc: these are the checks it still gets)."""
        told = self.host_libc()
        if told is not None or self.profile.arch is None:
            return told
        return tagged_libc(self.filename)  # read only here: most hosts tell their libc

    def reason(self, kind: ReasonKind, message: str) -> Reason:
        """A reason of a check that read `installing_libc`: assumed where the host told
        no libc."""
        return Reason(kind, message, assumed=self.host_libc() is None)


def tagged_libc(filename: str) -> Libc | None:
    """The libc family and oldest version every platform tag of the wheel claims (all
    manylinux, or all musllinux); None where a tag claims none (``linux_x86_64``,
    ``any``) or they disagree."""
    tags = wheel_tags(filename) if filename.endswith(".whl") else None
    claims = [policy_table().claim(tag.platform) for tag in tags or ()]
    if not claims or None in claims:
        return None
    families = {claim[0] for claim in claims if claim is not None}
    if len(families) != 1:
        return None
    oldest = min(claim[1] for claim in claims if claim is not None)
    return Libc("musl" if families == {"musllinux"} else "glibc", oldest)


def _libc(c: _Context) -> _Outcome:
    """Binaries linked against one libc on a host with the other. A host that told no
    libc is judged by the libc the wheel's tags admit (`_Context.installing_libc`): a
    wheel tagged only ``musllinux`` whose binaries link glibc installs on musl alone,
    and fails to import there."""
    needs = c.requires.libc or ("glibc" if c.requires.glibc else None)
    if needs is None:
        return _SKIP
    host = c.installing_libc()
    if host is None or host.family == needs:
        return None
    if c.host_libc() is None:
        return c.reason("libc", f"libc: needs {needs}; its tags admit {host.family} only")
    return Reason("libc", f"libc: needs {needs}, host has {_libc_text(host)}")


def _glibc(c: _Context) -> _Outcome:
    if c.requires.glibc is None:
        return _SKIP
    need, host = maybe_dotted(c.requires.glibc), c.host_libc()
    if need is None or host is None or host.family != "glibc" or host.version >= need:
        return None  # a musl host is the libc check's to report
    if c.requires.glibc_unknown:
        # The need comes from names no table dates: say which, not only the bound.
        return Reason(
            "glibc",
            f"glibc: needs {', '.join(c.requires.glibc_unknown)}, which no glibc release"
            f" known here defines (so {c.requires.glibc} or newer), host has"
            f" {dotted(host.version)}",
        )
    return Reason("glibc", f"glibc: needs {c.requires.glibc}, host has {dotted(host.version)}")


def _glibcxx(c: _Context) -> _Outcome:
    if c.requires.glibcxx is None:
        return _SKIP
    need, host = maybe_dotted(c.requires.glibcxx), c.profile.glibcxx
    if need is None or host is None or host.value >= need:
        return None
    return Reason("glibcxx", f"glibcxx: needs {c.requires.glibcxx}, host has {dotted(host.value)}")


def _cxxabi(c: _Context) -> _Outcome:
    if c.requires.cxxabi is None:
        return _SKIP
    need, host = maybe_dotted(c.requires.cxxabi), c.profile.glibcxx
    if need is None or host is None:
        return None
    provided = c.abi.cxxabi_for(host.value)
    if provided is None:
        return None
    cxxabi, exact = provided
    if need <= cxxabi or not exact:
        return None
    return Reason(
        "cxxabi",
        f"cxxabi: needs {c.requires.cxxabi}, host has {dotted(cxxabi)}"
        f" (libstdc++ with GLIBCXX {dotted(host.value)})",
    )


def _gcc(c: _Context) -> _Outcome:
    """libgcc_s's ``GCC_x`` versions, against the GCC the host's libstdc++ comes from.

    Only a known ``glibcxx`` tells that GCC, and only as "older than the first release
    with a newer GLIBCXX". The glibc alone does not: the manylinux policies' GCC
    ceilings are what every host of a policy has at least, never the most a host of
    that glibc may have (a newer GCC's runtime is often installed beside the system's).
    """
    if c.requires.gcc is None:
        return _SKIP
    need, host = maybe_dotted(c.requires.gcc), c.profile.glibcxx
    if need is None or host is None:
        return None
    before = c.abi.gcc_before(host.value)
    first = first_gcc_with(need)
    if before is None or _padded(first) < _padded(before):
        return None  # a GCC the host's libstdc++ may come from has it
    return Reason(
        "gcc",
        f"gcc: needs GCC_{c.requires.gcc} (libgcc_s of GCC {dotted(first)} or newer),"
        f" host's is of a GCC older than {dotted(before)}"
        f" (libstdc++ with GLIBCXX {dotted(host.value)})",
    )


def _padded(version: tuple[int, ...]) -> tuple[int, ...]:
    """Compared as GCC spells releases: 4.8 is 4.8.0, not older than it."""
    return version + (0,) * (3 - len(version))


def _execstack(c: _Context) -> _Outcome:
    if not c.requires.execstack:
        return _SKIP
    host = c.host_libc()
    if host is None or host.family != "glibc" or host.version < EXECSTACK_REFUSED_FROM:
        return None
    return Reason(
        "execstack",
        "execstack: needs an executable stack, which glibc 2.41 and newer refuse"
        f" (host has {dotted(host.version)})",
    )


def _cuda(c: _Context) -> _Outcome:
    need = c.requires.cuda_major
    if need is None and not c.requires.nvidia_driver:
        return _SKIP
    host = c.profile.cuda
    if host is None:
        return None
    if host.value is None:
        if c.runs_without_driver:
            return None
        if need is None:
            return Reason("cuda", "cuda: loads libcuda.so.1, host has no NVIDIA driver")
        return Reason("cuda", f"cuda: needs CUDA {need}, host has no NVIDIA driver")
    if need is None or host.value[0] >= need:
        return None
    return Reason("cuda", f"cuda: needs CUDA {need}, host driver supports {dotted(host.value)}")


def _newer_minor(c: _Context) -> _Outcome:
    build = c.build
    need = c.requires.cuda_major
    sass, ptx = c.requires.gpu_sms or (), c.requires.gpu_ptx or ()
    if build is None or build.cuda is None or (need is None and not sass and not ptx):
        return _SKIP  # no CUDA build, or no CUDA code to run
    toolkit = build.cuda
    if need is not None and need != toolkit[0]:
        return _SKIP  # the label does not describe these binaries; the majors rule judges them
    host = c.profile.cuda.value if c.profile.cuda is not None else None
    if host is None or toolkit[0] != host[0] or toolkit <= host:
        return None  # another major is the majors rule's; the driver's own minors run
    support = c.drivers.support(toolkit, host).how
    built = f"cuda: built with CUDA {dotted(toolkit)} (+{build.label}), host driver supports"
    if support == "newer":
        return Reason(
            "cuda", f"{built} {dotted(host)}; CUDA {host[0]} has no minor version compatibility"
        )
    if not sass and not ptx:
        return None
    # From here "unsure" is judged like "minor": a driver below the floor runs nothing
    # of it, one past it runs only SASS, so code that needs PTX JIT fails either way.
    limit = (
        f"{built} {dotted(host)} (minor version compatibility: PTX from a newer toolkit"
        " is not JIT-compiled)"
    )
    gpus = c.profile.sms.value if c.profile.sms is not None else None
    if gpus is None:
        if sass:
            return None  # its SASS may be for this host's GPUs
        return Reason("cuda", f"{limit}; it has PTX {', '.join(ptx)} and no SASS")
    # A target we cannot read (None) might be the one this host runs.
    if any(runs_on(sass, (), gpu) is not False for gpu in gpus):
        return None
    if not any(runs_on(sass, ptx, gpu) is not False for gpu in gpus):
        return None  # not even through PTX: the sm check says so
    kernels = ", ".join([*sass, *(f"PTX {p}" for p in ptx)])
    hosts = ", ".join(dotted(g) for g in gpus)
    return Reason("cuda", f"{limit}; kernels for {kernels}: host GPUs {hosts} only through PTX")


def _sm(c: _Context) -> _Outcome:
    sass, ptx = c.requires.gpu_sms or (), c.requires.gpu_ptx or ()
    if not sass and not ptx:
        return _SKIP
    host = c.profile.sms
    if host is None:
        return None
    # A target we cannot read (None) might be the one this host runs.
    if any(runs_on(sass, ptx, gpu) is not False for gpu in host.value):
        return None
    kernels = ", ".join([*sass, *(f"PTX {p}" for p in ptx)])
    gpus = ", ".join(dotted(g) for g in host.value)
    return Reason("sm", f"sm: kernels for {kernels}; host GPUs are {gpus}")


def _machine(c: _Context) -> _Outcome:
    machines = c.requires.machines
    if not machines:
        return _SKIP
    host = c.profile.arch
    if host is None:
        return None
    foreign = sorted(m for m in machines if _machine_family(m) != _machine_family(host.value))
    if not foreign:
        return None
    return Reason(
        "native",
        f"native: binaries an import loads are for {', '.join(foreign)}, host is {host.value}",
    )


def _not_elf(c: _Context) -> _Outcome:
    """Members of a Linux wheel an import loads that no loader maps (no ELF file, "invalid
    ELF header"; a relocatable object, "only ET_DYN and ET_EXEC can be loaded"): the
    import fails on every Linux host, and no other host installs the wheel."""
    members = c.requires.not_elf
    if not members:
        return _SKIP
    if c.profile.arch is None:
        return None  # a host that did not tell its machine: not judged, as by _machine
    return Reason(
        "native",
        f"native: an import loads {_some(members)}, which no Linux loader maps (no ELF"
        " shared object): the load fails on every Linux host",
    )


def _some(paths: Sequence[str]) -> str:
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _elf_systems(c: _Context) -> _Outcome:
    """Binaries an import loads built for another system (a FreeBSD module in a Linux
    wheel): glibc's loader refuses them, "ELF file OS ABI invalid". musl's never reads
    the header's system, and loads them."""
    systems = c.requires.elf_systems
    if not systems:
        return _SKIP
    return _glibc_refuses(
        c,
        f"binaries an import loads are built for {', '.join(systems)}: glibc's loader refuses them",
    )


def _executables(c: _Context) -> _Outcome:
    """Executables (ET_EXEC) an import loads, a program renamed as a module or library:
    glibc's loader maps no second program into a process, "cannot dynamically load
    executable". musl's maps some (one with a dynamic section, at a free address): not
    judged."""
    paths = c.requires.executables
    if not paths:
        return _SKIP
    return _glibc_refuses(
        c,
        f"an import loads {_some(paths)}, linked as an executable: glibc's loader loads"
        " no executable beside the program",
    )


def _pie_executables(c: _Context) -> _Outcome:
    """Position-independent executables (DF_1_PIE) an import loads, a program renamed as
    a module or library: glibc's loader refuses them since 2.30 (2.28 and 2.29 on their
    release branches), "cannot dynamically load position-independent executable"; older
    ones and musl's load them."""
    paths = c.requires.pie_executables
    if not paths:
        return _SKIP
    return _glibc_refuses(
        c,
        f"an import loads {_some(paths)}, linked as a position-independent executable:"
        " glibc's loader refuses those (2.28 and newer)",
        since=GLIBC_PIE_REFUSED_FROM,
    )


def _no_dlopen(c: _Context) -> _Outcome:
    """Binaries an import loads that are marked never to be opened by dlopen (DF_1_NOOPEN,
    ``ld -z nodlopen``): an import is a dlopen, and glibc's loader refuses them, "shared
    object cannot be dlopen()ed". musl's does not read the flag."""
    paths = c.requires.no_dlopen
    if not paths:
        return _SKIP
    return _glibc_refuses(
        c,
        f"an import loads {_some(paths)}, marked never to be loaded by dlopen (-z nodlopen):"
        " glibc's loader refuses it",
    )


def _initial_exec_tls(c: _Context) -> _Outcome:
    """Binaries an import loads that reach their own thread-local variables by the
    initial-exec model: musl's loader (since 1.1.20) refuses to resolve those under
    dlopen, "initial-exec TLS resolves to dynamic definition". glibc takes them from its
    static TLS surplus. A musl 1.1 host may be older than 1.1.20: not judged."""
    paths = c.requires.initial_exec_tls
    if not paths:
        return _SKIP
    host = c.installing_libc()
    if host is None or host.family != "musl" or host.version < MUSL_IE_TLS_REFUSED_FROM:
        return None
    told = (
        f"host has musl {dotted(host.version)}"
        if c.host_libc() is not None
        else f"the wheel's tags admit musl {dotted(host.version)} and newer only"
    )
    return c.reason(
        "native",
        f"native: an import loads {_some(paths)} with initial-exec TLS of its own, which"
        f" musl's loader refuses under dlopen ({told})",
    )


def _glibc_refuses(c: _Context, why: str, since: tuple[int, int] | None = None) -> _Outcome:
    """A `native` reason for a glibc host (or a Linux host that told no libc, for a
    wheel only glibc installs), of version ``since`` or newer where given; a musl host,
    or one whose libc is not known so, is not judged (musl's loader maps what these
    reasons are about, or some of it)."""
    host = c.installing_libc()
    if host is None or host.family != "glibc" or (since is not None and host.version < since):
        return None
    return c.reason("native", f"native: {why}")


def _module_abi(c: _Context) -> _Outcome:
    """A Linux wheel whose extension modules are all built for other interpreters: the
    import finds none of them (its tag may say abi3 or py3 all the same, a build that
    went wrong, or a retag)."""
    abis = c.requires.module_abis
    if not abis:
        return _SKIP
    python = c.profile.python
    if python is None or not c.tags_fit:
        return None  # a wheel for another Python: its tags said so (the installer's check)
    impl = c.profile.impl.value if c.profile.impl is not None else None
    if any(_imports(impl, python.value, abi) for abi in abis):
        return None
    named = _IMPL_NAMES.get(impl or "", "Python")
    host = f"{named} {python.value[0]}.{python.value[1]}"
    return Reason(
        "native",
        f"native: its extension modules are built for {', '.join(abis)}, which {host}"
        " does not import",
    )


def _imports(impl: str | None, python: tuple[int, int], abi: str) -> bool:
    """Whether an interpreter imports a module of this tag. Flags after the version
    ("m", "t", "d") are not weighed: a profile does not say how its interpreter was built.
    An implementation untold may be either; one other than CPython and PyPy is not
    judged."""
    if impl not in (None, "cp", "pp"):
        return True
    built_for = _built_for(abi)
    version = f"{python[0]}{python[1]}"
    cpython = (abi == "abi3" and python[0] == 3) or built_for == ("cp", version)
    pypy = built_for == ("pp", version)
    if impl is None:
        return cpython or pypy
    return cpython if impl == "cp" else pypy


_IMPL_NAMES = {"cp": "CPython", "pp": "PyPy"}


def _built_for(abi: str) -> tuple[str, str] | None:
    """("cp", "311") for "cpython-311" (and "cpython-37m"), ("pp", "310") for
    "pypy310-pp73"; None for "abi3"."""
    if abi.startswith("cpython-"):
        return "cp", abi.removeprefix("cpython-").rstrip(ascii_lowercase)
    if abi.startswith("pypy"):
        return "pp", abi.removeprefix("pypy").partition("-")[0]
    return None


def _machine_family(name: str) -> str:
    """One name for the machines a binary may be built for and a host may call itself:
    the kernel says armv6l, armv7l or armv8l for a 32-bit ARM userland, which ELF calls
    EM_ARM; i386 to i686 for 32-bit x86, EM_386."""
    if name in ("i386", "i486", "i586", "i686", "x86"):
        return "i686"
    if name.startswith("arm") and name not in ("arm64", "armv8b"):
        return "armv7l"
    return MACHINE_ALIASES.get(name, name)


def _mixed_libc(c: _Context) -> _Outcome:
    """No host has both libcs: judged for every Linux host, one that told its libc or
    its machine (hostfit takes no machine from a macOS or Windows client)."""
    if not c.requires.mixed_libc:
        return _SKIP
    if c.host_libc() is None and c.profile.arch is None:
        return None
    return Reason(
        "libc", "libc: binaries an import loads link both glibc and musl: no host has both"
    )


def _isa(c: _Context) -> _Outcome:
    need = c.requires.x86_64_level
    if need is None:
        return _SKIP
    host = c.profile.isa
    if host is None or host.value >= need:
        return None
    return Reason("isa", f"isa: needs x86-64-v{need}, host is x86-64-v{host.value}")


# Each check with the profile keys it reads.
_CHECKS: tuple[tuple[tuple[str, ...], Callable[[_Context], _Outcome]], ...] = (
    (("libc",), _libc),
    (("libc",), _glibc),
    (("glibcxx",), _glibcxx),
    (("glibcxx",), _cxxabi),
    (("glibcxx",), _gcc),
    (("libc",), _execstack),
    (("cuda",), _cuda),
    (("cuda",), _newer_minor),
    (("sm",), _sm),
    (("isa",), _isa),
    (("arch",), _machine),
    (("arch",), _not_elf),
    (("libc",), _elf_systems),
    (("libc",), _executables),
    (("libc",), _pie_executables),
    (("libc",), _no_dlopen),
    (("libc",), _initial_exec_tls),
    (("python", "impl"), _module_abi),
    (("libc", "arch"), _mixed_libc),
)


def _build(filename: str, label: str | None) -> Build | None:
    version = file_version(filename)
    local = version.local if version is not None else None
    build = parse_build(local) if local is not None else None
    if build is None and label is not None:
        build = parse_build(label)
    return build if build is not None and build.cuda is not None else None


def _libc_text(libc: Libc) -> str:
    return f"{libc.family} {dotted(libc.version)}"
