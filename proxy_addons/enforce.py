"""Decide and enforce: block at CONNECT when the host decides, decrypt only when needed,
serve the block page for plain and decrypted requests, and log every block.

Decryption is selective. A tunnel is decrypted only when the path can change the decision
(URL-level rules or overrides for the host), the host is a search engine that needs safe
search, the host is configured for inspection, the TLS name (SNI) disagrees with the CONNECT
host, or the host looks like a DNS-over-HTTPS resolver. It is never decrypted for categories
marked no-decrypt (banking, health) or hosts configured as pinned. Everything else is tunnelled
untouched, and its certificate is the origin's own.
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
from categories.urlnorm import URLError, canonical_host
from esafety.config import Config
from proxy_addons.block_page import block_headers, connect_refusal, render_block_page
from proxy_addons.hitlog import HitQueue
from proxy_addons.identify import Identify, Identity, identity_of
from proxy_addons.policy_sync import PolicySync
from proxy_addons.search_engines import engine_of
from store.records import HitRecord, day_of, new_hit_id

log = logging.getLogger("esafety.enforce")

DOH_CATEGORY = "dns_over_https"
_DOH_CONTENT_TYPES = ("application/dns-message", "application/dns-json")
_DOH_PATHS = ("/dns-query", "/resolve")
_DOH_NAME_PREFIXES = ("dns.", "doh.", "dns-over-https.", "dot.")
ONBOARDING_HOST = "mitm.it"
PROBE_HOST = "esafety-proxy.invalid"
"""The proxy answers ``http://esafety-proxy.invalid/status`` itself. The ``.invalid`` name never
resolves, so a browser that gets an answer is on the centre proxy (the extension's test)."""


@dataclass
class TunnelPlan:
    """What was decided for a CONNECT tunnel, for the TLS and request hooks that follow."""

    host: str
    decrypt: bool
    identity: Identity


@dataclass(frozen=True, slots=True)
class ConnectPlan:
    host: str
    """The canonical CONNECT host."""
    decision: Decision
    refuse: bool
    """Answer 403 before any TLS: the host alone decides, or the path rules cannot be seen."""
    decrypt: bool


def _host_in(host: str, suffixes: tuple[str, ...]) -> bool:
    return any(host == s or host.endswith("." + s) for s in suffixes)


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
                 hits: HitQueue, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.identify = identify
        self.policy_sync = policy_sync
        self.hits = hits
        self.clock = clock or (lambda: datetime.now(UTC))
        self.tunnels: MutableMapping[connection.Client, TunnelPlan] = weakref.WeakKeyDictionary()
        self.requests = 0
        self.blocks_by_category: dict[str, int] = {}

    # -- decisions ---------------------------------------------------------------------------
    def _decide(self, url: str, identity: Identity, verdicts: tuple[str, ...] = ()) -> Decision:
        return self.policy_sync.policy.decide(url, user=identity.user, group=identity.group,
                                              at=self.clock(), verdicts=verdicts)

    def _should_decrypt(self, host: str, decision: Decision) -> bool:
        if not self.config.decryption_enabled:
            return False
        if decision.no_decrypt or _host_in(host, self.config.never_decrypt_hosts):
            return False
        policy = self.policy_sync.policy
        return (policy.needs_path(host)
                or (self.config.safe_search and engine_of(host) is not None)
                or _host_in(host, self.config.inspect_hosts)
                or host.startswith(_DOH_NAME_PREFIXES)
                or (decision.blocked and decision.rule is Rule.OVERRIDE))

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
        identity = identity_of(flow) or self._fallback(flow)
        decision = Decision(
            Action.ALLOW, Rule.WATCH_LIST, flow.request.pretty_host,
            "A search matched the Prevent watch list.", category="extremism",
            severity="high", safeguarding_alert=True)
        self._log(flow, identity, decision, flow.request.pretty_host, flow.request.path,
                  flow.request.scheme == "https", search_terms=", ".join(terms)[:200])

    def _fallback(self, flow: http.HTTPFlow) -> Identity:
        return self.identify.fallback_identity(
            flow.client_conn.peername[0] if flow.client_conn.peername else "")

    # -- hooks -------------------------------------------------------------------------------
    def connect_plan(self, raw_host: str, port: int, identity: Identity) -> ConnectPlan:
        """What to do with ``CONNECT raw_host:port``: refuse it, decrypt it, or tunnel it."""
        self.requests += 1
        decision = self._decide(f"https://{raw_host}:{port}/", identity)
        try:
            host = canonical_host(raw_host)
        except URLError:
            host = raw_host.lower()
        blocked_here = decision.blocked and not (
            decision.host and self.policy_sync.policy.needs_path(decision.host))
        decrypt = self._should_decrypt(host, decision) if decision.host else False
        refuse = blocked_here or (decision.blocked and not decrypt)
        return ConnectPlan(host, decision, refuse, decrypt)

    @staticmethod
    def refusal_headers(hit_id: str) -> dict[str, str]:
        return {"Content-Type": "text/plain; charset=utf-8", "X-Esafety-Hit-Id": hit_id,
                "Cache-Control": "no-store"}

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return  # the identify addon asked for credentials
        identity = identity_of(flow) or self._fallback(flow)
        plan = self.connect_plan(flow.request.host, flow.request.port, identity)
        if plan.refuse:
            hit_id = self._log(flow, identity, plan.decision, plan.host, "", False)
            flow.response = http.Response.make(
                403, connect_refusal(plan.decision, hit_id), self.refusal_headers(hit_id))
            return
        self.tunnels[flow.client_conn] = TunnelPlan(plan.host, plan.decrypt, identity)
        if self.config.log_allowed and not plan.decrypt:
            self._log(flow, identity, plan.decision, plan.host, "", False)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        client = data.context.client
        plan = self.tunnels.get(client)
        sni = data.client_hello.sni
        if plan is None:
            # Transparent mode, or TLS without a CONNECT: the TLS name is all there is.
            name = sni or (data.context.server.address[0] if data.context.server.address else "")
            identity = self.identify.fallback_identity(
                client.peername[0] if client.peername else "")
            decision = self._decide(f"https://{name}/", identity)
            host = decision.host or name
            decrypt = decision.blocked or self._should_decrypt(host, decision)
            self.tunnels[client] = TunnelPlan(host, decrypt, identity)
            data.ignore_connection = not decrypt
            return
        if sni:
            try:
                sni_host = canonical_host(sni)
            except URLError:
                sni_host = ""
            if sni_host != plan.host:
                # A TLS name that disagrees with the CONNECT host (domain fronting, or a
                # trick): decide on it too, and decrypt so every request can be checked.
                sni_decision = self._decide(f"https://{sni}/", plan.identity)
                if sni_decision.blocked or not sni_host:
                    plan.decrypt = True
        data.ignore_connection = not plan.decrypt

    def _answer_probe(self, flow: http.HTTPFlow) -> None:
        identity = identity_of(flow) or self._fallback(flow)
        body = {"proxy": "esafety", "centre": self.config.centre_id, "site": identity.site,
                "user": identity.user, "group": identity.group,
                "identified_by": identity.source}
        flow.response = http.Response.make(
            200, json.dumps(body).encode(),
            {"Content-Type": "application/json", "Cache-Control": "no-store",
             "Access-Control-Allow-Origin": "*"})

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.request.method == "CONNECT":
            return
        request = flow.request
        if request.host == ONBOARDING_HOST:
            return
        if request.host == PROBE_HOST:
            self._answer_probe(flow)
            return
        self.requests += 1
        plan = self.tunnels.get(flow.client_conn)
        identity = identity_of(flow) or (plan.identity if plan else None) or self._fallback(flow)
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
            candidate = self._decide(f"{scheme}://{name}{path}", identity, verdicts)
            if decision is None or (candidate.blocked and not decision.blocked):
                decision = candidate
            if candidate.blocked:
                break
        assert decision is not None
        decrypted = scheme == "https"
        host = decision.host or request.host
        if decision.blocked:
            url = f"{scheme}://{request.host}{path}"
            hit_id = self._log(flow, identity, decision, host, path, decrypted)
            flow.response = http.Response.make(
                403, render_block_page(decision, hit_id,
                                       self.clock().astimezone(
                                           self.policy_sync.policy.schedule.timezone),
                                       url, self.config.admin_public_url),
                block_headers(decision, hit_id))
            return
        if self.config.log_allowed:
            self._log(flow, identity, decision, host, path, decrypted)
