"""Explanations: every file of a project with its verdict for one host, as data and HTML.

Each file's ``status`` is ``kept`` (served, and verified where a report matters),
``not verified yet`` (served by its tags while its report is awaited; the download
gate still checks it) or ``hidden``. Never "fits" for a file nobody has analysed.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.core.decide import Verdict
from proxy.core.families import BuildChoice
from proxy.core.frontier import Frontier
from proxy.core.models import File, Page
from proxy.core.profile import HostProfile
from proxy.core.redact import redact
from proxy.core.report import Report


def explanation(
    page: Page,
    verdicts: Mapping[str, Verdict],
    reports: Mapping[str, Report],
    profile: HostProfile,
    rewrites: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    unreported: frozenset[str] = frozenset(),
    frontier: Frontier | None = None,
    choice: File | None = None,
    builds: Sequence[BuildChoice] = (),
) -> dict[str, Any]:
    """``rewrites``: for files a rule rewrites, what they are served as and by which rules.

    ``unreported``: files whose verdict waits for a report; ``frontier``: where this
    host's walk stands; ``choice``: what a plain ``pip install`` takes now; ``builds``:
    each version's builds and why each was or was not chosen (`proxy.core.families`).
    """
    files = []
    for f in page.files:
        verdict = verdicts[f.filename]
        report = reports.get(f.sha256 or "")
        status = "hidden" if not verdict.keep else "kept"
        if verdict.keep and f.filename in unreported:
            status = "not verified yet"
        files.append(
            {
                "filename": f.filename,
                "verdict": verdict.action,
                "status": status,
                "reasons": [{"kind": r.kind, "message": r.message} for r in verdict.reasons],
                "notes": list(verdict.notes),
                "report": None if report is None else report.status,
                "report_reason": None if report is None else report.reason,
                "rewrite": None if rewrites is None else rewrites.get(f.filename),
            }
        )
    return {
        "project": page.name,
        "upstream": redact(page.upstream),
        "profile": profile.to_string(),
        "sources": profile.sources(),
        "served": sum(1 for f in files if f["verdict"] == "keep"),
        "hidden": sum(1 for f in files if f["verdict"] == "hide"),
        "not_verified": sum(1 for f in files if f["status"] == "not verified yet"),
        "frontier": None if frontier is None else _frontier(frontier),
        "pip_would_install": None if choice is None else _choice(choice, unreported),
        "builds": [_build(b) for b in builds],
        "files": files,
    }


def _build(choice: BuildChoice) -> dict[str, Any]:
    return {
        "version": choice.version,
        "build": choice.build,
        "cuda": choice.cuda,
        "status": choice.status,
        "why": choice.why,
        "analysing": choice.pending,
        "upstreams": list(choice.sources),
        "files": list(choice.files),
    }


def _frontier(frontier: Frontier) -> dict[str, Any]:
    return {
        "settled": frontier.settled,
        "offered": None if frontier.offered is None else str(frontier.offered),
        "verified_versions": [str(v) for v in frontier.verified],
        "pending_versions": [str(v) for v in frontier.pending],
        "analysing": [f.filename for f in frontier.wanted],
    }


def _choice(choice: File, unreported: frozenset[str]) -> dict[str, Any]:
    return {"filename": choice.filename, "verified": choice.filename not in unreported}


def explanation_html(data: Mapping[str, Any]) -> str:
    e = html.escape
    rows = []
    for f in data["files"]:
        fits = "not verified yet" if f["status"] == "not verified yet" else "fits this host"
        said = [r["message"] for r in f["reasons"]] or f.get("notes") or [fits]
        reasons = "<br>".join(e(text) for text in said)
        rewrite = f.get("rewrite")
        if rewrite:
            served = rewrite["served_as"] or f"not yet ({rewrite['status']})"
            reasons += (
                f"<br>rewritten ({e(rewrite['change'])}) by {e(', '.join(rewrite['rules']))};"
                f" served as {e(served)}"
            )
        report = f["report"] or "not analysed"
        rows.append(
            f'<tr class="{e(f["verdict"])}"><td>{e(f["filename"])}</td>'
            f"<td>{e(f['status'])}</td><td>{reasons}</td><td>{e(report)}</td></tr>"
        )
    sources = ", ".join(f"{e(k)} from {e(v)}" for k, v in data["sources"].items())
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>hostfit: {e(data['project'])}</title>"
        "<style>body{font-family:sans-serif}td{padding:2px 8px;vertical-align:top}"
        "tr.hide td{color:#888}tr.keep td:nth-child(2){color:#070}</style></head><body>"
        f"<h1>{e(data['project'])}</h1>"
        f"<p>Host profile: <code>{e(data['profile']) or '(nothing known)'}</code>"
        f"{' (' + sources + ')' if sources else ''}</p>"
        f"<p>{data['served']} served ({data.get('not_verified', 0)} not verified yet),"
        f" {data['hidden']} hidden.</p>"
        f"{_summary_html(data)}"
        "<table><tr><th>file</th><th>verdict</th><th>why</th><th>report</th></tr>"
        + "\n".join(rows)
        + "</table></body></html>\n"
    )


def _summary_html(data: Mapping[str, Any]) -> str:
    e = html.escape
    parts = []
    choice = data.get("pip_would_install")
    if choice:
        verified = "verified" if choice["verified"] else "not verified yet"
        filename = e(choice["filename"])
        parts.append(f"<p>A plain pip install takes <code>{filename}</code> ({verified}).</p>")
    frontier = data.get("frontier")
    if frontier:
        if frontier["settled"]:
            state = f"settled: {e(frontier['offered'] or 'nothing')} is the newest version offered"
        else:
            state = f"analysing {len(frontier['analysing'])} wheel(s) of " + e(
                ", ".join(frontier["pending_versions"])
            )
        parts.append(f"<p>Analysis for this host: {state}.</p>")
    if data.get("upstream"):
        parts.append(f"<p>Served from <code>{e(data['upstream'])}</code>.</p>")
    builds = data.get("builds") or []
    if builds:
        rows = "".join(
            f"<tr><td>{e(b['version'])}</td><td>+{e(b['build'])}</td>"
            f"<td>{e(b['status'])}{' (being analysed)' if b['analysing'] else ''}</td>"
            f"<td>{e(b['why'])}</td></tr>"
            for b in builds
        )
        parts.append(
            "<h2>Builds</h2><table><tr><th>version</th><th>build</th><th>status</th>"
            f"<th>why</th></tr>{rows}</table>"
        )
    return "".join(parts)
