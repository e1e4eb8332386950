"""Building the admin API application: routes, middlewares, and its resources' lifetime.

Middlewares, outermost first: HTTP request metrics, errors as JSON, authentication (+ CSRF).
Security headers are added to every response in ``on_response_prepare``. The store (the Redis
client), the SQLite log store and the background workers (log feeder, alert consumer,
housekeeping, the RADIUS accounting listener where configured) live in one cleanup context,
so they start and stop with the app. Before the
app serves, the store indexes any workflow records an older release wrote (once; see
:meth:`store.redis_store.Store.build_indexes`). At stop the workers are
stopped and awaited first; the log store then waits for any call still running in a worker
thread before it closes, so nothing touches SQLite after close.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web
from redis.exceptions import RedisError

from admin_api.context import METRICS, SETTINGS, STATE, AdminSettings, AdminState
from admin_api.errors import error_middleware
from admin_api.log_store import LogStore
from admin_api.openapi import openapi_document
from admin_api.policy_view import PolicyView
from admin_api.prometheus_metrics import AdminMetrics
from admin_api.pseudonymiser import Pseudonymiser
from admin_api.routes import RESOURCES
from admin_api.security_headers import add_security_headers
from admin_api.sessions import authentication_middleware
from admin_api.workers import housekeeping
from admin_api.workers.alert_consumer import AlertConsumer
from admin_api.workers.alert_delivery import AlertDelivery, OutboxWorker
from admin_api.workers.directory_sync import DirectorySync
from admin_api.workers.log_feeder import LogFeeder
from admin_api.workers.radius_accounting import RadiusAccountingListener
from admin_api.workers.weekly_digest import WeeklyDigest
from store.connection import connect
from store.redis_store import Store

log = logging.getLogger(__name__)
LOG_STORE_FILE = "logstore.sqlite3"
WORKER_STOP_SECONDS = 5.0
RECANCEL_SECONDS = 0.05


async def admin_resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = Store(connect(settings.redis_url), settings.keys, tz=settings.timezone,
                  login_limits=settings.login_limits,
                  counters_days=settings.config.retention_counters_days)
    try:
        await housekeeping.build_indexes(store)
    except (RedisError, OSError) as exc:  # housekeeping tries again
        log.warning("could not index older records yet: %s", exc)
    settings.instance.ensure_data_dir()
    log_store = await asyncio.to_thread(LogStore(settings.data_dir / LOG_STORE_FILE).open)
    feeder = LogFeeder(store.hits, log_store)
    await feeder.start()
    alerts = settings.config.alerts
    policy = PolicyView(settings.instance, store.policy)

    def titles() -> dict[str, str]:
        return {c.id: c.title for c in policy.base().categories.values()}

    delivery = AlertDelivery(alerts, settings.environ, titles)
    consumer = AlertConsumer(store, delivery, alerts.group_window_seconds)
    outbox = OutboxWorker(store, delivery)
    digest = WeeklyDigest(store, delivery, alerts, settings.timezone, settings.config.centre_name,
                          titles)
    state = AdminState(settings=settings, store=store, log_store=log_store, feeder=feeder,
                       alerts=consumer, policy=policy, digest=digest,
                       pseudonymiser=Pseudonymiser(settings.data_dir), metrics=app[METRICS])
    app[STATE] = state
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    if settings.run_workers:
        await consumer.ensure_group()
        tasks = [asyncio.create_task(feeder.run(stop), name="log-feeder"),
                 asyncio.create_task(consumer.run(stop), name="alert-consumer"),
                 asyncio.create_task(outbox.run(stop), name="alert-delivery"),
                 asyncio.create_task(digest.run(stop), name="weekly-digest"),
                 asyncio.create_task(housekeeping.run(state, stop), name="housekeeping")]
        ldap = settings.config.identity.ldap
        if ldap is not None:  # the directory groups (identity.ldap): one admin host a turn
            directory = DirectorySync(store, ldap, profiles=settings.config.profiles,
                                      unidentified_group=settings.config.unidentified_group,
                                      environ=settings.environ)
            tasks.append(asyncio.create_task(directory.run(stop), name="directory-sync"))
    radius = await _start_radius_accounting(state)
    try:
        yield
    finally:
        if radius is not None:
            await radius.stop()
        # A stop flag as well as cancel(): a cancel landing inside redis-py's read timeout
        # can be swallowed, and the worker would then loop on; each loop checks the flag at
        # least every second.
        stop.set()
        for task in tasks:
            task.cancel()
        await _stopped(tasks)
        # Waits for calls still running in worker threads (a cancelled to_thread task leaves
        # its thread running), then closes the writer under its lock.
        await log_store.aclose()
        await store.aclose()


async def _start_radius_accounting(state: AdminState) -> RadiusAccountingListener | None:
    """The RADIUS accounting listener, where ``identity.radius_accounting`` is configured (with
    the workers). A port it cannot open is logged and the admin service runs on without it."""
    settings = state.settings
    radius = settings.config.identity.radius_accounting
    if radius is None or not settings.run_workers:
        return None
    listener = RadiusAccountingListener(
        radius, state.store, settings.environ if settings.environ is not None else os.environ,
        state.metrics.radius_accounting)
    try:
        await listener.start()
    except OSError as exc:
        log.error("RADIUS accounting cannot listen on %s (UDP): %s; addresses are not "
                  "bound from RADIUS until this is fixed", radius.listen, exc)
        await listener.stop()
        return None
    return listener


async def _stopped(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for the cancelled workers; report any that failed or would not stop.

    A cancel that lands inside redis-py at the wrong moment can be swallowed, so the ones still
    running are cancelled again every RECANCEL_SECONDS (each also checks its stop flag)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WORKER_STOP_SECONDS
    pending: set[asyncio.Task[None]] = set(tasks)
    while pending and loop.time() < deadline:
        _done, pending = await asyncio.wait(
            pending, timeout=min(RECANCEL_SECONDS, max(0.0, deadline - loop.time())))
        for task in pending:
            task.cancel()
    for task in pending:
        log.warning("%s did not stop within %.0f s", task.get_name(), WORKER_STOP_SECONDS)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("%s ended with %r", task.get_name(), task.exception())


def build_app(settings: AdminSettings) -> web.Application:
    metrics = AdminMetrics()
    app = web.Application(
        middlewares=[metrics.http.middleware(), error_middleware, authentication_middleware],
        client_max_size=256 * 1024)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app.cleanup_ctx.append(admin_resources)
    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/api/v1/openapi.json", openapi_document)
    for module in RESOURCES:
        app.add_routes(module.routes)
    return app
