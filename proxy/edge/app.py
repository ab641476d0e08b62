"""The Starlette application: routes and error mapping.

What the routes use is opened and stacked at start-up in `proxy.edge.services`; each
request reads top to bottom: name -> format -> context -> page -> links -> rendered
bytes -> response.
This module is the only place where `HostfitError`s become HTTP statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, cast
from urllib.parse import quote

from packaging.utils import NormalizedName
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.core.explain import explanation_html
from proxy.core.models import Page
from proxy.core.names import normalize_project
from proxy.core.negotiate import HTML_LEGACY, JSON_V1, accepts_gzip, negotiate, preferred
from proxy.core.pages import render_html_root, render_json_root
from proxy.core.profile import merge, parse_profile
from proxy.core.ranges import Unsatisfiable, requested_span
from proxy.core.redact import redact
from proxy.core.variants import VARIANTS_SUFFIX
from proxy.edge.admin import admin_routes
from proxy.edge.config import Settings
from proxy.edge.download import Download
from proxy.edge.gate import REFUSED_HEADER, Refused, Unverifiable
from proxy.edge.gc_tuning import tuned_gc
from proxy.edge.index import UNIVERSAL, Context
from proxy.edge.observe import Observe
from proxy.edge.render import Rendered, render_page
from proxy.edge.request_profile import (
    PROFILE_HEADER,
    VARY_FIXED,
    VARY_HOST,
    file_vary,
    query_profile,
    request_context,
    scope_context,
    scope_vary,
    vary,
)
from proxy.edge.responses import Admit, BlobResponse, DownloadResponse, send_page
from proxy.edge.rules_loader import watch_rules
from proxy.edge.services import Services, open_services
from proxy.edge.stores.blobs import OpenBlob
from proxy.edge.ui import ui_routes
from proxy.errors import HostfitError, NotFound

log = logging.getLogger("hostfit")

PAGE_MAX_AGE = 60
# Which upstream (or family of upstreams) a page came from, credentials redacted.
UPSTREAM_HEADER = "X-Hostfit-Upstream"
# A page decided before all its reports were in changes soon: keep clients asking.
PROVISIONAL_MAX_AGE = 5
COMPACT_SECONDS = 3600.0


def _app_services(app: Any) -> Services:
    """`Hostfit.services`, or the state's for an app that is no Hostfit."""
    services: Services | None = getattr(app, "services", None)
    return services if services is not None else cast(Services, app.state.services)


def _services(request: Request) -> Services:
    return _app_services(request.app)


def _prefix(request: Request) -> str:
    """The URL prefix the request came in under: "", "/universal" or "/p/<profile>"."""
    if "profile" in request.path_params:
        # As it came, encoded: an unknown key's value may hold '?', '#' or '/'.
        return f"/p/{quote(request.path_params['profile'], safe='=,+:')}"
    if request.url.path.startswith("/universal/"):
        return "/universal"
    return ""


@functools.lru_cache(maxsize=256)
def _upstream_header(upstream: str) -> str:
    """Configured upstreams are few: each one's redacted ASCII text is made once."""
    return redact(upstream).encode("ascii", "replace").decode()


def _etag_matches(header: str | None, *etags: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    offered = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return any(etag in offered for etag in etags)


async def simple_root(request: Request) -> Response:
    services = _services(request)
    # The list is every host's, but a malformed profile is a 400 on every route.
    request_context(request, services.default_profile)
    media = negotiate(request.headers.get("accept"), request.query_params.get("format"))
    projects = await services.index.projects()
    held = services.root_renders.get(media)
    if held is not None and held[0] is projects:  # the same list as last time: kept
        rendered = held[1]
    else:
        # On a thread: a big index's list (900,000 names) takes a second or two to write,
        # and its ETag's sha256 a few tens of milliseconds more.
        render = render_json_root if media == JSON_V1 else render_html_root
        rendered = await asyncio.to_thread(lambda: Rendered(render(projects)))
        services.root_renders[media] = (projects, rendered)
    # The biggest page an index has: cached by clients and shared caches as a project
    # page is, revalidated by its ETag, and gzipped for those that take it (30 MB of
    # names go in about a sixth of that).
    body, etag, gzip_ok = await _encoded(rendered, request.headers.get("accept-encoding"))
    headers = {"Vary": VARY_FIXED, "Cache-Control": _CACHE_CONTROL_TEXT, "ETag": etag}
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if gzip_ok:
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=_content_type(media), headers=headers)


async def _encoded(rendered: Rendered, accept_encoding: str | None) -> tuple[bytes, str, bool]:
    """The bytes to send and their ETag: the gzip encoding where the client takes it.
    Bytes and tag are read together: a better gzip encoding may land between two reads."""
    if accepts_gzip(accept_encoding):
        body, etag = await rendered.gzip_off_loop()
        return body, etag, True
    return rendered.body, rendered.etag, False


