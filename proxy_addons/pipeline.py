"""The proxy as a pipeline of stages, and the one place that declares the addon order.

mitmproxy offers every hook to the addons in the order they were added, so the order is the
data flow. For each request hook:

``identify``  who is asking (407 when they must sign in) → ``flow.metadata["esafety.identity"]``
``decide``    the policy, the tunnel planner and the destination check, with the facts of
              DoH detection and the Prevent watch list → one frozen verdict
``respond``   the answer the verdict names (block page, refusal, 502, probe)
``record``    the verdict's hits to the hit log, and the counters

and after them: ``upstream_guard`` (the backstop on every upstream connection),
``safe_search`` (rewrites allowed search requests), ``tunnel_contents`` (after mitmproxy's
NextLayer and TlsConfig: closes what a tunnel may not carry), and ``forward_headers`` last,
so nothing after it adds a header. ``tests/proxy_addons/test_pipeline.py`` checks this order
on the list the worker uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deployment.config import Config
from deployment.public_address import admin_endpoints
from proxy_addons.decide import Decide
from proxy_addons.forward_headers import ForwardHeaders
from proxy_addons.hitlog import HitQueue
from proxy_addons.identify import Identify
from proxy_addons.metrics import WorkerCounters
from proxy_addons.policy_sync import PolicySync
from proxy_addons.record import Record
from proxy_addons.respond import Respond
from proxy_addons.safe_search import SafeSearch
from proxy_addons.search_watch import SearchWatch
from proxy_addons.tunnel_contents import TunnelContents
from proxy_addons.upstream_guard import UpstreamGuard
from proxy_addons.verdict import TunnelVerdicts

STAGES = ("identify", "decide", "respond", "record")
"""The request stages, in flow order; one addon each."""
ADDON_ORDER = (*STAGES, "upstream_guard", "safe_search", "tunnel_contents", "forward_headers")
"""Every filtering addon, in the order mitmproxy is given them."""


@dataclass(frozen=True)
class Pipeline:
    identify: Identify
    decide: Decide
    respond: Respond
    record: Record
    upstream_guard: UpstreamGuard
    safe_search: SafeSearch
    tunnel_contents: TunnelContents
    forward_headers: ForwardHeaders
    tunnels: TunnelVerdicts
    counters: WorkerCounters

    def addons(self) -> list[object]:
        """The filtering addons in :data:`ADDON_ORDER`."""
        return [getattr(self, name) for name in ADDON_ORDER]


def build_pipeline(config: Config, identify: Identify, policy_sync: PolicySync,
                   hits: HitQueue, own_ports: Iterable[int] = (),
                   probe_key: bytes | None = None) -> Pipeline:
    tunnels = TunnelVerdicts()
    counters = WorkerCounters()
    guard = UpstreamGuard(config.upstream, own_ports, admin_endpoints(config))
    watch = SearchWatch(config.alerts.prevent_watch_terms)
    return Pipeline(
        identify=identify,
        decide=Decide(config, identify, policy_sync, guard, watch, tunnels),
        respond=Respond(config, tunnels, probe_key),
        record=Record(hits, counters, tunnels),
        upstream_guard=guard,
        safe_search=SafeSearch(config.safe_search, config.youtube_restrict),
        tunnel_contents=TunnelContents(tunnels),
        forward_headers=ForwardHeaders(),
        tunnels=tunnels,
        counters=counters,
    )


def worker_addons(services: Sequence[object], pipeline: Pipeline,
                  listener: object) -> list[object]:
    """What a worker adds to mitmproxy after its own core addons: the services (no flow
    hooks: policy sync, the status service), the pipeline, and the listener last, so that
    connections are accepted only once every other addon is running."""
    return [*services, *pipeline.addons(), listener]
