"""Stage 4 of the proxy, ``record``: the hits a verdict names go to the hit log, and the
worker's counters move.

It runs in the same hook as the answer, before mitmproxy sends it, so a hit is in the spool
before the learner sees its reference (see proxy_addons.hitlog). It never asks the policy.
"""

from __future__ import annotations

from mitmproxy import http, tls

from proxy_addons.hitlog import HitQueue
from proxy_addons.metrics import WorkerCounters
from proxy_addons.verdict import Answer, TunnelVerdicts, Verdict, verdict_of
from store.records import HitRecord, day_of

RECORDED_KEY = "esafety.recorded"


class Record:
    """mitmproxy addon: records each verdict once (and the fast path's, through
    :meth:`record`)."""

    def __init__(self, hits: HitQueue, counters: WorkerCounters,
                 tunnels: TunnelVerdicts) -> None:
        self.hits = hits
        self.counters = counters
        self.tunnels = tunnels

    def record(self, verdict: Verdict) -> None:
        if verdict.counted:
            self.counters.requests += 1
        if verdict.answer is Answer.PORTAL:
            self.counters.portal_redirects += 1
        identity = verdict.identity
        ts = verdict.at.timestamp()
        day = day_of(ts, verdict.tz)
        for entry in verdict.hits:
            decision = entry.decision
            self.hits.record(day, HitRecord(
                id=entry.hit_id, ts=ts, user=identity.user or "", group=identity.group,
                client_ip=verdict.client_ip, site=identity.site, host=entry.host,
                path=entry.path.split("?", 1)[0][:512], action=decision.action.value,
                category=decision.category or "", rule=decision.rule.value,
                source=decision.source or "", severity=decision.severity or "",
                alert=decision.safeguarding_alert, decrypted=entry.decrypted,
                method=verdict.method, search_terms=entry.search_terms,
                device=identity.device, identified_by=identity.source))
            if decision.blocked:
                self.counters.blocked(decision.category or decision.rule.value)

    def _flow(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if verdict is None or flow.metadata.get(RECORDED_KEY):
            return
        flow.metadata[RECORDED_KEY] = True
        self.record(verdict)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._flow(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._flow(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        self._flow(flow)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        verdict = self.tunnels.take_hello(data.context.client)
        if verdict is not None:
            self.record(verdict)
