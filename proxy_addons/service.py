"""The proxy worker's own lifecycle: start and stop the background parts, and answer
``/healthz``, ``/readyz`` and Prometheus ``/metrics`` on a small side port."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from aiohttp import web
from redis.exceptions import RedisError

from proxy_addons.enforce import Enforce
from proxy_addons.hitlog import HitQueue
from proxy_addons.identify import Identify
from proxy_addons.policy_sync import PolicySync
from proxy_addons.tunnel_front import TunnelFront
from store.connection import UNAUTHENTICATED_WARNING, allows_anonymous_access

log = logging.getLogger("esafety.proxy")

AUTH_RETRY_SECONDS = 10.0


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


class ProxyService:
    """mitmproxy addon: owns the worker's background tasks and its status endpoint."""

    def __init__(self, policy_sync: PolicySync, hits: HitQueue, enforce: Enforce,
                 identify: Identify, status_listen: tuple[str, int] | None,
                 worker: str = "0") -> None:
        self.policy_sync = policy_sync
        self.hits = hits
        self.enforce = enforce
        self.identify = identify
        self.status_listen = status_listen
        self.worker = worker
        self.started_at = time.time()
        self.front: TunnelFront | None = None
        self.redis_url: str | None = None
        """Set by the runner: checked at start for a Redis open to unauthenticated clients."""
        self.redis_warning: str | None = None
        self.status_socket: socket.socket | None = None
        """Set by the runner: the status port, bound before start (a port in use is then one
        clear error, not a startup traceback)."""
        self._runner: web.AppRunner | None = None
        self._auth_check: asyncio.Task[None] | None = None

    async def running(self) -> None:
        self.hits.start()
        await self.policy_sync.start()
        if self.status_listen is not None:
            await self._start_status_server(*self.status_listen)
        if self.redis_url:
            self._auth_check = asyncio.create_task(self._check_redis_auth(self.redis_url))
        log.info("proxy worker %s ready (pid %d, policy version %d)", self.worker, os.getpid(),
                 self.policy_sync.version)

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
        problems = []
        if not self.policy_sync.redis_ok or not self.hits.redis_ok:
            problems.append("redis unreachable: policy held in memory, hits spooled")
        if self.hits.spool.error:
            problems.append(f"hit spool not writable: {self.hits.spool.error}")
        if self.policy_sync.policy.snapshot is None:
            problems.append("no list snapshot loaded: built-in entries only")
        return not problems, problems

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker": self.worker})

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, problems = self.ready()
        body: dict[str, object] = {"ready": ok, "problems": problems}
        if self.redis_warning:
            # Still 200: the filter works; monitoring sees the warning (and the metric).
            body["warnings"] = [self.redis_warning]
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        worker = _escape_label(self.worker)
        lines = [
            "# HELP esafety_proxy_requests_total Requests and tunnels decided.",
            "# TYPE esafety_proxy_requests_total counter",
            f'esafety_proxy_requests_total{{worker="{worker}"}} {self.enforce.requests}',
            "# HELP esafety_proxy_blocks_total Blocks by category.",
            "# TYPE esafety_proxy_blocks_total counter",
        ]
        for category, count in sorted(self.enforce.blocks_by_category.items()):
            lines.append(f'esafety_proxy_blocks_total{{worker="{worker}",'
                         f'category="{_escape_label(category)}"}} {count}')
        ok, _ = self.ready()
        lines += [
            "# HELP esafety_proxy_hit_queue_depth Hits not yet confirmed in Redis.",
            "# TYPE esafety_proxy_hit_queue_depth gauge",
            f'esafety_proxy_hit_queue_depth{{worker="{worker}"}} {self.hits.depth}',
            "# HELP esafety_proxy_spool_bytes Size of the local hit spool.",
            "# TYPE esafety_proxy_spool_bytes gauge",
            f'esafety_proxy_spool_bytes{{worker="{worker}"}} {self.hits.spool.size()}',
            "# HELP esafety_proxy_spool_writable 0 when the hit spool cannot be written "
            "(disk full): hits wait in memory for Redis.",
            "# TYPE esafety_proxy_spool_writable gauge",
            f'esafety_proxy_spool_writable{{worker="{worker}"}} '
            f'{0 if self.hits.spool.error else 1}',
            "# HELP esafety_proxy_hits_delivered_total Hits confirmed in Redis.",
            "# TYPE esafety_proxy_hits_delivered_total counter",
            f'esafety_proxy_hits_delivered_total{{worker="{worker}"}} {self.hits.delivered}',
            "# HELP esafety_proxy_hits_dropped_total Hits lost because memory was full.",
            "# TYPE esafety_proxy_hits_dropped_total counter",
            f'esafety_proxy_hits_dropped_total{{worker="{worker}"}} {self.hits.dropped}',
            "# HELP esafety_proxy_fast_tunnels_total HTTPS tunnels relayed by the fast path.",
            "# TYPE esafety_proxy_fast_tunnels_total counter",
            f'esafety_proxy_fast_tunnels_total{{worker="{worker}"}} '
            f'{self.front.tunnels if self.front else 0}',
            "# HELP esafety_proxy_handed_over_total Connections the fast path passed to "
            "mitmproxy (plain HTTP, hosts to decrypt, other ports).",
            "# TYPE esafety_proxy_handed_over_total counter",
            f'esafety_proxy_handed_over_total{{worker="{worker}"}} '
            f'{self.front.handed_over if self.front else 0}',
            "# HELP esafety_proxy_policy_version Policy version in force.",
            "# TYPE esafety_proxy_policy_version gauge",
            f'esafety_proxy_policy_version{{worker="{worker}"}} {self.policy_sync.version}',
            "# HELP esafety_proxy_auth_failures_total Refused proxy credentials.",
            "# TYPE esafety_proxy_auth_failures_total counter",
            f'esafety_proxy_auth_failures_total{{worker="{worker}"}} '
            f'{self.identify.auth_failures}',
            "# HELP esafety_proxy_redis_unauthenticated 1 when Redis runs commands for clients "
            "that never authenticated (anyone reaching it can change the policy).",
            "# TYPE esafety_proxy_redis_unauthenticated gauge",
            f'esafety_proxy_redis_unauthenticated{{worker="{worker}"}} '
            f'{1 if self.redis_warning else 0}',
            "# HELP esafety_proxy_ready 1 when Redis, spool and snapshot are all fine.",
            "# TYPE esafety_proxy_ready gauge",
            f'esafety_proxy_ready{{worker="{worker}"}} {1 if ok else 0}',
        ]
        return web.Response(text="\n".join(lines) + "\n",
                            content_type="text/plain", charset="utf-8")
