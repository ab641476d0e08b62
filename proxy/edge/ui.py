"""The web interface's routes: gather the data, hand it to the pure renderers (`proxy.ui`).

- ``/``: what this proxy is, how to point pip and uv here, the fleet's recent traffic.
- ``/ui/project/<project>/?profile=...&hidden=show|hide``: what that host gets, and why.
  ``/ui/project/?project=...&profile=...`` is where the landing page's form lands; it
  redirects to the project's own URL.
- ``/ui/wheel/<sha256>/``: a wheel's stored report; ``/ui/project/<project>/<filename>``
  redirects there.

Nothing here is on the path of ``/simple/``: the only cost the interface adds to serving
is `Fleet.saw`, one dictionary update. Decisions come from the host filter's cache;
rendering runs in a thread, so a large project does not hold up the event loop. Pages
carry no script, and say so in their Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from proxy import __version__
from proxy.cli.probe import pip_conf, profile_url, uv_toml
from proxy.core.models import is_sha256
from proxy.core.names import normalize_project
from proxy.core.profile import HostProfile, merge, parse_profile
from proxy.core.rules import Rules
from proxy.core.variants import wheel_project
from proxy.edge.fleet import Summary, summarise
from proxy.edge.index import UNIVERSAL, Context
from proxy.edge.request_profile import query_profile
from proxy.errors import BadRequest, HostfitError, NotFound
from proxy.ui.base import document, error_box, profile_form, url, wheel_url
from proxy.ui.landing import Install, Landing, UpstreamInfo, render_landing
from proxy.ui.project import render_project
from proxy.ui.wheel import Refusal, render_wheel

if TYPE_CHECKING:
    from proxy.edge.services import Services

HEADERS = {
    # No script at all: whatever an upstream string smuggles in cannot run.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:;"
        " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
DISK_USAGE_SECONDS = 30.0


def ui_routes() -> list[Route]:
    methods = ["GET", "HEAD"]
    return [
        Route("/", landing, methods=methods),
        Route("/ui/", lambda _: RedirectResponse("/", status_code=307), methods=methods),
        Route("/ui/project/", project_form, methods=methods),
        Route("/ui/project/{project}/", project_view, methods=methods),
        Route("/ui/project/{project}/{filename}", file_view, methods=methods),
        Route("/ui/wheel/{sha256}/", wheel_view, methods=methods),
    ]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=HEADERS)


def _error(exc: HostfitError, *, form: str = "") -> HTMLResponse:
    body = error_box(str(exc)) + form + '<p><a href="/">Back to the start page</a></p>'
    return _html(document("hostfit: error", body, heading="Something went wrong"), exc.status_code)


# -- landing ---------------------------------------------------------------------------


async def landing(request: Request) -> Response:
    services = _services(request)
    profile, error = "", None
    text = query_profile(request)
    if text:
        try:
            profile = parse_profile(text, "url").to_string()
        except BadRequest as exc:
            error = str(exc)
    await services.fleet.refresh(lambda project, ctx: _summary(services, project, ctx))
    base = str(request.base_url)
    index_url = profile_url(base, profile)
    usage = await _disk_usage(request, services.blobs.root)
    rules = services.rules.current
    walks, wanted = services.fleet.unsettled()
    data = Landing(
        version=__version__,
        install=Install(
            index_url=index_url,
            plain_url=profile_url(base, ""),
            universal_url=base.rstrip("/") + "/universal/simple/",
            pip_conf=pip_conf(index_url),
            uv_toml=uv_toml(index_url),
            probe=f"hostfit probe --index-url {base}",
        ),
        upstreams=upstream_infos(services.settings.upstreams),
        rules_digest=rules.digest,
        rule_files=tuple(_rule_file(name) for name in rules.files),
        rule_counts=_rule_counts(rules),
        cache_dir=str(services.settings.cache_dir),
        cache_bytes=usage[0] if usage else None,
        cache_files=usage[1] if usage else None,
        policy=services.settings.analysis,
        budget=services.settings.analysis_budget,
        analyses_run=services.gate.scheduler.service.computed,
        walks_unsettled=walks,
        wheels_wanted=wanted,
        now=time.time(),
        hosts=services.fleet.host_classes(),
        reasons=services.fleet.hidden_by_reason(),
        affected=services.fleet.most_affected(),
        profile=profile,
        error=error,
        default_profile=services.default_profile.to_string(),
        file_origins=tuple(redact_url(o) for o in getattr(services.settings, "file_origins", ())),
    )
    return _html(render_landing(data), 400 if error else 200)


async def _summary(services: Services, project: str, ctx: Context) -> Summary:
    decided = await services.filter.explain(normalize_project(project), ctx)
    decided = await services.variants.explain(decided, ctx)
    frontier = decided.frontier
    return summarise(decided.page_all, decided.verdicts, frontier.settled, len(frontier.wanted))


def redact_url(text: str) -> str:
    """Userinfo and the whole query, where credentials ride, become ``***``."""
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def upstream_infos(upstreams: tuple[Any, ...]) -> tuple[UpstreamInfo, ...]:
    """Plain URLs, or upstream objects with ``url`` (and maybe ``projects``, ``family``)."""
    found = []
    for upstream in upstreams:
        address = upstream if isinstance(upstream, str) else getattr(upstream, "url", "?")
        projects = getattr(upstream, "projects", None) or ()
        family = getattr(upstream, "family", None)
        found.append(
            UpstreamInfo(
                url=redact_url(str(address)),
                projects=tuple(str(p) for p in projects),
                family=str(family) if family else None,
            )
        )
    return tuple(found)


def _rule_file(name: str) -> str:
    return name.rsplit("/", 1)[-1] if name.startswith("/") else name


def _rule_counts(rules: Rules) -> dict[str, int]:
    return {
        "deny": len(rules.deny),
        "allow": len(rules.allow),
        "pins": len(rules.pins),
        "facts": len(rules.facts),
        "retag": len(rules.retag),
        "metadata fixes": len(rules.metadata),
        "quarantine": int(rules.quarantine is not None),
        "platforms": int(rules.platforms is not None),
        "yanked hidden": int(rules.yanked == "hide"),
    }


async def _disk_usage(request: Request, root: Path) -> tuple[int, int] | None:
    """(bytes, files) under the file cache, measured at most every 30 s, off the loop."""
    state = request.app.state
    cached: tuple[float, tuple[int, int]] | None = getattr(state, "ui_disk_usage", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < DISK_USAGE_SECONDS:
        return cached[1]
    try:
        usage = await asyncio.to_thread(_measure, root)
    except OSError:
        return None
    state.ui_disk_usage = (now, usage)
    return usage


def _measure(root: Path) -> tuple[int, int]:
    total = count = 0
    for directory, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(directory, name)).st_size
            except OSError:
                continue
            count += 1
    return total, count


# -- project ---------------------------------------------------------------------------


async def project_form(request: Request) -> Response:
    """Where the landing page's form lands: on to the project's own page."""
    raw = request.query_params.get("project", "").strip()
    if not raw:
        return RedirectResponse("/", status_code=303)
    try:
        name = normalize_project(raw)
    except NotFound as exc:
        form = profile_form(
            action="/ui/project/",
            profile=query_profile(request),
            project_field=True,
            project=raw,
        )
        return _error(exc, form=form)
    profile = query_profile(request)
    with contextlib.suppress(BadRequest):  # if bad, the project view says why, in place
        profile = parse_profile(profile, "url").to_string() or profile
    target = url(f"/ui/project/{quote(name, safe='')}/", profile=profile or None)
    return RedirectResponse(target, status_code=303)


async def project_view(request: Request) -> Response:
    services = _services(request)
    raw = request.path_params["project"]
    try:
        name = normalize_project(raw)
    except NotFound as exc:
        return _error(exc)
    if name != raw:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/ui/project/{quote(name, safe='')}/{query}", status_code=301)
    text = query_profile(request)
    show_hidden = request.query_params.get("hidden", "show") != "hide"
    try:
        given = parse_profile(text, "url") if text else HostProfile()
    except BadRequest as exc:
        try:
            page = await services.index.page(name, UNIVERSAL)
        except HostfitError as inner:
            return _error(inner)
        body = render_project(name, profile=text, files=page.files, explained=None, error=str(exc))
        return _html(body, 400)
    profile = merge(given, services.default_profile)
    try:
        if not profile:
            page = await services.index.page(name, UNIVERSAL)
            body = await asyncio.to_thread(
                render_project, name, profile="", files=page.files, explained=None
            )
            return _html(body)
        ctx = Context(profile=profile)
        decided = await services.variants.explain(await services.filter.explain(name, ctx), ctx)
        notes = await services.rewrites.explain(decided)
    except HostfitError as exc:
        return _error(exc)

    def build() -> str:
        data = decided.explained(profile, notes)
        return render_project(
            name,
            profile=given.to_string(),
            files=decided.page_all.files,
            explained=data,
            show_hidden=show_hidden,
        )

    return _html(await asyncio.to_thread(build))


async def file_view(request: Request) -> Response:
    """A file of a project by name: on to its wheel's report."""
    services = _services(request)
    filename: str = request.path_params["filename"]
    try:
        name = normalize_project(request.path_params["project"])
        page = await services.index.page(name, UNIVERSAL)
        file = page.file(filename)
        if file is None or not file.sha256:
            raise NotFound(f"{filename} is not a file of project {name}")
    except HostfitError as exc:
        return _error(exc)
    return RedirectResponse(wheel_url(file.sha256), status_code=303)


# -- wheel -----------------------------------------------------------------------------


async def wheel_view(request: Request) -> Response:
    services = _services(request)
    sha256 = request.path_params["sha256"].lower()
    if not is_sha256(sha256):
        return _error(NotFound(f"not a sha256 digest: {sha256[:80]!r}"))
    report = await services.gate.scheduler.service.cached(sha256)
    if report is None:
        body = (
            error_box(f"No report is stored for the wheel with sha256 {sha256}.")
            + "<p>It has not been analysed yet. hostfit analyses the wheels that hosts"
            " asking for their project may get, and every wheel downloaded through it.</p>"
            '<p><a href="/">Back to the start page</a></p>'
        )
        return _html(document("hostfit: no report", body, heading="No report yet"), 404)
    project = wheel_project(report.filename)
    # Host classes seen lately (pages served, downloads refused at the gate), summarised.
    await services.fleet.refresh(lambda name, ctx: _summary(services, name, ctx))
    refusals = (
        [Refusal(p, reasons) for p, reasons in services.fleet.refusals(project, report.filename)]
        if project is not None
        else []
    )
    body = await asyncio.to_thread(render_wheel, report, project=project, refusals=refusals)
    return _html(body)
