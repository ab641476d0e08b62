"""CUDA build families: for each version, the one build a host is offered.

A project such as PyTorch is built several times per version, once per CUDA toolkit and
once for the CPU, told apart by local versions (``2.7.0+cu126``, ``2.7.0+cu128``,
``2.7.0+cpu``) and usually published as one index per build. A *family* of upstreams
merges those indexes into one page (`proxy.edge.layers.family`); a page that lists
several builds itself is treated the same way. For a host, per version, a CUDA build
is judged by its toolkit (the label's major.minor) against the CUDA version the host's
driver supports (`proxy.core.cuda`, from NVIDIA's tables), and by its GPU code, read
from its wheels' fat binaries, against the host's GPUs (`proxy.core.gpu`):

- Toolkit not newer than the driver's CUDA: the build runs if its GPU code runs on
  *every* host GPU, from SASS for the GPU's architecture or from PTX the driver
  JIT-compiles (PTX from an older toolkit is fine).
- Toolkit of the driver's major but a newer minor (``+cu128`` on a 12.4 driver): it
  runs only under minor version compatibility (CUDA 11 and later, with the driver past
  the major's floor), where the driver refuses PTX from the newer toolkit. So it counts
  only when its SASS runs on every host GPU, which needs the GPUs known (``sm``) and
  analysed wheels; PTX does not help. The report does not say which toolkit wrote the
  PTX: the label stands for it.
- Another major, a newer minor before CUDA 11, or a host whose CUDA version cannot show
  its driver past the floor (``cuda=11.0``): never chosen.
- Ranking: builds for a CUDA the driver supports, newest first; then builds needing
  minor version compatibility, nearest the driver first; then the CPU build. A build
  that needs the compatibility mode is a fallback even when newer: that mode runs with a
  limited feature set (an API the newer toolkit brought may need the newer driver and
  fail with cudaErrorCallRequiresNewerDriver; PTX made at run time, by NVRTC, meets the
  same limit), which the analysis cannot see in a wheel. For the same
  reason, the least newer of them is taken. It still beats the CPU build: NVIDIA
  documents that it runs, and the GPU is why the host asked for a CUDA build.
- A host without an NVIDIA driver (``cuda=none``) gets the CPU build.
- A host whose CUDA version is unknown gets the family's default build: the first one
  in the configuration's order, which is the operator's choice. hostfit does not guess
  a driver; serving every build would let the installer take the highest local version
  (``+cu128`` sorts above ``+cpu``) whatever the host. A page that is no family, whose
  builds have no configured order, is left whole for such a host.
- A host whose GPUs are unknown (no ``sm``) is chosen for by CUDA version alone, among
  builds the driver supports; a newer-minor build cannot be shown to avoid PTX JIT and
  is not offered (explain says so).
- A build whose GPU code is not analysed yet is chosen for now: its wheels are then
  the ones the frontier walk analyses, and once a report shows the code misses the
  host's GPUs, the next build is tried.

Builds of one version that are not chosen are hidden with a ``build`` reason; the
universal view, which no host filters, keeps them all. The download gate asks less
(`proxy.core.decide`: a pinned build is refused only for what would not load). Pure:
no I/O, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from packaging.version import Version

from proxy.core.cuda import CPU as CPU
from proxy.core.cuda import Build, CudaDriverTable, ToolkitSupport, cuda_table
from proxy.core.cuda import parse_build as parse_build
from proxy.core.decide import Reason, Verdict
from proxy.core.dotted import dotted
from proxy.core.gpu import Gpu, describe, gpus_text, runs_on
from proxy.core.models import File
from proxy.core.profile import HostProfile
from proxy.core.report import Report
from proxy.core.versions import file_version


@dataclass(frozen=True, slots=True)
class Family:
    """What a page merged from a family of upstreams knows of its builds."""

    name: str
    order: tuple[str, ...]  # build labels in the configuration's order: the first is the default
    # Build labels of files whose versions carry none (an upstream's configured ``build``).
    labels: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # filename -> its upstream


Status = Literal["chosen", "set aside", "not offered"]


@dataclass(frozen=True, slots=True)
class BuildChoice:
    """One build of one version, and why it was or was not chosen, for explanations."""

    version: str
    build: str
    cuda: str | None  # "12.6"; None for the CPU build
    status: Status
    why: str
    files: tuple[str, ...]
    sources: tuple[str, ...] = ()  # the upstreams its files came from
    pending: bool = False  # chosen before its GPU code was analysed


@dataclass(frozen=True, slots=True)
class Chosen:
    verdicts: dict[str, Verdict]
    builds: tuple[BuildChoice, ...]


def build_label(filename: str, family: Family | None) -> str | None:
    """A file's build: its local version when that names one, else its upstream's."""
    version = file_version(filename)
    if version is not None and version.local is not None and parse_build(version.local):
        return version.local
    if family is not None:
        return family.labels.get(filename)
    return None


def choose_builds(
    files: Iterable[File],
    verdicts: Mapping[str, Verdict],
    profile: HostProfile,
    *,
    reports: Mapping[str, Report],
    unreported: Collection[str] = frozenset(),
    family: Family | None = None,
    drivers: CudaDriverTable | None = None,
    without_driver: Collection[str] = frozenset(),
) -> Chosen:
    """Verdicts with every version's builds but the chosen one hidden, and each build's
    story. ``reports``: by sha256; ``unreported``: filenames whose report is awaited;
    ``drivers``: the CUDA driver table (the shipped one unless given);
    ``without_driver``: filenames a project fact says run on the CPU without a driver
    (`proxy.core.decide.runs_without_driver`), one of which a host with no driver gets
    where a version has no CPU build."""
    result = dict(verdicts)
    groups: dict[Version, dict[str, list[File]]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        version = file_version(f.filename) if f.is_wheel else None
        label = build_label(f.filename, family) if version is not None else None
        if version is not None and label is not None:
            groups[Version(version.public)][label].append(f)
    choices: list[BuildChoice] = []
    for public, by_label in groups.items():
        offered = {
            label: [f for f in members if result[f.filename].keep]
            for label, members in by_label.items()
        }
        if family is None and (profile.cuda is None or sum(1 for m in offered.values() if m) < 2):
            continue  # not a family: only a real choice between builds, for a known driver
        judged = _judge(
            offered, profile, reports, unreported, family, drivers or cuda_table(), without_driver
        )
        for label, members in by_label.items():
            build = parse_build(label)
            kept = offered[label]
            status: Status
            if not kept:
                first = verdicts[members[0].filename].reasons
                status = "not offered"
                why = "hidden by its own checks" + (f": {first[0].message}" if first else "")
            elif label == judged.chosen:
                status, why = "chosen", judged.why[label]
            else:
                status, why = "set aside", judged.why[label]
                served = f"+{judged.chosen}" if judged.chosen else "no build"
                message = (
                    f"build: {public}+{label} set aside ({why}); {public} is served as {served}"
                )
                for f in kept:
                    _add(result, f.filename, Reason("build", message))
            choices.append(
                BuildChoice(
                    version=str(public),
                    build=label,
                    cuda=None if build is None or build.cuda is None else dotted(build.cuda),
                    status=status,
                    why=why,
                    files=tuple(f.filename for f in members),
                    sources=_sources(members, family),
                    pending=status == "chosen" and judged.pending,
                )
            )
    return Chosen(result, tuple(choices))


@dataclass
class _Judged:
    chosen: str | None = None
    why: dict[str, str] = field(default_factory=dict)
    pending: bool = False


def _without_driver(
    judged: _Judged,
    offered: Mapping[str, Sequence[File]],
    labels: Sequence[str],
    family: Family | None,
    without_driver: Collection[str],
) -> _Judged:
    """The CPU build; where there is none, a build whose project says its CUDA builds run
    on the CPU without a driver (the first in the family's order)."""
    able = [label for label in labels if all(f.filename in without_driver for f in offered[label])]
    order = family.order if family is not None else ()
    fallback = next((label for label in order if label in able), able[0] if able else None)
    judged.chosen = CPU if CPU in labels else fallback
    for label in labels:
        if label == CPU:
            judged.why[label] = "CPU build, for a host without an NVIDIA driver"
        elif label == judged.chosen:
            judged.why[label] = (
                "no CPU build, and the project's CUDA builds run on the CPU without a driver"
                " (a project fact): the first of them in the configuration"
            )
        else:
            judged.why[label] = "the host has no NVIDIA driver (cuda=none)"
    return judged


def _judge(
    offered: Mapping[str, Sequence[File]],
    profile: HostProfile,
    reports: Mapping[str, Report],
    unreported: Collection[str],
    family: Family | None,
    drivers: CudaDriverTable,
    without_driver: Collection[str],
) -> _Judged:
    judged = _Judged()
    labels = [label for label, kept in offered.items() if kept]
    if profile.cuda is None:
        order = family.order if family is not None else ()
        default = next((label for label in order if label in labels), labels[0] if labels else None)
        judged.chosen = default
        for label in labels:
            judged.why[label] = (
                "the host did not tell its CUDA version (cuda=), so the family's default"
                f" build is served: +{default}, the first in the configuration"
            )
        return judged
    host = profile.cuda.value
    if host is None:
        return _without_driver(judged, offered, labels, family, without_driver)
    builds = {label: b for label in labels if (b := parse_build(label)) is not None}
    native: list[tuple[Build, ToolkitSupport]] = []
    minor: list[tuple[Build, ToolkitSupport]] = []
    for b in builds.values():
        if b.cuda is None:
            continue
        support = drivers.support(b.cuda, host)
        if support.how == "native":
            native.append((b, support))
        elif support.how == "minor":
            minor.append((b, support))
        else:
            judged.why[b.label] = support.why
    # Builds the driver supports, newest first; then those needing minor version
    # compatibility, nearest the driver first: each minor past it adds APIs that fail there.
    native.sort(key=lambda c: c[0].cuda or (0, 0), reverse=True)
    minor.sort(key=lambda c: c[0].cuda or (0, 0))
    sms = profile.sms.value if profile.sms is not None else None
    for b, support in [*native, *minor]:
        jit = support.how == "native"
        fit, text = _gpu_fit(offered[b.label], reports, unreported, sms, jit=jit)
        if fit == "misses":
            judged.why[b.label] = (
                text if jit else f"needs minor version compatibility ({support.why}): {text}"
            )
            continue
        if judged.chosen is None:
            judged.chosen, judged.pending = b.label, fit == "pending"
            judged.why[b.label] = (
                f"newest build for a CUDA the driver supports ({support.why}); {text}"
                if jit
                else "no build for a CUDA the driver supports runs here; this one runs under"
                f" minor version compatibility ({support.why}): {text}"
            )
        elif jit:
            judged.why[b.label] = f"a newer build, +{judged.chosen}, is chosen"
        elif judged.chosen in (c.label for c, _ in native):
            judged.why[b.label] = (
                f"needs minor version compatibility ({support.why});"
                f" +{judged.chosen}, built for a CUDA the driver supports, is preferred"
            )
        else:
            judged.why[b.label] = (
                f"needs minor version compatibility ({support.why});"
                f" +{judged.chosen}, nearer the driver's CUDA, is chosen"
            )
    if CPU in builds:
        if judged.chosen is None:
            judged.chosen = CPU
            judged.why[CPU] = "CPU build: no CUDA build of this version runs on this host"
        else:
            judged.why[CPU] = f"a CUDA build, +{judged.chosen}, runs on this host"
    return judged


Fit = Literal["fits", "misses", "pending"]


def _gpu_fit(
    files: Sequence[File],
    reports: Mapping[str, Report],
    unreported: Collection[str],
    sms: Sequence[Gpu] | None,
    *,
    jit: bool,
) -> tuple[Fit, str]:
    """Whether the build's GPU code runs on every GPU of the host. ``jit``: whether the
    driver may JIT-compile its PTX; without, only SASS counts, and must be shown to run."""
    if sms is None:
        if not jit:
            return "misses", (
                "only SASS runs there, and the host did not tell its GPUs (sm=),"
                " so none is shown to run it without PTX JIT"
            )
        return "fits", "the host did not tell its GPUs (sm=): GPU code not checked"
    if any(f.filename in unreported for f in files):
        return "pending", "its GPU code is not analysed yet: offered meanwhile"
    described = []
    for f in files:
        report = reports.get(f.sha256 or "")
        if report is None or report.status != "ok":
            continue
        sass, ptx = report.requires.gpu_sms or (), report.requires.gpu_ptx or ()
        if not sass and not ptx:
            continue
        code = describe(sass, ptx)
        if jit:
            missed = [gpu for gpu in sms if runs_on(sass, ptx, gpu) is False]
        else:
            # PTX from a newer toolkit is refused by the driver; an unreadable SASS target
            # cannot show that it runs.
            missed = [gpu for gpu in sms if runs_on(sass, (), gpu) is not True]
        if missed:
            if jit:
                return "misses", (
                    f"its GPU code ({code}) does not run on the host's {gpus_text(missed)}"
                )
            return "misses", (
                f"only SASS runs there (the driver cannot JIT PTX from a newer toolkit), and"
                f" its GPU code ({code}) has none for the host's {gpus_text(missed)}"
            )
        described.append(code)
    if not described:
        return "fits", "no GPU code of its own to check"
    how = "runs" if jit else "runs from SASS"
    return "fits", f"its GPU code ({described[0]}) {how} on the host's {gpus_text(sms)}"


def _sources(members: Sequence[File], family: Family | None) -> tuple[str, ...]:
    if family is None:
        return ()
    return tuple(dict.fromkeys(s for f in members if (s := family.sources.get(f.filename))))


def _add(verdicts: dict[str, Verdict], filename: str, reason: Reason) -> None:
    verdict = verdicts[filename]
    verdicts[filename] = replace(verdict, reasons=(*verdict.reasons, reason))
