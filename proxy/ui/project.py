"""A project as one host sees it: what a plain install takes, then every version and file.

Built from the explanation (`proxy.core.explain.explanation`) and the page's files, so
the page and ``/explain/<project>/?format=json`` always say the same thing. Versions are
newest first; the newest few and the one a plain install takes are open, the rest fold
away (``<details>``), so a project with thousands of files stays readable. Hidden files
can be left out with ``?hidden=hide``: a plain GET form, no script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.version import Version

from proxy.core.models import File
from proxy.core.versions import file_version
from proxy.ui.base import (
    HIDDEN,
    KEPT,
    NOT_VERIFIED,
    document,
    e,
    error_box,
    explain_json_url,
    facts,
    human_bytes,
    profile_form,
    project_url,
    status_badge,
    url,
    verified_badge,
    wheel_url,
)

OPEN_VERSIONS = 3  # versions shown unfolded, besides the one a plain install takes
_NO_VERSION = "other files"
_DOT = " \u00b7 "
_DASH = " \u2014 "


@dataclass(frozen=True, slots=True)
class Row:
    file: File
    status: str  # kept | hidden | not verified yet
    reasons: tuple[tuple[str, str], ...]  # (kind, message)
    notes: tuple[str, ...]  # why it is kept where a check alone would hide it
    report: str | None  # the report's status, None when there is none
    report_reason: str | None
    rewrite: Mapping[str, Any] | None


def rows(files: Sequence[File], explained: Mapping[str, Any]) -> list[Row]:
    """The explanation's entries joined to the page's files, in page order."""
    by_name = {f["filename"]: f for f in explained["files"]}
    out = []
    for file in files:
        entry = by_name.get(file.filename)
        if entry is None:
            continue
        out.append(
            Row(
                file=file,
                status=entry["status"],
                reasons=tuple((r["kind"], r["message"]) for r in entry["reasons"]),
                notes=tuple(entry.get("notes", ())),
                report=entry.get("report"),
                report_reason=entry.get("report_reason"),
                rewrite=entry.get("rewrite"),
            )
        )
    return out


def by_version(files: Sequence[Row]) -> list[tuple[str, list[Row]]]:
    """Groups, newest version first; files whose name gives no version come last."""
    groups: dict[Version | None, list[Row]] = {}
    for row in files:
        groups.setdefault(file_version(row.file.filename), []).append(row)
    ordered = sorted((v for v in groups if v is not None), reverse=True)
    result = [(str(v), groups[v]) for v in ordered]
    if None in groups:
        result.append((_NO_VERSION, groups[None]))
    return result


def render_project(
    project: str,
    *,
    profile: str,
    files: Sequence[File],
    explained: Mapping[str, Any] | None,
    show_hidden: bool = True,
    error: str | None = None,
) -> str:
    """``profile``: as the user gave it (canonical); ``explained`` is None when nothing
    is known about the host (no profile given, none configured)."""
    parts = []
    if error is not None:
        parts.append(error_box(error))
    if explained is None:
        parts.append(_UNKNOWN_HOST)
        parts.append(_form(project, profile, show_hidden))
        parts.append(_index_versions(files))
    else:
        parts.append(_answer(project, profile, explained))
        parts.append(_form(project, profile, show_hidden))
        parts.append(_versions(project, profile, rows(files, explained), explained, show_hidden))
    title = f"{project} for {profile}" if profile else project
    return document(f"hostfit: {title}", "".join(parts), heading=project)


def _form(project: str, profile: str, show_hidden: bool) -> str:
    show = " checked" if show_hidden else ""
    hide = "" if show_hidden else " checked"
    extra = (
        "<fieldset><legend>Hidden files</legend>"
        f'<input type="radio" id="hidden-show" name="hidden" value="show"{show}>'
        ' <label for="hidden-show">show them</label> '
        f'<input type="radio" id="hidden-hide" name="hidden" value="hide"{hide}>'
        ' <label for="hidden-hide">leave them out</label></fieldset>'
    )
    return profile_form(action=project_url(project), profile=profile, extra=extra)


_UNKNOWN_HOST = (
    '<section class="answer" aria-labelledby="unknown">'
    '<h2 id="unknown">Nothing is known about this host</h2>'
    "<p>A browser tells hostfit nothing about the machine that will install: enter its"
    " host profile below to see which files it gets and why the others are hidden."
    " <code>hostfit probe</code>, run on that machine, prints it.</p></section>"
)


def _index_versions(files: Sequence[File]) -> str:
    counts: dict[Version | None, int] = {}
    for f in files:
        version = file_version(f.filename)
        counts[version] = counts.get(version, 0) + 1
    versions = sorted((v for v in counts if v is not None), reverse=True)
    items = "".join(
        f"<li><code>{e(v)}</code> <small>({counts[v]} file{'s' * (counts[v] != 1)})</small></li>"
        for v in versions
    )
    return (
        "<h2>Versions on the index, newest first</h2>"
        f"<p>{len(files)} file{'s' * (len(files) != 1)} in {len(versions)} version"
        f"{'s' * (len(versions) != 1)}.</p>"
        f'<ul class="plain">{items}</ul>'
    )


def _answer(project: str, profile: str, explained: Mapping[str, Any]) -> str:
    choice = explained.get("pip_would_install")
    if choice:
        filename = choice["filename"]
        version = file_version(filename)
        took = (
            f"<p>Version <strong>{e(version or '?')}</strong>:"
            f" <code>{e(filename)}</code> {verified_badge(bool(choice['verified']))}</p>"
        )
        if not choice["verified"]:
            took += (
                "<p><small>Its report is awaited: listed by its tags meanwhile. The download"
                " gate checks it before the last byte leaves.</small></p>"
            )
    elif explained["served"]:
        took = (
            "<p><strong>Nothing</strong> for an unpinned requirement: the files served are"
            " yanked, need another Python, or have no version pip can read. A pinned"
            " requirement may still take one.</p>"
        )
    else:
        took = "<p><strong>Nothing</strong>: no file of this project fits this host.</p>"
    frontier = explained.get("frontier")
    analysis = ""
    if frontier:
        if frontier["settled"]:
            offered = frontier["offered"]
            analysis = (
                f"<p>Analysis settled: <strong>{e(offered)}</strong> is the newest version"
                " offered.</p>"
                if offered
                else "<p>Analysis settled.</p>"
            )
        else:
            pending = ", ".join(frontier["pending_versions"]) or "?"
            analysis = (
                f'<p role="status">Analysis in progress: {len(frontier["analysing"])} wheel(s)'
                f" of version(s) {e(pending)}. Reload in a few seconds for the final answer.</p>"
            )
    sources = explained.get("sources") or {}
    known = facts(
        (key, f"<code>{e(value)}</code> <small>from {e(sources.get(key, '?'))}</small>")
        for key, value in _profile_pairs(explained["profile"])
    )
    counts = (
        f"<p>{explained['served']} file(s) served"
        f" ({explained.get('not_verified', 0)} not verified yet),"
        f" {explained['hidden']} hidden.</p>"
    )
    json_link = explain_json_url(project, profile)
    install = url("/", profile=profile or None) + "#install"
    return (
        '<section class="answer" aria-labelledby="answer">'
        f'<h2 id="answer">What <code>pip install {e(project)}</code> gets on this host</h2>'
        f"{took}{analysis}{counts}"
        f'<p><a href="{e(json_link)}">The same as JSON</a> \u00b7'
        f' <a href="{e(install)}">Point pip and uv at this view of the index</a></p>'
        f"<details><summary>Host facts</summary>{known}</details></section>"
    )


def _profile_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep:
            pairs.append((key, value))
    return pairs


def _versions(
    project: str,
    profile: str,
    files: Sequence[Row],
    explained: Mapping[str, Any],
    show_hidden: bool,
) -> str:
    choice = explained.get("pip_would_install") or {}
    chosen = choice.get("filename")
    groups = by_version(files)
    out = [
        '<h2 id="versions">Versions, newest first</h2>',
        f"<p>{len(groups)} version(s).",
        " Hidden files are left out." if not show_hidden else "",
        "</p>",
    ]
    for index, (version, group) in enumerate(groups):
        has_choice = any(r.file.filename == chosen for r in group)
        kept = sum(1 for r in group if r.status == KEPT)
        pending = sum(1 for r in group if r.status == NOT_VERIFIED)
        hidden = sum(1 for r in group if r.status == HIDDEN)
        shown = group if show_hidden else [r for r in group if r.status != HIDDEN]
        is_open = (index < OPEN_VERSIONS or has_choice) and bool(shown)
        counts = [f"{kept} kept"]
        if pending:
            counts.append(f"{pending} not verified yet")
        counts.append(f"{hidden} hidden")
        marker = f"{_DASH}<strong>a plain install takes this</strong>" if has_choice else ""
        out.append(
            f'<details id="v-{e(version)}"{" open" if is_open else ""}>'
            f"<summary><span>{e(version)}</span> <small>({', '.join(counts)})</small>"
            f"{marker}</summary>"
        )
        if shown:
            out.append(_file_table(shown, chosen))
        else:
            out.append("<p><small>Every file of this version is hidden from this host.</small></p>")
        out.append("</details>")
    return "".join(out)


def _file_table(files: Sequence[Row], chosen: str | None) -> str:
    body = []
    for row in files:
        body.append(
            f'<tr class="{_ROW_CLASS.get(row.status, "")}">'
            f'<th scope="row" class="file">{_file_cell(row, chosen)}</th>'
            f"<td>{status_badge(row.status)}</td><td>{_why(row)}</td>"
            f"<td>{_report_cell(row)}</td></tr>"
        )
    return (
        '<div class="scroll"><table class="files"><colgroup><col class="c-file">'
        '<col class="c-status"><col class="c-why"><col class="c-report"></colgroup>'
        '<thead><tr><th scope="col">File</th>'
        '<th scope="col">Status</th><th scope="col">Why</th><th scope="col">Report</th>'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


_ROW_CLASS = {KEPT: "kept", HIDDEN: "hidden", NOT_VERIFIED: "pending"}


def _file_cell(row: Row, chosen: str | None) -> str:
    file = row.file
    name = f"<code>{e(file.filename)}</code>"
    if row.report is not None and file.sha256:
        name = f'<a href="{e(wheel_url(file.sha256))}">{name}</a>'
    notes = []
    if file.filename == chosen:
        notes.append("<strong>a plain install takes this</strong>")
    if file.yanked:
        reason = file.yanked if isinstance(file.yanked, str) else ""
        notes.append(f"yanked{': ' + e(reason) if reason else ''}")
    if file.size is not None:
        notes.append(human_bytes(file.size))
    if file.upload_time:
        notes.append(f"uploaded {e(file.upload_time[:10])}")
    if file.requires_python:
        notes.append(f"Requires-Python {e(file.requires_python)}")
    extra = f"<br><small>{_DOT.join(notes)}</small>" if notes else ""
    return name + extra


def _why(row: Row) -> str:
    parts = []
    said = [message for _, message in row.reasons] or row.notes
    if said:
        items = "".join(f"<li>{e(text)}</li>" for text in said)
        parts.append(f'<ul class="plain">{items}</ul>')
    elif row.status == NOT_VERIFIED:
        parts.append("Listed by its tags while its report is awaited; the download gate checks it.")
    elif row.report == "ok":
        parts.append("Its report says it loads here.")
    elif not row.file.is_wheel:
        parts.append("A source distribution: no binary to check.")
    else:
        parts.append("Fits this host by its tags; no binary to check.")
    rewrite = row.rewrite
    if rewrite:
        served = rewrite.get("served_as") or f"not yet ({rewrite.get('status', '?')})"
        rules = ", ".join(str(r) for r in rewrite.get("rules", ()))
        parts.append(
            f"<p><small>Rewritten ({e(rewrite.get('change', ''))}) by {e(rules)};"
            f" served as <code>{e(served)}</code></small></p>"
        )
    return "".join(parts)


def _report_cell(row: Row) -> str:
    sha256 = row.file.sha256
    if row.report is None:
        if row.status == NOT_VERIFIED:
            return '<span class="muted">awaited</span>'
        return '<span class="muted">none</span>'
    link = f'<a href="{e(wheel_url(sha256))}">{e(row.report)}</a>' if sha256 else e(row.report)
    if row.report_reason:
        link += f"<br><small>{e(row.report_reason)}</small>"
    return link
