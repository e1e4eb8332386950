"""Decide and enforce: block at CONNECT when the host decides, decrypt only when needed,
serve the block page for plain and decrypted requests, and log every block.

Decryption is selective. A tunnel is decrypted only when the path can change the decision
(URL-level rules or overrides for the host), the host is a search engine that needs safe
search, the host is configured for inspection, or the host looks like a DNS-over-HTTPS
resolver. It is never decrypted for categories marked no-decrypt (banking, health) or hosts
configured as pinned. Everything else is tunnelled untouched, and its certificate is the
origin's own. What a tunnel may carry once its TLS name is known is the tunnel planner's
answer (proxy_addons.tunnel_plan), the same one the CONNECT fast path uses.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime

from mitmproxy import connection, http, tls

from categories.decision import Action, Decision, Rule
from deployment.config import Config
from proxy_addons.block_page import block_headers, connect_refusal, render_block_page
from proxy_addons.hitlog import HitQueue
from proxy_addons.identify import Identify, Identity, identity_of
from proxy_addons.policy_sync import PolicySync
from proxy_addons.probe_signature import ProbeError, sign_probe
from proxy_addons.tunnel_plan import ONBOARDING_HOST, TunnelAction, TunnelPlan, TunnelPlanner
from store.records import HitRecord, day_of, new_hit_id

log = logging.getLogger("esafety.enforce")

DOH_CATEGORY = "dns_over_https"
_DOH_CONTENT_TYPES = ("application/dns-message", "application/dns-json")
_DOH_PATHS = ("/dns-query", "/resolve")
ONBOARDING_REASON = "The proxy's certificate page is only served under its own name."
PROBE_HOST = "esafety-proxy.invalid"
"""The proxy answers ``http://esafety-proxy.invalid/status`` itself. The ``.invalid`` name never
resolves, so a browser that gets an answer is on the centre proxy (the extension's test)."""


@dataclass
class OpenTunnel:
    """What was decided for a client's CONNECT tunnel, for the TLS and request hooks after it."""

    connect_host: str
    port: int
    host: str
    action: TunnelAction
    identity: Identity


def looks_like_doh(flow: http.HTTPFlow) -> bool:
    """A DNS-over-HTTPS request, by path or by content type, to any resolver."""
    request = flow.request
    path = request.path.split("?", 1)[0].rstrip("/").lower()
    if path.endswith(_DOH_PATHS) and (request.method in ("GET", "POST")) and (
            "dns=" in request.path or "name=" in request.path or request.method == "POST"):
        return True
    content_type = request.headers.get("content-type", "").lower()
    accept = request.headers.get("accept", "").lower()
    return any(t in content_type or t in accept for t in _DOH_CONTENT_TYPES)


class Enforce:
    def __init__(self, config: Config, identify: Identify, policy_sync: PolicySync,
                 hits: HitQueue, clock: Callable[[], datetime] | None = None,
                 probe_key: bytes | None = None) -> None:
        self.config = config
        self.probe_key = probe_key
        """The private key that signs probe answers (see :mod:`store.probe_key`)."""
        self.identify = identify
        self.policy_sync = policy_sync
        self.hits = hits
        self.clock = clock or (lambda: datetime.now(UTC))
        self.planner = TunnelPlanner(config, lambda: self.policy_sync.policy)
        self.tunnels: MutableMapping[connection.Client, OpenTunnel] = weakref.WeakKeyDictionary()
        self.requests = 0
        self.blocks_by_category: dict[str, int] = {}

    # -- decisions ---------------------------------------------------------------------------
    def _decide(self, url: str, identity: Identity, verdicts: tuple[str, ...] = ()) -> Decision:
        return self.policy_sync.policy.decide(url, user=identity.user, group=identity.group,
                                              at=self.clock(), verdicts=verdicts)

    # -- hits --------------------------------------------------------------------------------
    def _log(self, flow: http.HTTPFlow, identity: Identity, decision: Decision, host: str,
             path: str, decrypted: bool, search_terms: str = "") -> str:
        client_ip = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        return self.log_hit(client_ip, flow.request.method, identity, decision, host, path,
                            decrypted, search_terms)

    def log_hit(self, client_ip: str, method: str, identity: Identity, decision: Decision,
                host: str, path: str, decrypted: bool, search_terms: str = "") -> str:
        """Queue a hit record; return its id (the reference on the block page)."""
        now = self.clock()
        ts = now.timestamp()
        tz = self.policy_sync.policy.schedule.timezone
        hit_id = new_hit_id(ts, tz)
        hit = HitRecord(
            id=hit_id, ts=ts, user=identity.user or "", group=identity.group,
            client_ip=client_ip, site=identity.site, host=host, path=path.split("?", 1)[0][:512],
            action=decision.action.value, category=decision.category or "",
            rule=decision.rule.value, source=decision.source or "",
            severity=decision.severity or "", alert=decision.safeguarding_alert,
            decrypted=decrypted, method=method, search_terms=search_terms,
        )
        self.hits.record(day_of(ts, tz), hit)
        if decision.blocked:
            key = decision.category or decision.rule.value
            self.blocks_by_category[key] = self.blocks_by_category.get(key, 0) + 1
        return hit_id

    def log_search_terms(self, flow: http.HTTPFlow, terms: list[str]) -> None:
        """Record a search that matched the Prevent watch list; the admin raises an alert."""
        identity = identity_of(flow) or self.fallback(flow)
        decision = Decision(
            Action.ALLOW, Rule.WATCH_LIST, flow.request.pretty_host,
            "A search matched the Prevent watch list.", category="extremism",
            severity="high", safeguarding_alert=True)
        self._log(flow, identity, decision, flow.request.pretty_host, flow.request.path,
                  flow.request.scheme == "https", search_terms=", ".join(terms)[:200])

    def log_flow_hit(self, flow: http.HTTPFlow, decision: Decision, host: str, path: str,
                     decrypted: bool) -> str:
        """Queue a hit for a flow, identified as the other hooks identify it."""
        return self._log(flow, identity_of(flow) or self.fallback(flow), decision, host, path,
                         decrypted)

    def block(self, flow: http.HTTPFlow, decision: Decision, identity: Identity) -> None:
        """Answer a request with the block page, and log the hit."""
        request = flow.request
        path = request.path if request.path.startswith("/") else "/" + request.path
        scheme = request.scheme
        host = decision.host or request.host
        url = f"{scheme}://{request.host}{path}"
        hit_id = self._log(flow, identity, decision, host, path, scheme == "https")
        flow.response = http.Response.make(
            403, render_block_page(decision, hit_id,
                                   self.clock().astimezone(
                                       self.policy_sync.policy.schedule.timezone),
                                   url, self.config.admin_public_url),
            block_headers(decision, hit_id))

    def fallback(self, flow: http.HTTPFlow) -> Identity:
        return self.identify.fallback_identity(
            flow.client_conn.peername[0] if flow.client_conn.peername else "")

    # -- hooks -------------------------------------------------------------------------------
    def tunnel_plan(self, connect_host: str, port: int, sni: str | None,
                    identity: Identity) -> TunnelPlan:
        """The planner's answer for this tunnel now (see proxy_addons.tunnel_plan)."""
        if sni is None:
            self.requests += 1
        return self.planner.tunnel_plan(connect_host, port, sni, identity, self.clock())

    @staticmethod
    def refusal_headers(hit_id: str) -> dict[str, str]:
        return {"Content-Type": "text/plain; charset=utf-8", "X-Esafety-Hit-Id": hit_id,
                "Cache-Control": "no-store"}

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return  # the identify addon asked for credentials
        identity = identity_of(flow) or self.fallback(flow)
        plan = self.tunnel_plan(flow.request.host, flow.request.port, None, identity)
        if plan.action is TunnelAction.REFUSE:
            hit_id = self._log(flow, identity, plan.decision, plan.host, "", False)
            flow.response = http.Response.make(
                403, connect_refusal(plan.decision, hit_id), self.refusal_headers(hit_id))
            return
        self.tunnels[flow.client_conn] = OpenTunnel(flow.request.host, flow.request.port,
                                                    plan.host, plan.action, identity)
        if self.config.log_allowed and plan.action is TunnelAction.TUNNEL:
            self._log(flow, identity, plan.decision, plan.host, "", False)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        client = data.context.client
        tunnel = self.tunnels.get(client)
        sni = data.client_hello.sni or ""
        address = client.peername[0] if client.peername else ""
        if tunnel is None:
            # Transparent mode, or TLS without a CONNECT: the TLS name is all there is.
            name = sni or (data.context.server.address[0] if data.context.server.address else "")
            port = data.context.server.address[1] if data.context.server.address else 443
            identity = self.identify.fallback_identity(address)
            plan = self.planner.host_plan(name, port, identity, self.clock())
            # A refused host is decrypted too, so that its block page can be shown.
            action = (TunnelAction.TUNNEL if plan.action is TunnelAction.TUNNEL
                      else TunnelAction.DECRYPT)
            self.tunnels[client] = OpenTunnel(name, port, plan.host, action, identity)
            data.ignore_connection = action is TunnelAction.TUNNEL
            return
        plan = self.tunnel_plan(tunnel.connect_host, tunnel.port, sni, tunnel.identity)
        tunnel.action = plan.action
        if plan.action in (TunnelAction.CLOSE, TunnelAction.REFUSE):
            tunnel.action = TunnelAction.CLOSE  # tunnel_contents closes it at the handshake
            if plan.decision.blocked:
                self.log_hit(address, "CONNECT", tunnel.identity, plan.decision, plan.host, "",
                             False)
            data.ignore_connection = False
            return
        data.ignore_connection = plan.action is TunnelAction.TUNNEL

    def _answer_probe(self, flow: http.HTTPFlow) -> None:
        identity = identity_of(flow) or self.fallback(flow)
        body = {"proxy": "esafety", "centre": self.config.centre_id, "site": identity.site,
                "user": identity.user, "group": identity.group,
                "identified_by": identity.source}
        nonce = flow.request.query.get("nonce", "")
        if self.probe_key is not None and nonce:
            try:
                body = sign_probe(self.probe_key, nonce, body)
            except ProbeError:
                pass  # answered unsigned: the extension counts it as off-network
        flow.response = http.Response.make(
            200, json.dumps(body).encode(),
            # No CORS header: the extension reads it with its host permission, and no web page
            # may learn who is browsing.
            {"Content-Type": "application/json", "Cache-Control": "no-store"})

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.request.method == "CONNECT":
            return
        request = flow.request
        names_given = (request.host.lower(), request.pretty_host.lower().rstrip("."))
        if ONBOARDING_HOST in names_given:
            if names_given != (ONBOARDING_HOST, ONBOARDING_HOST):
                # The onboarding app answers under its own name only; never a foreign Host.
                self.block(flow, Decision(Action.BLOCK, Rule.INTERNAL_DESTINATION,
                                          ONBOARDING_HOST, ONBOARDING_REASON),
                           identity_of(flow) or self.fallback(flow))
            return  # served by the onboarding app (or refused by the upstream guard)
        if request.host == PROBE_HOST:
            self._answer_probe(flow)
            return
        self.requests += 1
        plan = self.tunnels.get(flow.client_conn)
        identity = identity_of(flow) or (plan.identity if plan else None) or self.fallback(flow)
        scheme = request.scheme
        path = request.path if request.path.startswith("/") else "/" + request.path
        names = [request.host]
        host_header = request.headers.get("host")
        if host_header and host_header.rsplit(":", 1)[0].strip("[]") != request.host:
            names.append(host_header)
        if flow.client_conn.sni and flow.client_conn.sni != request.host:
            names.append(flow.client_conn.sni)
        if plan is not None and plan.host != request.host:
            names.append(plan.host)
        verdicts = (DOH_CATEGORY,) if looks_like_doh(flow) else ()
        decision: Decision | None = None
        for name in names:
            if name.count(":") >= 2 and not name.startswith("["):
                name = f"[{name}]"  # an IPv6 literal, as it is written in a URL
            candidate = self._decide(f"{scheme}://{name}{path}", identity, verdicts)
            if decision is None or (candidate.blocked and not decision.blocked):
                decision = candidate
            if candidate.blocked:
                break
        assert decision is not None
        decrypted = scheme == "https"
        host = decision.host or request.host
        if decision.blocked:
            self.block(flow, decision, identity)
            return
        if self.config.log_allowed:
            self._log(flow, identity, decision, host, path, decrypted)