def _format_param(request: Request) -> str | None:
    # Most requests have no query string: spared parsing one.
    return request.query_params.get("format") if request.scope["query_string"] else None


def _content_type(media: str) -> str:
    return f"{media}; charset=utf-8" if media == HTML_LEGACY else media


_UPSTREAM_KEY = UPSTREAM_HEADER.lower().encode()
# The request headers a project page reads, found in one pass over the raw list.
_PAGE_HEADERS = {
    b"accept": "accept",
    b"accept-encoding": "accept-encoding",
    b"if-none-match": "if-none-match",
    b"user-agent": "user-agent",
    PROFILE_HEADER.encode(): PROFILE_HEADER,
}


class ProjectPage:
    """``/simple/<project>/``, the route of nearly every installer request, as a plain
    ASGI app: the few request headers it reads are found in one pass and the response
    goes out as raw headers, with no Starlette Request or Response object made (they
    were about a fifth of a cached page's cost). Its errors reach the app's one error
    mapping (`hostfit_error`) like any route's."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = _app_services(scope["app"])
        raw = scope["path_params"]["project"]
        name = normalize_project(raw)
        if name != raw or not scope["path"].endswith("/"):
            request = Request(scope, receive)
            target = f"{_prefix(request)}/simple/{name}/"
            if request.url.query:
                target += f"?{request.url.query}"
            await RedirectResponse(target, status_code=301)(scope, receive, send)
            return
        told: dict[str, str] = {}
        for key, value in scope["headers"]:
            wanted = _PAGE_HEADERS.get(key)  # ASGI gives header names in lowercase
            if wanted is not None and wanted not in told:
                told[wanted] = value.decode("latin-1")
        query = scope["query_string"]
        media = negotiate(
            told.get("accept"), Request(scope).query_params.get("format") if query else None
        )
        ctx = scope_context(
            scope, told.get(PROFILE_HEADER), told.get("user-agent"), services.default_profile
        )
        page = await services.index.page(name, ctx)
        services.fleet.saw(name, ctx)
        rendered = await _rendered(services, page, ctx, media)
        max_age = PROVISIONAL_MAX_AGE if page.provisional else PAGE_MAX_AGE
        body, etag, gzip_ok = await _encoded(rendered, told.get("accept-encoding"))
        headers = [
            (b"vary", scope_vary(scope).encode()),
            (b"cache-control", _CACHE_CONTROL[max_age]),
            (_UPSTREAM_KEY, _upstream_header(page.upstream).encode()),
            (b"etag", etag.encode()),
        ]
        if page.warning:
            headers.append((b"warning", page.warning.encode("latin-1")))
            services.metrics.stale_pages.inc()
        if _etag_matches(told.get("if-none-match"), etag):
            services.metrics.page_not_modified.inc()
            await send_page(send, 304, headers, b"")
            return
        headers.append((b"content-type", _content_type(media).encode()))
        if gzip_ok:
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send_page(send, 200, headers, body)


_CACHE_CONTROL_TEXT = f"max-age={PAGE_MAX_AGE}, public"
_CACHE_CONTROL = {
    age: f"max-age={age}, public".encode() for age in (PAGE_MAX_AGE, PROVISIONAL_MAX_AGE)
}
simple_project = ProjectPage()


async def variants_json(request: Request) -> Response:
    """``{name}-{version}-variants.json`` (PEP 825) beside the page that links it: for this
    request's host, as its page lists it (`proxy.edge.layers.variants`)."""
    services = _services(request)
    raw = request.path_params["project"]
    filename: str = request.path_params["filename"]
    name = normalize_project(raw)
    if not filename.endswith(VARIANTS_SUFFIX):
        raise NotFound(f"{filename}: files are served under files/, not beside the page")
    if name != raw:
        return RedirectResponse(f"{_prefix(request)}/simple/{name}/{filename}", status_code=301)
    ctx = request_context(request, services.default_profile)
    data = await services.variants.document(name, filename, ctx)
    headers = {
        "Vary": vary(request),
        "Cache-Control": f"max-age={PAGE_MAX_AGE}, public",  # may change: PEP 825
        "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
    }
    if _etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/json", headers=headers)


async def _rendered(services: Services, page: Page, ctx: Context, media: str) -> Rendered:
    generation = services.metadata.generation(page.name)
    key = (page.name, page.upstream, page.revision, ctx.view, media, generation)
    rendered = services.renders.get(key)
    if rendered is not None:
        return rendered
    hashes = services.metadata.advertised(page)
    # On a thread: the rendering, and its ETag's sha256 (7 ms for 5 MB), off the loop.
    return await asyncio.to_thread(
        services.renders.put, key, lambda: render_page(page, media, hashes)
    )


