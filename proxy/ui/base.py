"""The frame every page shares: document head, inline style sheet, header, escaping helpers.

A status is always shown as a glyph and a word, never by colour alone; colours only
repeat what the words say. Long filenames wrap anywhere, and wide tables scroll inside
their own box, so a phone shows every page without zooming.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from urllib.parse import quote, urlencode

# Statuses of a file for one host (`proxy.core.explain`), with a glyph each.
KEPT = "kept"
HIDDEN = "hidden"
NOT_VERIFIED = "not verified yet"
_GLYPHS = {KEPT: "\u2714", HIDDEN: "\u2718", NOT_VERIFIED: "\u2026"}
_CLASSES = {KEPT: "kept", HIDDEN: "hidden", NOT_VERIFIED: "pending"}

CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1d21;--muted:#5b616b;--line:#d5d8dd;
--panel:#f4f5f7;--link:#0b57d0;--ok:#136c2e;--ok-bg:#e3f4e8;--bad:#a3201b;--bad-bg:#fbe7e6;
--wait:#7a4d00;--wait-bg:#fdf1d8;--focus:#0b57d0}
@media (prefers-color-scheme:dark){:root{--bg:#15171a;--fg:#e7e9ec;--muted:#a4aab3;
--line:#3a3f46;--panel:#1f2226;--link:#8ab4f8;--ok:#8fd9a4;--ok-bg:#17301f;--bad:#f2a19b;
--bad-bg:#3a1c1a;--wait:#f1c76e;--wait-bg:#352a12;--focus:#8ab4f8}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);line-height:1.5;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
a{color:var(--link)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,
summary:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:var(--bg);
padding:.5rem;z-index:1}
header.top{border-bottom:1px solid var(--line);background:var(--panel)}
header.top div,main{max-width:72rem;margin:0 auto;padding:.75rem 1rem}
header.top a{font-weight:600;text-decoration:none;margin-right:1rem}
h1{font-size:1.6rem;margin:.5rem 0 1rem;overflow-wrap:anywhere}
h2{font-size:1.25rem;margin:2rem 0 .75rem;border-bottom:1px solid var(--line)}
h3{font-size:1.05rem;margin:1.25rem 0 .5rem}
code,pre,kbd{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
code{overflow-wrap:anywhere}
pre{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:.75rem;
overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.muted,small{color:var(--muted)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;margin:.25rem 0 1rem}
th,td{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;
vertical-align:top}
th{font-weight:600}thead th{background:var(--panel)}
.file{overflow-wrap:anywhere;min-width:12rem;font-weight:normal}
@media (min-width:48rem){table.files{table-layout:fixed}col.c-file{width:44%}
col.c-status{width:9.5rem}col.c-report{width:6.5rem}}
.answer h2{margin-top:.25rem}
ul.plain{list-style:none;padding:0;margin:0}
.status{display:inline-block;white-space:nowrap;border:1px solid currentColor;
border-radius:4px;padding:0 .4rem;font-weight:600;font-size:.9em}
.status.kept{color:var(--ok);background:var(--ok-bg)}
.status.hidden{color:var(--bad);background:var(--bad-bg)}
.status.pending{color:var(--wait);background:var(--wait-bg)}
tr.hidden td.file{color:var(--muted)}
.answer{border:2px solid var(--line);border-radius:8px;padding:.75rem 1rem;margin:1rem 0;
background:var(--panel)}
.answer p{margin:.25rem 0}
.error{border:2px solid var(--bad);color:var(--bad);background:var(--bad-bg);
border-radius:8px;padding:.75rem 1rem}
form.profile{display:grid;gap:.4rem;grid-template-columns:1fr;max-width:48rem;margin:1rem 0}
form.profile label{font-weight:600}
form.profile input[type=text]{width:100%;padding:.45rem;font:inherit;
font-family:ui-monospace,monospace;border:1px solid var(--line);border-radius:4px;
background:var(--bg);color:var(--fg)}
fieldset{border:1px solid var(--line);border-radius:6px;padding:.25rem .75rem .5rem;margin:0}
fieldset label{margin-right:1rem}
button{font:inherit;padding:.4rem 1rem;border-radius:4px;border:1px solid var(--link);
background:var(--link);color:var(--bg);cursor:pointer;justify-self:start}
details{border:1px solid var(--line);border-radius:6px;margin:.5rem 0;padding:0 .75rem}
details[open]{padding-bottom:.5rem}
summary{cursor:pointer;padding:.5rem 0;font-weight:600}
.grid{display:grid;gap:0 1rem;grid-template-columns:repeat(auto-fit,minmax(min(20rem,100%),1fr))}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}
dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
@media (max-width:40rem){body{font-size:15px}h1{font-size:1.35rem}
th,td{padding:.3rem .35rem}dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:.4rem}}
"""


