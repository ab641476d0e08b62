"""One wheel's stored report, readable: what it needs, member by member, and who it was refused.

The report is keyed by the wheel's sha256 and never changes (`proxy.core.report`).
Reports stored before they carried a time stamp say so instead of when they were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename

from proxy.core.report import ElfFile, Report, Requires
from proxy.core.variants import parse_variant_wheel_filename
from proxy.ui.base import (
    codes,
    document,
    e,
    explain_json_url,
    facts,
    profile_form,
    project_url,
    table,
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A host class recently refused this wheel (hidden for a reason of loading)."""

    profile: str
    reasons: tuple[str, ...]


def render_wheel(report: Report, *, project: str | None, refusals: Sequence[Refusal] = ()) -> str:
    parts = [
        _summary(report, project),
        _tags(report),
        _requires(report.requires),
        _gpu(report),
        _libraries(report),
        _members(report.elf_files),
        _natives(report),
    ]
    if project is not None:
        parts.append(_refusals(project, refusals))
    return document(f"hostfit: {report.filename}", "".join(parts), heading=report.filename)


def _summary(report: Report, project: str | None) -> str:
    status = e(report.status)
    if report.reason:
        status += f": {e(report.reason)}"
    pairs = [("sha256", f"<code>{e(report.sha256)}</code>")]
    if project is not None:
        pairs.append(("project", f'<a href="{e(project_url(project))}">{e(project)}</a>'))
    pairs += [
        ("analysis", status),
        ("analyzer version", e(report.analyzer_version)),
        (
            "made",
            e(report.made_at)
            if report.made_at
            else '<span class="muted">not recorded (made before reports carried a time)</span>',
        ),
    ]
    return (
        f'<section aria-labelledby="summary"><h2 id="summary">Report</h2>{facts(pairs)}</section>'
    )


def _tags(report: Report) -> str:
    try:
        # A variant wheel's label (PEP 825) follows its tags: read past it.
        tags = sorted(str(t) for t in parse_variant_wheel_filename(report.filename)[3])
    except InvalidWheelFilename:
        tags = []
    platforms = sorted({t.rsplit("-", 1)[-1] for t in tags})
    derived = report.derived_platform_tag
    if report.overclaims:
        claim = (
            "<strong>yes</strong>: the wheel's own platform tag promises more than its"
            " binaries allow; hostfit decides by what the binaries need"
        )
    elif derived is None:
        claim = '<span class="muted">cannot tell: no platform tag derived</span>'
    else:
        claim = "no"
    pairs = [
        ("tags in the filename", codes(tags)),
        ("platform tags claimed", codes(platforms)),
        ("platform tag its binaries allow", codes([derived] if derived else [], empty="none")),
        ("over-claims", claim),
    ]
    return f'<section aria-labelledby="tags"><h2 id="tags">Tags</h2>{facts(pairs)}</section>'


def _requires(requires: Requires) -> str:
    def version(value: object) -> str:
        return '<span class="muted">nothing</span>' if value is None else f"<code>{e(value)}</code>"

    level = requires.x86_64_level
    rows = [
        ("C library", version(requires.libc)),
        ("glibc", version(requires.glibc)),
        ("GLIBCXX (libstdc++)", version(requires.glibcxx)),
        ("CXXABI", version(requires.cxxabi)),
        ("GCC runtime (libgcc_s)", version(requires.gcc)),
        ("CUDA major", version(requires.cuda_major)),
        ("NVIDIA driver", version("libcuda.so.1" if requires.nvidia_driver else None)),
        ("GPU architectures (SASS)", _list_or_nothing(requires.gpu_sms)),
        ("PTX", _list_or_nothing(requires.gpu_ptx)),
        ("x86-64 level", version(None if level is None else f"x86-64-v{level}")),
        ("executable stack", "yes" if requires.execstack else "no"),
    ]
    return (
        '<section aria-labelledby="requires"><h2 id="requires">What it needs from the host</h2>'
        + table(("need", "version"), [(e(k), v) for k, v in rows])
        + "</section>"
    )


def _list_or_nothing(values: Sequence[str] | None) -> str:
    if values is None:
        return '<span class="muted">nothing</span>'
    return codes(values)


