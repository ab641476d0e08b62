"""Admin endpoints: purge a project's pages, drop a wheel's report, reload the rules.

Off unless an admin token is configured (`--admin-token`, `HOSTFIT_ADMIN_TOKEN`): then
every admin request must carry ``Authorization: Bearer <token>``; without a token the
routes answer 404 as if they did not exist. Each action is idempotent and logged.

- ``POST /admin/projects/<project>/purge``: this process forgets the project's cached
  pages (memory and the state store, so replicas sharing Redis refetch too, once their
  in-memory copy ages out); the next request fetches it from upstream.
- ``POST /admin/reports/<sha256>/drop``: the stored report is deleted and decisions are
  made again; the wheel is analysed anew when next needed (an analyzer fix, a report
  one doubts).
- ``POST /admin/rules/reload``: the rules are read again, as on SIGHUP; bad rules are
  refused with their message and the old ones stay in force.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.core.models import is_sha256
from proxy.core.names import normalize_project
from proxy.errors import BadRequest, HostfitError, NotFound

log = logging.getLogger("hostfit.admin")


class Unauthorized(HostfitError):
    status_code = 401


Handler = Callable[[Any, Request], Awaitable[dict[str, Any]]]


def _guarded(action: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        services = request.app.state.services
        token: str | None = services.settings.admin_token
        if not token:
            raise NotFound("admin endpoints are off: no admin token is configured")
        offered = request.headers.get("authorization", "")
        scheme, _, value = offered.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip(), token):
            raise Unauthorized("admin: a valid 'Authorization: Bearer <token>' is required")
        result = await action(services, request)
        log.info("admin: %s %s", request.url.path, result)
        return JSONResponse(result)

    return endpoint


async def purge_project(services: Any, request: Request) -> dict[str, Any]:
    name = normalize_project(request.path_params["project"])
    for cache in services.page_caches:
        await cache.purge(name)
    services.filter.forget_decisions()
    return {"purged": name, "upstreams": len(services.page_caches)}


async def drop_report(services: Any, request: Request) -> dict[str, Any]:
    sha256 = request.path_params["sha256"].lower()
    if not is_sha256(sha256):
        raise BadRequest(f"not a sha256 digest: {sha256[:80]!r}")
    dropped = await services.gate.scheduler.forget(sha256)
    services.filter.forget_decisions()
    return {"dropped": sha256, "was_stored": dropped}


async def reload_rules(services: Any, request: Request) -> dict[str, Any]:
    if not services.rules.reload():
        raise BadRequest("the rules were not reloaded (see the log); the old ones stay")
    return {"rules": services.rules.current.digest[:12]}


def admin_routes() -> list[Route]:
    return [
        Route("/admin/projects/{project}/purge", _guarded(purge_project), methods=["POST"]),
        Route("/admin/reports/{sha256}/drop", _guarded(drop_report), methods=["POST"]),
        Route("/admin/rules/reload", _guarded(reload_rules), methods=["POST"]),
    ]
