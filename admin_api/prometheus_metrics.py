"""The admin's ``/metrics``, exposed by ``prometheus_client``.

No personal data: request counts by route, today's blocks by category, the policy version,
the depths of the work queues (alert consumer pending entries, log store lag, open
unblock requests and alerts), and RADIUS accounting packets by outcome.

Each app has its own :class:`AdminMetrics` (one ``CollectorRegistry``), so several apps in
one process (the tests) never share counts. Request counts are a ``Counter`` updated as
requests are answered; the store's values are read from Redis at scrape time
(:func:`read_store`, async) and handed to a custom collector for that one exposition.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from admin_api.http_metrics import HttpMetrics
from admin_api.workers.alert_consumer import AlertConsumer
from admin_api.workers.log_feeder import LogFeeder
from store.redis_store import Store

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
RADIUS_OUTCOMES = ("accepted", "bad_authenticator", "unknown_client", "malformed", "unusable")


@dataclass(frozen=True)
class StoreReadings:
    """What the store says at one scrape."""

    blocks_today: dict[str, int] = field(default_factory=dict)
    """Category -> blocked requests today (the centre's local day)."""
    policy_version: int = 0
    hits_stream_length: int = 0
    alert_queue_pending: int = 0
    log_store_lag_seconds: float = 0.0
    unblock_requests_open: int = 0
    alerts_open: int = 0


async def read_store(store: Store, tz: ZoneInfo, consumer: AlertConsumer,
                     feeder: LogFeeder) -> StoreReadings:
    today = datetime.now(tz).strftime("%Y%m%d")
    (counters,) = await store.hits.day_counts([today])
    blocks: dict[str, int] = {}
    for name, value in counters.items():
        parts = name.split("|")
        if len(parts) == 4 and parts[0] == "block":
            blocks[parts[1]] = blocks.get(parts[1], 0) + int(value)
    return StoreReadings(
        blocks_today=blocks,
        policy_version=await store.policy.version(),
        hits_stream_length=await store.hits.stream_length(),
        alert_queue_pending=await consumer.pending(),
        log_store_lag_seconds=(await feeder.lag_seconds()
                               if await store.hits.stream_exists() else 0.0),
        unblock_requests_open=await store.unblock_requests.count_open(),
        alerts_open=await store.alerts.count_open(),
    )


_GAUGES: dict[str, tuple[str, str]] = {
    # StoreReadings field -> (metric name, help)
    "policy_version": ("esafety_policy_version", "Current policy version."),
    "hits_stream_length": ("esafety_hits_stream_length", "Entries in the hits stream."),
    "alert_queue_pending": ("esafety_alert_queue_pending",
                            "Hits handed to an alert consumer, not yet done."),
    "log_store_lag_seconds": ("esafety_log_store_lag_seconds",
                              "How far the log store trails the hits stream."),
    "unblock_requests_open": ("esafety_unblock_requests_open",
                              "Unblock requests waiting for a decision."),
    "alerts_open": ("esafety_alerts_open", "Safeguarding alerts not yet acknowledged."),
}


class StoreCollector(Collector):
    """The store's gauges, from the readings of the scrape in progress (none between
    scrapes)."""

    def __init__(self) -> None:
        self.readings: StoreReadings | None = None

    def collect(self) -> Iterator[Metric]:
        readings = self.readings
        if readings is None:
            return
        blocks = GaugeMetricFamily("esafety_blocks_today",
                                   "Blocked requests today (local day), by category.",
                                   labels=["category"])
        for category, count in sorted(readings.blocks_today.items()):
            blocks.add_metric([category], count)
        yield blocks
        for attribute, (name, help_text) in _GAUGES.items():
            yield GaugeMetricFamily(name, help_text, value=getattr(readings, attribute))


class AdminMetrics:
    """One app's metrics: its registry, the HTTP request counter and the store's gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.radius_accounting = Counter(
            "esafety_radius_accounting_packets",
            "RADIUS accounting packets by outcome: accepted, bad_authenticator, unknown_client "
            "and malformed (dropped unanswered), unusable (answered, nothing bound).",
            ("outcome",), registry=self.registry)
        for outcome in RADIUS_OUTCOMES:
            self.radius_accounting.labels(outcome)
        self._store = StoreCollector()
        self.registry.register(self._store)

    def exposition(self, readings: StoreReadings) -> bytes:
        """The text exposition with ``readings`` as the store's values. Synchronous, so two
        scrapes on one event loop never see each other's readings."""
        self._store.readings = readings
        try:
            return generate_latest(self.registry)
        finally:
            self._store.readings = None