def _gpu(report: Report) -> str:
    rows = [
        (f"<code>{e(elf.path)}</code>", codes(elf.gpu_sms), codes(elf.gpu_ptx))
        for elf in report.elf_files
        if elf.gpu_sms or elf.gpu_ptx
    ]
    cuda = report.requires.cuda_major
    intro = (
        f"<p>Its CUDA code needs a driver for CUDA <strong>{e(cuda)}</strong> (or newer).</p>"
        if cuda is not None
        else "<p>Needs no CUDA runtime.</p>"
    )
    members = (
        table(("member", "kernels for (SASS)", "PTX"), rows)
        if rows
        else "<p>No member carries GPU code.</p>"
    )
    return (
        f'<section aria-labelledby="gpu"><h2 id="gpu">CUDA and GPUs</h2>{intro}{members}</section>'
    )


def _libraries(report: Report) -> str:
    return (
        '<section aria-labelledby="libs"><h2 id="libs">Libraries</h2>'
        + facts(
            [
                ("bundled in the wheel", codes(report.bundled_libraries)),
                ("expected on the host", codes(report.external_libraries)),
            ]
        )
        + "</section>"
    )


def _members(elves: Sequence[ElfFile]) -> str:
    if not elves:
        return (
            '<section aria-labelledby="elf"><h2 id="elf">ELF members</h2>'
            "<p>None: no ELF binary in this wheel.</p></section>"
        )
    out = [f'<section aria-labelledby="elf"><h2 id="elf">ELF members ({len(elves)})</h2>']
    for elf in elves:
        needs = [
            f"<code>{e(lib)}</code>: {codes(versions)}"
            for lib, versions in sorted(elf.version_needs.items())
        ]
        level = elf.x86_isa_needed
        pairs = [
            ("machine", f"<code>{e(elf.machine)}</code> ({e(elf.elf_class)}-bit)"),
            ("soname", codes([elf.soname] if elf.soname else [])),
            ("needed", codes(elf.needed)),
            ("symbol versions needed", "<br>".join(needs) or '<span class="muted">none</span>'),
            ("rpath", codes(elf.rpath)),
            ("runpath", codes(elf.runpath)),
            ("executable stack", "<strong>yes</strong>" if elf.execstack else "no"),
            ("x86-64 level", codes([f"x86-64-v{level}"] if level else [], empty="not stated")),
        ]
        if elf.interpreter:
            pairs.append(("interpreter", f"<code>{e(elf.interpreter)}</code>"))
        if elf.gpu_sms or elf.gpu_ptx:
            pairs.append(("GPU kernels", codes(elf.gpu_sms)))
            pairs.append(("PTX", codes(elf.gpu_ptx)))
        out.append(f"<h3><code>{e(elf.path)}</code></h3>{facts(pairs)}")
    out.append("</section>")
    return "".join(out)


def _natives(report: Report) -> str:
    rows = [
        (f"<code>{e(n.path)}</code>", e(n.format), e(n.os), f"<code>{e(n.machine)}</code>")
        for n in report.native_files
    ]
    body = (
        table(("member", "format", "loads on", "machine"), rows)
        if rows
        else "<p>No native binary of any format.</p>"
    )
    return (
        '<section aria-labelledby="native"><h2 id="native">Native files, every format</h2>'
        f"{body}</section>"
    )


def _refusals(project: str, refusals: Sequence[Refusal]) -> str:
    if refusals:
        items = "".join(
            f'<li><a href="{e(project_url(project, r.profile))}"><code>{e(r.profile)}</code></a>'
            f' (<a href="{e(explain_json_url(project, r.profile))}">JSON</a>):'
            f" {e('; '.join(r.reasons))}</li>"
            for r in refusals
        )
        seen = f"<p>Host classes seen lately that were refused this wheel:</p><ul>{items}</ul>"
    else:
        seen = "<p>No host class seen lately was refused this wheel.</p>"
    form = profile_form(
        action=project_url(project), profile="", button=f"Show {project} for this host"
    )
    return (
        '<section aria-labelledby="hosts"><h2 id="hosts">Hosts</h2>'
        f"{seen}<p>Check another host:</p>{form}</section>"
    )
