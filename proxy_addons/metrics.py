"""The proxy worker's counters, and their Prometheus exposition (``prometheus_client``).

The counters are plain integers bumped on the request path; the collector reads them, and the
worker's other state, only when ``/metrics`` is scraped. Each worker has its own registry, and
every sample carries the ``worker`` label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from proxy_addons.hitlog import HitQueue
from proxy_addons.identify import Identify
from proxy_addons.policy_sync import PolicySync


@dataclass
class WorkerCounters:
    requests: int = 0
    """Requests and tunnels decided (bumped once per verdict, by the record stage)."""
    blocks_by_category: dict[str, int] = field(default_factory=dict)
    fast_tunnels: int = 0
    """HTTPS tunnels relayed by the fast path."""
    handed_over: int = 0
    """Connections the fast path passed to mitmproxy."""
    idle_tunnels_closed: int = 0
    """Relayed tunnels closed after carrying nothing for ``upstream.tunnel_idle_seconds``."""
    portal_redirects: int = 0
    """Requests from unidentified devices on ``auth: portal`` networks sent to the sign-in
    page (302) or refused naming it (CONNECT)."""

    def tunnels_closed_idle(self, count: int) -> None:
        self.idle_tunnels_closed += count

    def blocked(self, category: str) -> None:
        self.blocks_by_category[category] = self.blocks_by_category.get(category, 0) + 1


@dataclass(frozen=True, slots=True)
class Health:
    ready: bool
    redis_unauthenticated: bool


class WorkerCollector:
    """A ``prometheus_client`` collector for one worker's state, read at scrape time."""

    def __init__(self, worker: str, counters: WorkerCounters, hits: HitQueue,
                 policy_sync: PolicySync, identify: Identify,
                 health: Callable[[], Health]) -> None:
        self.worker = worker
        self.counters = counters
        self.hits = hits
        self.policy_sync = policy_sync
        self.identify = identify
        self.health = health

    def _one(self, family: CounterMetricFamily | GaugeMetricFamily, value: float
             ) -> CounterMetricFamily | GaugeMetricFamily:
        family.add_metric([self.worker], value)
        return family

    def _counter(self, name: str, doc: str, value: float) -> Metric:
        return self._one(CounterMetricFamily(name, doc, labels=["worker"]), value)

    def _gauge(self, name: str, doc: str, value: float) -> Metric:
        return self._one(GaugeMetricFamily(name, doc, labels=["worker"]), value)

    def collect(self) -> Iterable[Metric]:
        counters, hits = self.counters, self.hits
        health = self.health()
        yield self._counter("esafety_proxy_requests_total", "Requests and tunnels decided.",
                            counters.requests)
        blocks = CounterMetricFamily("esafety_proxy_blocks_total", "Blocks by category.",
                                     labels=["worker", "category"])
        for category, count in sorted(counters.blocks_by_category.items()):
            blocks.add_metric([self.worker, category], count)
        yield blocks
        yield self._gauge("esafety_proxy_hit_queue_depth", "Hits not yet confirmed in Redis.",
                          hits.depth)
        yield self._gauge("esafety_proxy_spool_bytes", "Size of the local hit spool.",
                          hits.spool.size())
        yield self._gauge("esafety_proxy_spool_writable",
                          "0 when the hit spool cannot be written (disk full): hits wait in "
                          "memory for Redis.", 0 if hits.spool.error else 1)
        yield self._counter("esafety_proxy_hits_delivered_total", "Hits confirmed in Redis.",
                            hits.delivered)
        yield self._counter("esafety_proxy_hits_dropped_total",
                            "Hits lost because memory was full.", hits.dropped)
        yield self._counter("esafety_proxy_fast_tunnels_total",
                            "HTTPS tunnels relayed by the fast path.", counters.fast_tunnels)
        yield self._counter("esafety_proxy_idle_tunnels_closed_total",
                            "Relayed tunnels closed after carrying nothing for "
                            "upstream.tunnel_idle_seconds.", counters.idle_tunnels_closed)
        yield self._counter("esafety_proxy_handed_over_total",
                            "Connections the fast path passed to mitmproxy (plain HTTP, hosts "
                            "to decrypt, other ports, refusals, sign-in).", counters.handed_over)
        yield self._counter("esafety_proxy_portal_redirects_total",
                            "Requests from unidentified devices on auth: portal networks sent "
                            "to the Wi-Fi sign-in page.", counters.portal_redirects)
        yield self._gauge("esafety_proxy_policy_version", "Policy version in force.",
                          self.policy_sync.version)
        yield self._counter("esafety_proxy_auth_failures_total", "Refused proxy credentials.",
                            self.identify.auth_failures)
        yield self._gauge("esafety_proxy_redis_unauthenticated",
                          "1 when Redis runs commands for clients that never authenticated "
                          "(anyone reaching it can change the policy).",
                          1 if health.redis_unauthenticated else 0)
        yield self._gauge("esafety_proxy_ready",
                          "1 when Redis and the hit spool are fine (still 1 without block lists: "
                          "/readyz then says it is degraded, and why).",
                          1 if health.ready else 0)


def worker_registry(collector: WorkerCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in ``registry``."""
    return generate_latest(registry)