async def project_file(request: Request) -> Response:
    response = await _file_answer(request)
    varies = file_vary(request.scope)
    if varies is not None and not request.path_params["filename"].endswith(".metadata"):
        response.headers["Vary"] = varies
    return response


async def _file_answer(request: Request) -> Response:
    services = _services(request)
    name: NormalizedName = normalize_project(request.path_params["project"])
    filename: str = request.path_params["filename"]
    wants_metadata = filename.endswith(".metadata")
    base_name = filename.removesuffix(".metadata") if wants_metadata else filename
    page = await services.index.page(name, UNIVERSAL)
    file = subject = page.file(base_name)
    if file is None:
        file, subject = await services.rewrites.file(page, base_name)
    if file is None or subject is None:
        raise NotFound(f"{base_name} is not a file of project {name}")
    # (a 400 for a malformed profile)
    ctx = request_context(request, services.default_profile, installing=True)
    if wants_metadata:
        data = await services.metadata.get(file, name)
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )
    gate = services.gate if services.gate.applies(file, ctx) else None
    admit: Admit | None = None
    if gate is not None:
        judged = await gate.judged(file, subject)
        if not await gate.before_bytes(page, file, subject, judged, ctx):
            # Judged while the bytes go, before their end leaves (`Withheld`).
            admit = functools.partial(gate.admit_streamed, page, file, subject, ctx, judged)
    opened = await services.files.open(file)
    if isinstance(opened, OpenBlob):
        services.metrics.file_hits.inc()
        return BlobResponse(opened, file, admit)
    services.metrics.file_misses.inc()
    await opened.wait_started()
    if admit is not None and opened.uncached is not None:
        # The cache would not take it (its budget, a full disk): its bytes could not be
        # checked before they leave. Said now, not as a transfer cut at its end.
        raise Unverifiable(
            f"{file.filename}: not served to this host: its bytes cannot be checked here"
            f" ({opened.uncached})"
        )
    if admit is not None:
        admit = functools.partial(_once_downloaded, opened, admit)
    range_header = request.headers.get("range")
    if range_header and opened.size is not None:
        # Served from the download as it grows: no second upstream request.
        try:
            span = requested_span(range_header, opened.size)
        except Unsatisfiable:
            # The size is the upstream's word until the bytes are verified.
            await opened.wait_done()
            if opened.error is not None:
                raise opened.error from None
            return Response(status_code=416, headers={"Content-Range": f"bytes */{opened.size}"})
        return DownloadResponse(opened, admit, span)
    return DownloadResponse(opened, admit)


async def _once_downloaded(download: Download, admit: Admit) -> str | None:
    """A wheel is judged from the whole cached file: a range ends before the download.
    (The transfer's own `Download.chunks` takes the request's place.)"""
    await download.until_done()
    if download.error is not None:
        return str(download.error)
    return await admit()


async def explain(request: Request) -> Response:
    """``/explain/<project>/?profile=...``: JSON for machines, a table for people."""
    services = _services(request)
    name = normalize_project(request.path_params["project"])
    profile_text = query_profile(request) if "profile" in request.query_params else None
    if profile_text is not None:
        profile = merge(parse_profile(profile_text, "url"), services.default_profile)
        ctx = Context(profile=profile)
    else:
        ctx = request_context(request, services.default_profile)
    decided = await services.variants.explain(await services.filter.explain(name, ctx), ctx)
    notes = await services.rewrites.explain(decided)
    data = decided.explained(ctx.profile, notes)
    wanted = request.query_params.get("format")
    wants_json = wanted == "json" or (
        wanted is None
        and preferred(request.headers.get("accept"), ("text/html", "application/json"))
        == "application/json"
    )
    # Without ?profile= the answer is the requesting host's.
    headers = {"Vary": "Accept" if profile_text is not None else f"Accept, {VARY_HOST}"}
    if wants_json:
        return JSONResponse(data, headers=headers)
    return HTMLResponse(explanation_html(data), headers=headers)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    services = _services(request)
    try:
        await services.store.ping()
    except Exception as exc:
        return PlainTextResponse(f"state store unavailable: {redact(str(exc))}\n", status_code=503)
    if not services.blobs.tmp.is_dir():
        return PlainTextResponse("cache directory missing\n", status_code=503)
    blobs = services.blobs
    budget = f"{blobs.max_size} bytes" if blobs.max_size is not None else "no budget"
    return PlainTextResponse(f"ready\ncache: {blobs.used} bytes in {blobs.count} files, {budget}\n")


