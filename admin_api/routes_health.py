"""``/healthz`` (the process is up), ``/readyz`` (Redis answers) and ``/metrics``."""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError

from admin_api import prometheus_metrics
from admin_api.context import state_of
from admin_api.errors import error_response

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await state_of(request).redis.ping()
    except (RedisError, OSError):
        return error_response(503, "not_ready", "Redis is not reachable.")
    return web.json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = await prometheus_metrics.render(state_of(request))
    return web.Response(body=body.encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
