"""Counting API requests by route, method and status, for ``/metrics``."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from admin_api.errors import Handler


class RequestMetrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()

    def count(self, request: web.Request, status: int) -> None:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        self.requests[(request.method, route, str(status))] += 1

    def middleware(self) -> web.middleware:  # type: ignore[valid-type]
        @web.middleware
        async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            self.count(request, response.status)
            return response
        return count_requests
