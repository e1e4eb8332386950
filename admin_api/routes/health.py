"""``/healthz`` (the process is up), ``/readyz`` (Redis answers) and ``/metrics``.

``/readyz`` stays 200 when Redis answers but also answers clients that never authenticated;
it then carries ``"warnings": [...]`` saying so, for monitoring to alert on (a 503 would take
a working filter out of a load balancer for a configuration fault)."""

from __future__ import annotations

import time

from aiohttp import web
from redis.exceptions import RedisError

from admin_api import prometheus_metrics
from admin_api.context import state_of
from admin_api.errors import error_response
from store.connection import UNAUTHENTICATED_WARNING, allows_anonymous_access

routes = web.RouteTableDef()

AUTH_CHECK_SECONDS = 60.0
_auth_checks: dict[str, tuple[float, str | None]] = {}
"""Redis URL -> (monotonic time checked, warning or None): one anonymous probe a minute."""


async def redis_auth_warning(url: str) -> str | None:
    """The warning to show when the Redis at ``url`` runs commands without authentication;
    None when it refuses them or cannot be reached (then /readyz reports the outage)."""
    try:
        open_to_anyone = await allows_anonymous_access(url)
    except (RedisError, OSError):
        return None
    return UNAUTHENTICATED_WARNING if open_to_anyone else None


async def _cached_auth_warning(url: str) -> str | None:
    now = time.monotonic()
    checked = _auth_checks.get(url)
    if checked is not None and now - checked[0] < AUTH_CHECK_SECONDS:
        return checked[1]
    warning = await redis_auth_warning(url)
    _auth_checks[url] = (now, warning)
    return warning


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await state_of(request).store.ping()
    except (RedisError, OSError):
        return error_response(503, "not_ready", "Redis is not reachable.")
    warning = await _cached_auth_warning(state_of(request).settings.redis_url)
    if warning:
        return web.json_response({"status": "ready", "warnings": [warning]})
    return web.json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    state = state_of(request)
    readings = await prometheus_metrics.read_store(state.store, state.tz, state.alerts,
                                                   state.feeder)
    return web.Response(body=state.metrics.exposition(readings),
                        headers={"Content-Type": prometheus_metrics.CONTENT_TYPE})
