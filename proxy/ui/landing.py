"""The landing page: what this proxy is, how to point installers at it, what the fleet gets.

Every URL in a snippet is this proxy's own, as the request reached it, so what a reader
copies works from where they stand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.ui.base import (
    codes,
    document,
    e,
    error_box,
    facts,
    human_bytes,
    profile_form,
    project_url,
    table,
    url,
)


@dataclass(frozen=True, slots=True)
class HostClass:
    profile: str
    requests: int
    projects: int
    last_seen: float
    latest_project: str


@dataclass(frozen=True, slots=True)
class ReasonCount:
    kind: str
    files: int  # (file, host class) pairs hidden for this kind of reason
    hosts: int


@dataclass(frozen=True, slots=True)
class Affected:
    project: str
    hosts: int  # host classes refused at least one of its wheels
    refused: int  # (wheel, host class) pairs refused for reasons of loading
    hidden: int  # (file, host class) pairs hidden for any reason


@dataclass(frozen=True, slots=True)
class UpstreamInfo:
    url: str  # credentials already redacted
    projects: tuple[str, ...] = ()  # routed: only these projects come from it
    family: str | None = None


@dataclass(frozen=True, slots=True)
class Install:
    """How to point installers here; ``index_url`` carries the profile when one is given."""

    index_url: str
    plain_url: str  # without a profile, for user_data and the User-Agent
    universal_url: str
    pip_conf: str
    uv_toml: str
    probe: str


@dataclass(frozen=True, slots=True)
class Landing:
    version: str
    install: Install
    upstreams: tuple[UpstreamInfo, ...]
    rules_digest: str
    rule_files: tuple[str, ...]
    rule_counts: Mapping[str, int]
    cache_dir: str
    cache_bytes: int | None  # None: not measured
    cache_files: int | None
    policy: str
    budget: float
    analyses_run: int
    walks_unsettled: int
    wheels_wanted: int
    now: float
    hosts: Sequence[HostClass] = ()
    reasons: Sequence[ReasonCount] = ()
    affected: Sequence[Affected] = ()
    profile: str = ""
    error: str | None = None
    default_profile: str = ""
    file_origins: tuple[str, ...] = ()  # where files may come from besides the upstreams


def render_landing(data: Landing) -> str:
    count = len(data.upstreams)
    lead = (
        '<p class="lead">A <strong>hostfit</strong> index proxy (PEP 503 and PEP 691) in front'
        f" of {count} upstream index{'es' * (count != 1)}. It opens the wheels that pass"
        " through it, reads what their binaries need (glibc and libstdc++ symbol versions,"
        " a CUDA major, GPU architectures, an executable stack, an x86-64 level) and serves"
        " each host only the files that will install <em>and load</em> there. pip and uv"
        " then pick the newest version that works, with no change on their side.</p>"
    )
    body = [
        lead,
        error_box(data.error) if data.error else "",
        _check(data),
        _install(data),
        _fleet(data),
        _this_proxy(data),
    ]
    return document("hostfit", "".join(body), heading="hostfit")


def _check(data: Landing) -> str:
    form = profile_form(action="/ui/project/", profile=data.profile, project_field=True, project="")
    return (
        '<section aria-labelledby="check"><h2 id="check">Check a host</h2>'
        "<p>Which files of a project does a machine get, and why are the others hidden?"
        " Enter the project and the machine's host profile, or paste the profile that"
        " <code>hostfit probe</code> printed on it:</p>"
        f"<pre><code>{e(data.install.probe)}</code></pre>{form}</section>"
    )


def _install(data: Landing) -> str:
    i = data.install
    if data.profile:
        intro = (
            f"<p>For hosts with the profile <code>{e(data.profile)}</code>: the profile"
            " travels in the URL, so every installer and every cache sees the same page.</p>"
        )
    else:
        intro = (
            "<p>pip and uv tell hostfit their Python, CPU and C library in their User-Agent."
            " For the rest (libstdc++, CUDA driver, GPUs, CPU level) put the host profile in"
            " the URL: enter one above, or run <code>hostfit probe --index-url</code>.</p>"
        )
    user_data = ""
    if data.profile:
        user_data = (
            "<h3>pip, profile in pip's User-Agent instead</h3>"
            f"<pre><code>PIP_USER_AGENT_USER_DATA={e(_shell(data.profile))}"
            f" pip install --index-url {e(i.plain_url)} PROJECT</code></pre>"
        )
    return (
        '<section aria-labelledby="install"><h2 id="install">Point pip and uv here</h2>'
        f"{intro}"
        '<div class="grid"><div><h3>pip</h3>'
        f"<pre><code>pip install --index-url {e(i.index_url)} PROJECT</code></pre></div>"
        "<div><h3>uv</h3>"
        f"<pre><code>uv pip install --index-url {e(i.index_url)} PROJECT\n"
        f"uv add --default-index {e(i.index_url)} PROJECT</code></pre></div>"
        f"<div><h3><code>pip.conf</code></h3><pre><code>{e(i.pip_conf)}</code></pre></div>"
        f"<div><h3><code>uv.toml</code></h3><pre><code>{e(i.uv_toml)}</code></pre></div></div>"
        f"{user_data}"
        "<p>Lock files (<code>uv lock</code>, <code>pip-compile</code>) and mirrors need every"
        f" file: <code>{e(i.universal_url)}</code> is unfiltered and unmodified (uv's locking"
        " commands get it on their own).</p></section>"
    )


def _shell(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _fleet(data: Landing) -> str:
    out = [
        '<section aria-labelledby="fleet"><h2 id="fleet">Fleet: recent traffic</h2>',
        "<p><small>From the pages this process served lately to hosts that told something"
        " about themselves.</small></p>",
    ]
    if not data.hosts:
        out.append("<p>No host has asked for a page yet.</p></section>")
        return "".join(out)
    out.append("<h3>Host classes seen</h3>")
    out.append(
        table(
            ("host profile", "requests", "projects", "last seen"),
            (
                (
                    f'<a href="{e(project_url(h.latest_project, h.profile))}">'
                    f"<code>{e(h.profile)}</code></a>",
                    str(h.requests),
                    str(h.projects),
                    _ago(data.now - h.last_seen),
                )
                for h in data.hosts
            ),
        )
    )
    out.append("<h3>Files hidden, by reason</h3>")
    if data.reasons:
        out.append(
            table(
                ("reason", "files hidden (per host class)", "host classes"),
                ((f"<code>{e(r.kind)}</code>", str(r.files), str(r.hosts)) for r in data.reasons),
            )
        )
    else:
        out.append("<p>Nothing hidden so far.</p>")
    out.append("<h3>Projects most affected</h3>")
    if data.affected:
        out.append(
            table(
                ("project", "host classes refused a wheel", "wheels refused", "files hidden"),
                (
                    (
                        f'<a href="{e(project_url(a.project))}">{e(a.project)}</a>',
                        str(a.hosts),
                        str(a.refused),
                        str(a.hidden),
                    )
                    for a in data.affected
                ),
            )
        )
    else:
        out.append("<p>No project has hidden a file from anyone so far.</p>")
    out.append("</section>")
    return "".join(out)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def _this_proxy(data: Landing) -> str:
    upstreams = table(
        ("upstream", "projects", "family"),
        (
            (
                f"<code>{e(u.url)}</code>",
                codes(u.projects, empty="every other project"),
                e(u.family) if u.family else '<span class="muted">none</span>',
            )
            for u in data.upstreams
        ),
        caption=(
            "In priority order. A project an upstream's projects name comes from that"
            " upstream alone (a family's members merged, one build per version for a host);"
            " any other is taken whole from the first upstream without projects that has it."
        ),
    )
    origins = (
        f"<p>Files may also come from {codes(data.file_origins)}.</p>"
        if data.file_origins
        else "<p>Files come from each upstream's own origin only.</p>"
    )
    counts = ", ".join(f"{n} {e(kind)}" for kind, n in data.rule_counts.items() if n)
    rules = facts(
        [
            ("digest", f"<code>{e(data.rules_digest[:16] or '-')}</code>"),
            ("files", codes(data.rule_files)),
            ("in force", counts or "no policy: nothing is hidden by rule"),
            (
                "default profile",
                f"<code>{e(data.default_profile)}</code>"
                if data.default_profile
                else '<span class="muted">none: nothing assumed about a host</span>',
            ),
        ]
    )
    size = (
        f"{human_bytes(data.cache_bytes)} in {data.cache_files} file(s)"
        if data.cache_bytes is not None
        else '<span class="muted">not measured</span>'
    )
    cache = facts([("directory", f"<code>{e(data.cache_dir)}</code>"), ("files cached", size)])
    analysis = facts(
        [
            ("policy", f"<code>{e(data.policy)}</code>, pages wait up to {data.budget:g} s"),
            ("analyses run", f"{data.analyses_run} by this process since it started"),
            (
                "walks under way",
                f"{data.walks_unsettled} (project, host class) pair(s) not settled, waiting"
                f" for {data.wheels_wanted} wheel(s)",
            ),
        ]
    )
    return (
        '<section aria-labelledby="proxy"><h2 id="proxy">This proxy</h2>'
        f"<p>hostfit {e(data.version)}. Machine-readable: "
        f'<a href="{e(url("/metrics"))}">/metrics</a>, <a href="/readyz">/readyz</a>.</p>'
        f"<h3>Upstreams</h3>{upstreams}{origins}<h3>Rules</h3>{rules}<h3>Cache</h3>{cache}"
        f"<h3>Analysis</h3>{analysis}</section>"
    )
