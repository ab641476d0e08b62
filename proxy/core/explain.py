"""Explanations: every file of a project with its verdict for one host, as data and HTML."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from proxy.core.decide import Verdict
from proxy.core.models import Page
from proxy.core.profile import HostProfile
from proxy.core.report import Report


def explanation(
    page: Page,
    verdicts: Mapping[str, Verdict],
    reports: Mapping[str, Report],
    profile: HostProfile,
    rewrites: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``rewrites``: for files a rule rewrites, what they are served as and by which rules."""
    files = []
    for f in page.files:
        verdict = verdicts[f.filename]
        report = reports.get(f.sha256 or "")
        files.append(
            {
                "filename": f.filename,
                "verdict": verdict.action,
                "reasons": [{"kind": r.kind, "message": r.message} for r in verdict.reasons],
                "report": None if report is None else report.status,
                "report_reason": None if report is None else report.reason,
                "rewrite": None if rewrites is None else rewrites.get(f.filename),
            }
        )
    return {
        "project": page.name,
        "profile": profile.to_string(),
        "sources": profile.sources(),
        "served": sum(1 for f in files if f["verdict"] == "keep"),
        "hidden": sum(1 for f in files if f["verdict"] == "hide"),
        "files": files,
    }


def explanation_html(data: Mapping[str, Any]) -> str:
    e = html.escape
    rows = []
    for f in data["files"]:
        reasons = "<br>".join(e(r["message"]) for r in f["reasons"]) or "fits this host"
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
            f"<td>{e(f['verdict'])}</td><td>{reasons}</td><td>{e(report)}</td></tr>"
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
        f"<p>{data['served']} served, {data['hidden']} hidden.</p>"
        "<table><tr><th>file</th><th>verdict</th><th>why</th><th>report</th></tr>"
        + "\n".join(rows)
        + "</table></body></html>\n"
    )
