"""Raises safeguarding alerts from the ``hits`` stream, in a consumer group.

Every admin process joins the ``alerts`` consumer group, so each hit is handed to exactly one
of them; an entry is acknowledged (XACK) only after its alert is stored. Entries a crashed
consumer left pending are claimed by another after :data:`CLAIM_IDLE_MS` (XAUTOCLAIM), and
:meth:`store.alerts.Alerts.record_hit` ignores a hit it has already counted, so a redelivery
is harmless. A new alert is stored with its pending deliveries and their outbox entries in
one transaction, before XACK (:mod:`admin_api.workers.alert_delivery` sends them); the
consumer reads with a one-second block, so an alert is raised within seconds of the hit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from redis.exceptions import RedisError

from admin_api.workers.alert_delivery import AlertDelivery
from store import alerts
from store.hits import hit_from_entry
from store.redis_store import Store

log = logging.getLogger(__name__)
GROUP = "alerts"
BLOCK_MS = 1000
BATCH = 500
CLAIM_IDLE_MS = 60_000
CLAIM_EVERY_SECONDS = 30.0


FIRST_START_LOOKBACK = 24 * 3600
"""How far back a newly created alert consumer group starts: the DSL's escalation window."""


class AlertConsumer:
    def __init__(self, store: Store, delivery: AlertDelivery, window_seconds: int) -> None:
        self._hits = store.hits
        self._alerts = store.alerts
        self._delivery = delivery
        self._window = window_seconds
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.raised = 0

    async def ensure_group(self, now: float | None = None) -> None:
        """Create the consumer group once. A deployment that already holds hits starts from the
        last 24 hours (the escalation window), not from every hit ever stored."""
        start_ms = int(((time.time() if now is None else now) - FIRST_START_LOOKBACK) * 1000)
        await self._hits.create_group(GROUP, f"{start_ms}-0")

    async def pending(self) -> int:
        return await self._hits.pending(GROUP)

    async def _handle(self, entries: list[tuple[Any, Any]]) -> None:
        done = []
        for stream_id, fields in entries:
            done.append(stream_id)
            if not fields:
                continue  # trimmed away while pending
            try:
                hit = hit_from_entry(dict(fields))
            except (ValueError, TypeError):
                continue
            if not alerts.alerting(hit):
                continue
            _alert, new = await self._alerts.record_hit(
                hit, self._window, self._delivery.channels, self._delivery.expiry_seconds)
            if new:
                self.raised += 1
        if done:
            await self._hits.acknowledge(GROUP, done)

    async def claim_stale(self) -> None:
        start = "0-0"
        while True:
            start, claimed = await self._hits.claim_idle(GROUP, self.consumer, CLAIM_IDLE_MS,
                                                         start, BATCH)
            if claimed:
                await self._handle(claimed)
            if start == "0-0" or not claimed:
                return

    async def step(self, block_ms: int | None = BLOCK_MS) -> int:
        entries = await self._hits.read_group(GROUP, self.consumer, BATCH, block_ms)
        if not entries:
            return 0
        await self._handle(entries)
        return len(entries)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (checked at least every second)."""
        loop = asyncio.get_running_loop()
        next_claim = 0.0
        while not stop.is_set():
            try:
                if loop.time() >= next_claim:
                    await self.ensure_group()
                    await self.claim_stale()
                    next_claim = loop.time() + CLAIM_EVERY_SECONDS
                await self.step()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, RuntimeError) as exc:
                log.warning("alert consumer: %s; retrying", exc)
                next_claim = 0.0  # re-create the group if the stream was deleted
                await asyncio.sleep(1.0)