def e(value: object) -> str:
    """Escaped for text and for quoted attribute values."""
    return html.escape(str(value), quote=True)


def url(path: str, **query: str | None) -> str:
    """A URL with its query; parameters given None are left out."""
    kept = {k: v for k, v in query.items() if v is not None}
    return f"{path}?{urlencode(kept)}" if kept else path


def project_url(project: str, profile: str | None = None, **query: str | None) -> str:
    return url(f"/ui/project/{quote(project, safe='')}/", profile=profile or None, **query)


def explain_json_url(project: str, profile: str | None) -> str:
    return url(f"/explain/{quote(project, safe='')}/", profile=profile or None, format="json")


def wheel_url(sha256: str) -> str:
    return f"/ui/wheel/{quote(sha256, safe='')}/"


def status_badge(status: str, label: str | None = None) -> str:
    glyph = _GLYPHS.get(status, "\u2022")
    css = _CLASSES.get(status, "")
    text = e(label or status)
    return f'<span class="status {css}"><span aria-hidden="true">{glyph}</span> {text}</span>'


def verified_badge(verified: bool) -> str:
    return status_badge(KEPT, "verified") if verified else status_badge(NOT_VERIFIED)


def document(title: str, body: str, *, heading: str | None = None) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        '<header class="top"><div><nav aria-label="hostfit">'
        '<a href="/">hostfit</a><a href="/simple/">simple index</a>'
        "</nav></div></header>"
        f'<main id="main">{f"<h1>{e(heading)}</h1>" if heading is not None else ""}{body}'
        "</main></body></html>\n"
    )


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, caption: str | None = None
) -> str:
    """Cells are HTML already; the first cell of a row is its header (``th scope=row``)."""
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    body = []
    for row in rows:
        first, *rest = row
        cells = "".join(f"<td>{cell}</td>" for cell in rest)
        body.append(f'<tr><th scope="row">{first}</th>{cells}</tr>')
    cap = f"<caption>{e(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def codes(values: Iterable[object], *, empty: str = "none") -> str:
    items = [f"<code>{e(v)}</code>" for v in values]
    return ", ".join(items) if items else f'<span class="muted">{e(empty)}</span>'


def facts(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are HTML already."""
    return (
        '<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"
    )


def profile_form(
    *,
    action: str,
    profile: str,
    project: str | None = None,
    project_field: bool = False,
    extra: str = "",
    button: str = "Show what this host gets",
) -> str:
    """A GET form: its fields become the query of ``action``, so it works without script."""
    project_input = ""
    if project_field:
        project_input = (
            '<label for="project">Project</label>'
            '<input type="text" id="project" name="project" required autocomplete="off"'
            f' spellcheck="false" placeholder="numpy" value="{e(project or "")}">'
        )
    return (
        f'<form class="profile" method="get" action="{e(action)}">'
        f"{project_input}"
        '<label for="profile">Host profile</label>'
        '<input type="text" id="profile" name="profile" autocomplete="off" spellcheck="false"'
        ' placeholder="python=3.11,impl=cp,arch=x86_64,libc=glibc-2.28,cuda=12.4"'
        f' aria-describedby="profile-help" value="{e(profile)}">'
        '<small id="profile-help"><code>key=value</code> pairs joined by commas:'
        " <code>python</code>, <code>impl</code>, <code>arch</code>, <code>libc</code>,"
        " <code>glibcxx</code>, <code>cuda</code>, <code>sm</code>, <code>isa</code>."
        " <code>hostfit probe</code> prints the one of the machine it runs on.</small>"
        f'{extra}<button type="submit">{e(button)}</button></form>'
    )


def human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value, unit = size / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def error_box(message: str) -> str:
    return f'<p class="error" role="alert">{e(message)}</p>'
