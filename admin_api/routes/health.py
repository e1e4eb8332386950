"""``/healthz`` (the process is up), ``/readyz`` (Redis answers) and ``/metrics``.

``/readyz`` answers ``{"ready": ..., "degraded": ..., "reasons": [...]}``. It is 503 only when
the service cannot work (Redis does not answer). A service that works but is not fully set up
(no admin account yet, no block lists loaded: only the built-in starter lists) is ready but
*degraded*: 200, with the reasons, so a load balancer keeps a working filter in service and
monitoring (and a person) can read why. A Redis that also answers clients that never
authenticated is a ``"warnings": [...]`` entry, for the same reason. Each change of the reasons
is logged once."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from redis.exceptions import RedisError

from admin_api import prometheus_metrics
from admin_api.context import state_of
from admin_api.first_run_status import NO_ADMIN, admin_exists, block_list_status
from store.connection import UNAUTHENTICATED_WARNING, allows_anonymous_access

routes = web.RouteTableDef()
log = logging.getLogger("admin_api.health")
_last_reasons: dict[str, tuple[str, ...]] = {}
"""Key prefix -> the reasons /readyz last gave (logged when they change)."""

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
    state = state_of(request)
    try:
        await state.store.ping()
        has_admin = await admin_exists(state)
    except (RedisError, OSError):
        reason = "Redis is not reachable"
        _log_change(state.store.keys.prefix, (reason,), ready=False)
        return web.json_response({"ready": False, "degraded": True, "reasons": [reason],
                                  "error": {"code": "not_ready", "message": f"{reason}."}},
                                 status=503)
    reasons = [] if has_admin else [NO_ADMIN]
    lists = (await block_list_status(state)).reason
    if lists:
        reasons.append(lists)
    _log_change(state.store.keys.prefix, tuple(reasons), ready=True)
    body: dict[str, object] = {"status": "ready", "ready": True, "degraded": bool(reasons),
                               "reasons": reasons}
    warning = await _cached_auth_warning(state.settings.redis_url)
    if warning:
        body["warnings"] = [warning]
    return web.json_response(body)


def _log_change(prefix: str, reasons: tuple[str, ...], *, ready: bool) -> None:
    if _last_reasons.get(prefix) == reasons:
        return
    _last_reasons[prefix] = reasons
    if not ready:
        log.error("not ready: %s", "; ".join(reasons))
    elif reasons:
        log.warning("ready but degraded: %s", "; ".join(reasons))
    else:
        log.info("ready: an admin account exists and block lists are loaded")


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    state = state_of(request)
    readings = await prometheus_metrics.read_store(state.store, state.tz, state.alerts,
                                                   state.feeder)
    return web.Response(body=state.metrics.exposition(readings),
                        headers={"Content-Type": prometheus_metrics.CONTENT_TYPE})
