"""The proxy worker's own lifecycle: start and stop the background parts, and answer
``/healthz``, ``/readyz`` and Prometheus ``/metrics`` (proxy_addons.metrics) on a small side
port."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from proxy_addons.hitlog import HitQueue
from proxy_addons.identify import Identify
from proxy_addons.metrics import (
    Health,
    WorkerCollector,
    WorkerCounters,
    exposition,
    worker_registry,
)
from proxy_addons.policy_sync import PolicySync
from store.connection import UNAUTHENTICATED_WARNING, allows_anonymous_access

log = logging.getLogger("esafety.proxy")

AUTH_RETRY_SECONDS = 10.0
NO_LISTS = ("no block lists are loaded: only the built-in starter lists are active; import "
            "lists in the admin UI's Set-up or with esafety lists import")


class ProxyService:
    """mitmproxy addon: owns the worker's background tasks and its status endpoint."""

    def __init__(self, policy_sync: PolicySync, hits: HitQueue, counters: WorkerCounters,
                 identify: Identify, status_listen: tuple[str, int] | None,
                 worker: str = "0") -> None:
        self.policy_sync = policy_sync
        self.hits = hits
        self.identify = identify
        self.status_listen = status_listen
        self.worker = worker
        self.started_at = time.time()
        self.registry = worker_registry(WorkerCollector(worker, counters, hits, policy_sync,
                                                        identify, self.health))
        """This worker's own Prometheus registry (never the process-wide default)."""
        self.redis_url: str | None = None
        """Set by the runner: checked at start for a Redis open to unauthenticated clients."""
        self.redis_warning: str | None = None
        self.status_socket: socket.socket | None = None
        """Set by the runner: the status port, bound before start (a port in use is then one
        clear error, not a startup traceback)."""
        self._runner: web.AppRunner | None = None
        self._auth_check: asyncio.Task[None] | None = None
        self._last_reasons: tuple[str, ...] = ()

    async def running(self) -> None:
        self.hits.start()
        await self.policy_sync.start()
        if self.status_listen is not None:
            await self._start_status_server(*self.status_listen)
        if self.redis_url:
            self._auth_check = asyncio.create_task(self._check_redis_auth(self.redis_url))
        log.info("proxy worker %s ready (pid %d, policy version %d)", self.worker, os.getpid(),
                 self.policy_sync.version)
        self._log_readiness()

    async def _check_redis_auth(self, url: str) -> None:
        """Find out once whether Redis runs commands for clients that never authenticated
        (retrying while it is unreachable), and warn loudly if so."""
        while True:
            try:
                open_to_anyone = await allows_anonymous_access(url)
            except (RedisError, OSError):
                await asyncio.sleep(AUTH_RETRY_SECONDS)
                continue
            if open_to_anyone:
                self.redis_warning = UNAUTHENTICATED_WARNING
                log.warning("%s", UNAUTHENTICATED_WARNING)
            return

    async def done(self) -> None:
        if self._auth_check is not None:
            self._auth_check.cancel()
        await self.policy_sync.stop()
        await self.hits.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("proxy worker %s stopped; %d hits delivered, %d left in the spool",
                 self.worker, self.hits.delivered, self.hits.depth)

    # -- status endpoint ---------------------------------------------------------------------
    async def _start_status_server(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # No SO_REUSEPORT: each worker has its own status port, and a second deployment on
        # the same port must fail, not share it.
        site: web.BaseSite = (web.SockSite(self._runner, self.status_socket)
                              if self.status_socket is not None
                              else web.TCPSite(self._runner, host or None, port))
        await site.start()

    def ready(self) -> tuple[bool, list[str]]:
        """Whether the worker can filter as configured, and what stops it (a 503)."""
        problems = []
        if not self.policy_sync.redis_ok or not self.hits.redis_ok:
            problems.append("redis unreachable: policy held in memory, hits spooled")
        if self.hits.spool.error:
            problems.append(f"hit spool not writable: {self.hits.spool.error}")
        return not problems, problems

    def degraded(self) -> list[str]:
        """What the worker filters without (still ready: it filters, with less)."""
        if self.policy_sync.policy.snapshot is None:
            return [NO_LISTS]
        return []

    def _log_readiness(self) -> None:
        """Log the reasons once each time they change, so the log says why."""
        ok, problems = self.ready()
        reasons = tuple(problems + self.degraded())
        if reasons == self._last_reasons:
            return
        self._last_reasons = reasons
        if not ok:  # a warning: mitmproxy stops a worker that logs an error while starting
            log.warning("proxy worker %s not ready: %s", self.worker, "; ".join(reasons))
        elif reasons:
            log.warning("proxy worker %s ready but degraded: %s", self.worker,
                        "; ".join(reasons))

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker": self.worker})

    async def _readyz(self, request: web.Request) -> web.Response:
        """200 while the worker filters (with ``degraded`` and the reasons when it filters
        with less, such as only the built-in starter lists), 503 with the reasons when it
        cannot filter as configured: a load balancer keeps a working filter in service."""
        ok, problems = self.ready()
        degraded = self.degraded()
        self._log_readiness()
        body: dict[str, object] = {"ready": ok, "degraded": bool(problems or degraded),
                                   "reasons": problems + degraded, "problems": problems}
        if self.redis_warning:
            # Still 200: the filter works; monitoring sees the warning (and the metric).
            body["warnings"] = [self.redis_warning]
        return web.json_response(body, status=200 if ok else 503)

    def health(self) -> Health:
        return Health(ready=self.ready()[0], redis_unauthenticated=bool(self.redis_warning))

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=exposition(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