async def metrics(request: Request) -> Response:
    body, content_type = _services(request).metrics.render()
    return Response(body, media_type=content_type)


async def hostfit_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HostfitError)
    if exc.status_code >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, Refused):
        headers[REFUSED_HEADER] = exc.message.encode("ascii", "replace").decode()
        # This host's answer: another host may be served the same URL, so no shared
        # cache keeps it, and one that does keys it by what told the host.
        headers["Cache-Control"] = "no-store"
        varies = file_vary(request.scope)
        if varies is not None:
            headers["Vary"] = varies
    return PlainTextResponse(f"{exc}\n", status_code=exc.status_code, headers=headers)


class _VariantsFile(Convertor[str]):
    """Only ``...-variants.json`` beside a page: any other path under a project stays a
    404 instead of being redirected to (Starlette redirects a near miss's slash)."""

    regex = r"[^/]+" + re.escape(VARIANTS_SUFFIX)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("variants", _VariantsFile())


def _simple_routes() -> list[Route]:
    methods = ["GET", "HEAD"]
    return [
        Route("/simple/", simple_root, methods=methods),
        Route("/simple/{project}/", simple_project, methods=methods),
        Route("/simple/{project}", simple_project, methods=methods),
        Route("/simple/{project}/{filename:variants}", variants_json, methods=methods),
        Route("/files/{project}/{filename}", project_file, methods=methods),
    ]


class Hostfit(Starlette):
    """The app, with one route served in front of Starlette's middleware and router.

    ``GET /simple/<project>/`` is nearly every request an installer makes. Starlette's
    error middlewares and router cost it about a third of a cached page's time, so it is
    taken here, before them, by a stack doing the same for it: `Observe` as for every
    route, then `_ErrorMapped` (Starlette's ExceptionMiddleware and ServerErrorMiddleware
    for this one route), then the route's app, with the scope the router would have set.
    Everything else, including this route under a mount or a root path, goes through
    Starlette as before."""

    # Also in ``state.services``, which Starlette answers through a Python __getattr__:
    # read here on every request instead (`proxy.edge.observe`).
    services: Services | None = None

    def __init__(self, *, page_route: Route, observe: Callable[[ASGIApp], ASGIApp], **kw: Any):
        super().__init__(**kw)
        self._page_route = page_route
        self._page = observe(_ErrorMapped(page_route.app))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            found = _PAGE_PATH.fullmatch(scope["path"])
            if found is not None and not scope.get("root_path"):
                scope["app"] = self
                scope["router"] = self.router
                scope["route"] = self._page_route
                scope["endpoint"] = self._page_route.endpoint
                scope["path_params"] = {"project": found.group(1)}
                await self._page(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


# What Starlette's "/simple/{project}/" matches (its default convertor: no slash).
_PAGE_PATH = re.compile(r"/simple/([^/]+)/")


class _ErrorMapped:
    """A route's app with the app's error mapping: a `HostfitError` answered by
    `hostfit_error`, Starlette's `HTTPException` by its status and detail, anything else a
    plain 500 and raised on for the server to log, as Starlette answers them on every
    other route; once the answer has started, raised on. (Inside `Observe`, unlike
    Starlette's 500: that answer carries the request id and its bytes are counted.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except HostfitError as exc:
            if started:
                raise
            response = await hostfit_error(Request(scope, receive), exc)
            await response(scope, receive, send)
        except HTTPException as exc:
            if started:
                raise
            await PlainTextResponse(exc.detail, exc.status_code, exc.headers)(scope, receive, send)
        except Exception:
            if not started:
                await PlainTextResponse("Internal Server Error", status_code=500)(
                    scope, receive, send
                )
            raise


def build_app(settings: Settings, access_log: bool = False) -> Hostfit:
    """``access_log``: one ``hostfit.access`` line per request (`proxy.edge.observe`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            if isinstance(app, Hostfit):
                app.services = services
            # Last: what start-up made lives as long as the process (proxy.edge.gc_tuning).
            with tuned_gc():
                async with watch_rules(services.rules):
                    yield

    simple = _simple_routes()
    routes = [
        # First: the router tries routes in order, and these take nearly every request.
        *simple,
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/explain/{project}/", explain, methods=["GET"]),
        *ui_routes(),
        *admin_routes(),
        Mount("/universal", routes=_simple_routes()),
        Mount("/p/{profile}", routes=_simple_routes()),
    ]
    (page_route,) = (r for r in simple if r.path == "/simple/{project}/")
    return Hostfit(
        page_route=page_route,
        observe=lambda app: Observe(app, routes=routes, access=access_log),
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HostfitError: hostfit_error},
        middleware=[Middleware(Observe, routes=routes, access=access_log)],
    )
