"""Counting the admin API's HTTP requests by method, route and status, for ``/metrics``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from admin_api.errors import Handler


class HttpMetrics:
    """``esafety_admin_requests_total``: one counter per app, in that app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("esafety_admin_requests", "Admin API requests.",
                                ("method", "route", "status"), registry=registry)

    def count(self, request: web.Request, status: int) -> None:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        self.requests.labels(request.method, route, str(status)).inc()

    def middleware(self) -> web.middleware:  # type: ignore[valid-type]
        @web.middleware
        async def count_http_requests(request: web.Request, handler: Handler
                                      ) -> web.StreamResponse:
            response = await handler(request)
            self.count(request, response.status)
            return response
        return count_http_requests
