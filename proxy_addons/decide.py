"""Stage 2 of the proxy, ``decide``: one frozen verdict per flow (see proxy_addons.verdict).

It asks the policy (with the facts of DNS-over-HTTPS detection and the Prevent watch list),
the tunnel planner (proxy_addons.tunnel_plan) and the upstream guard's destination check, and
writes what to answer and which hits to record. It answers nothing and records nothing itself.
The admin service, at its exact addresses (see proxy_addons.upstream_guard), is let through
for everyone without a policy decision or a hit: the block page's buttons lead there.

Decryption is selective. A tunnel is decrypted only when the path can change the decision
(URL-level rules or overrides for the host), the host is a search engine that needs safe
search, the host is configured for inspection, or the host looks like a DNS-over-HTTPS
resolver. It is never decrypted for categories marked no-decrypt (banking, health) or hosts
configured as pinned. Everything else is tunnelled untouched, and its certificate is the
origin's own. A blocked host is refused at CONNECT, except for a device that trusts the
centre's CA (a ``managed`` network, or signed in through the browser extension): its tunnel is
decrypted only to show the block page, and never connected upstream. What a tunnel may carry
once its TLS name is known is the tunnel planner's answer, the same one the CONNECT fast path
uses.

On a network marked ``auth: portal``, a device nobody has signed in (no sign-in on the
connection, no portal or RADIUS binding for its address) is sent to the Wi-Fi sign-in page
(:attr:`Answer.PORTAL`) before any policy decision: plain HTTP (the operating systems'
captive-portal probes included) and CONNECT alike. The admin service, the onboarding host and
the proxy's own probe are still answered as usual, so the sign-in page loads through the proxy.

Every policy question carries the ``online_during`` windows of the network the client is on
(:meth:`Decide.network_hours`); outside them (or the group's own) the policy refuses with rule
``outside_hours``, at CONNECT for HTTPS. The admin service and ``mitm.it`` are answered before
the policy, so they stay reachable at any hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from mitmproxy import http, tls

from categories.decision import Action, Decision, Rule
from categories.profiles import ANY_HOUR, NetworkHours
from deployment.config import Config, portal_sign_in_hosts
from proxy_addons.doh import doh_verdicts
from proxy_addons.identify import Identify, Identity, identity_of
from proxy_addons.policy_sync import PolicySync
from proxy_addons.probe_answer import PROBE_HOST
from proxy_addons.search_watch import SearchWatch, watch_decision
from proxy_addons.tunnel_plan import (
    ONBOARDING_HOST,
    ONBOARDING_REASON,
    TunnelAction,
    TunnelPlan,
    TunnelPlanner,
)
from proxy_addons.upstream_guard import Refusal, UpstreamGuard
from proxy_addons.verdict import (
    VERDICT_KEY,
    Answer,
    HitEntry,
    OpenTunnel,
    TunnelVerdicts,
    Verdict,
    verdict_of,
)
from store.records import new_hit_id

ADMIN_REASON = ("The centre's e-safety service (where a blocked site can be reported or "
                "its review asked for) is always reachable.")

HTTP_PORT_REASON = ("The centre's web filter only fetches plain web pages from the usual web "
                    "port; this port is not allowed.")


def client_ip(flow: http.HTTPFlow) -> str:
    return flow.client_conn.peername[0] if flow.client_conn.peername else ""


def shown_url(request: http.Request) -> str:
    """The request's address as the block page shows it: the port kept unless it is the
    scheme's own."""
    path = request.path if request.path.startswith("/") else "/" + request.path
    host = f"[{request.host}]" if ":" in request.host else request.host
    default = 443 if request.scheme == "https" else 80
    port = "" if request.port == default else f":{request.port}"
    return f"{request.scheme}://{host}{port}{path}"


def admin_decision(host: str) -> Decision:
    """Why a request to the admin service goes through (never logged, never blocked)."""
    return Decision(Action.ALLOW, Rule.ADMIN_SERVICE, host, ADMIN_REASON)


class Decide:
    """mitmproxy addon: writes ``flow.metadata["esafety.verdict"]`` once per flow."""

    def __init__(self, config: Config, identify: Identify, policy_sync: PolicySync,
                 guard: UpstreamGuard, watch: SearchWatch, tunnels: TunnelVerdicts,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.identify = identify
        self.policy_sync = policy_sync
        self.guard = guard
        self.watch = watch
        self.tunnels = tunnels
        self.clock = clock or (lambda: datetime.now(UTC))
        self.planner = TunnelPlanner(config, lambda: self.policy_sync.policy)
        self.sign_in_hosts = portal_sign_in_hosts(config.identity)
        """Hosts a device on a portal network reaches before signing in (single sign-on)."""

    # -- building verdicts -------------------------------------------------------------------
    def now(self) -> tuple[datetime, ZoneInfo]:
        tz = self.policy_sync.policy.schedule.timezone
        return self.clock().astimezone(tz), tz

    def verdict(self, answer: Answer, decision: Decision | None, identity: Identity,
                address: str, method: str, url: str,
                hits: list[tuple[Decision, str, str, bool, str]],
                counted: bool = True) -> Verdict:
        """A verdict decided now; ``hits`` are (decision, host, path, decrypted, search
        terms), each given its reference here so the block page can show it."""
        at, tz = self.now()
        ts = at.timestamp()
        entries = tuple(HitEntry(new_hit_id(ts, tz), hit_decision, host, path, decrypted,
                                 terms)
                        for hit_decision, host, path, decrypted, terms in hits)
        return Verdict(answer, decision, identity, address, method, url, at, tz, entries,
                       counted)

    def network_hours(self, address: str) -> NetworkHours:
        """The name and ``online_during`` windows of the network ``address`` is on, for
        access windows and class sessions."""
        network = self.identify.network_for(address)
        if network is None or not (network.online_during or network.name):
            return ANY_HOUR
        return NetworkHours(network.name or "", network.online_during)

    def connect_plan(self, host: str, port: int, identity: Identity,
                     address: str = "") -> TunnelPlan:
        """The planner's answer for ``CONNECT host:port`` from ``address`` now (the fast path
        asks it too); the admin service's own address is tunnelled untouched, whatever the
        policy or the hours say."""
        if self.guard.is_admin(host, port):
            name = host.strip("[]").rstrip(".").lower()
            return TunnelPlan(TunnelAction.TUNNEL, name, admin_decision(name))
        return self.planner.tunnel_plan(host, port, None, identity, self.clock(),
                                        self.network_hours(address))

    def tunnel_verdict(self, plan: TunnelPlan, identity: Identity, address: str) -> Verdict:
        """An opened tunnel: logged when allowed requests are logged."""
        hits = ([(plan.decision, plan.host, "", False, "")]
                if self.config.log_allowed and plan.action is TunnelAction.TUNNEL
                and plan.decision.rule is not Rule.ADMIN_SERVICE else [])
        return self.verdict(Answer.FORWARD, plan.decision, identity, address, "CONNECT",
                            plan.host, hits)

    def refusal_verdict(self, decision: Decision, host: str, identity: Identity,
                        address: str) -> Verdict:
        return self.verdict(Answer.REFUSE_CONNECT, decision, identity, address, "CONNECT",
                            host, [(decision, host, "", False, "")])

    def hello_plan(self, tunnel: OpenTunnel, sni: str, address: str
                   ) -> tuple[TunnelAction, Verdict | None]:
        """The tunnel planned again with its TLS name: the action, and a verdict when the
        tunnel is closed (with a hit when a rule refused the name)."""
        if self.guard.is_admin(tunnel.connect_host, tunnel.port):
            return TunnelAction.TUNNEL, None  # the bytes reach only the admin service
        plan = self.planner.tunnel_plan(tunnel.connect_host, tunnel.port, sni, tunnel.identity,
                                        self.clock(), self.network_hours(address))
        if plan.action not in (TunnelAction.CLOSE, TunnelAction.REFUSE):
            return plan.action, None
        hits = [(plan.decision, plan.host, "", False, "")] if plan.decision.blocked else []
        return TunnelAction.CLOSE, self.verdict(
            Answer.CLOSE, plan.decision, tunnel.identity, address, "CONNECT", plan.host, hits,
            counted=False)

    def trusts_ca(self, identity: Identity, address: str) -> bool:
        """The device trusts the centre's CA: it is on a network marked ``managed`` (the CA
        is pushed by Group Policy, Intune...), or signed in with a token from the browser
        extension, which is installed on managed devices."""
        network = self.identify.network_for(address)
        if network is not None and network.managed:
            return True
        proof = identity.proof
        return identity.source == "auth" and proof is not None and proof.digest is not None

    def needs_portal(self, identity: Identity, address: str, host: str = "") -> bool:
        """The device is on a network with ``auth: portal`` and nobody is signed in on it
        (the identity comes from the address range only), and ``host`` is not one of the
        single sign-on provider's, which a device reaches to sign in."""
        if identity.source not in ("network", "unidentified"):
            return False
        name = host.rstrip(".").lower()
        if name and any(name == h or name.endswith("." + h) for h in self.sign_in_hosts):
            return False
        network = self.identify.network_for(address)
        return network is not None and network.auth == "portal"

    def fallback(self, flow: http.HTTPFlow) -> Identity:
        return self.identify.fallback_identity(client_ip(flow))

    @staticmethod
    def _write(flow: http.HTTPFlow, verdict: Verdict) -> None:
        flow.metadata[VERDICT_KEY] = verdict

    def _block(self, flow: http.HTTPFlow, decision: Decision, identity: Identity,
               counted: bool = True) -> Verdict:
        request = flow.request
        path = request.path if request.path.startswith("/") else "/" + request.path
        return self.verdict(Answer.BLOCK_PAGE, decision, identity, client_ip(flow),
                            request.method, shown_url(request),
                            [(decision, decision.host or request.host, path,
                              request.scheme == "https", "")], counted)

    # -- hooks -------------------------------------------------------------------------------
    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or verdict_of(flow) is not None:
            return  # the identify stage asked for credentials
        request = flow.request
        identity = identity_of(flow) or self.fallback(flow)
        address = client_ip(flow)
        if (self.needs_portal(identity, address, request.host)
                and not self.guard.is_admin(request.host, request.port)
                and request.host.rstrip(".").lower() != ONBOARDING_HOST):
            # Browsers follow no redirect on CONNECT: a 403 whose text names the sign-in page.
            self._write(flow, self.verdict(Answer.PORTAL, None, identity, address, "CONNECT",
                                           f"{request.host}:{request.port}", [],
                                           counted=False))
            return
        plan = self.connect_plan(request.host, request.port, identity, address)
        if plan.action is TunnelAction.REFUSE and self.trusts_ca(identity, address):
            plan = self.planner.block_page_plan(plan)
        if plan.action is TunnelAction.REFUSE:
            self._write(flow, self.refusal_verdict(plan.decision, plan.host, identity, address))
            return
        if plan.action is TunnelAction.BLOCK_PAGE:
            # Decrypted only to answer with the block page: never resolved or connected.
            # Each request inside is one hit, as on plain HTTP.
            self.tunnels.open(flow.client_conn, OpenTunnel(
                request.host, request.port, plan.host, plan.action, identity, plan.decision))
            self._write(flow, self.verdict(Answer.FORWARD, plan.decision, identity, address,
                                           "CONNECT", plan.host, []))
            return
        self.tunnels.open(flow.client_conn, OpenTunnel(request.host, request.port, plan.host,
                                                       plan.action, identity))
        if request.host.rstrip(".").lower() != ONBOARDING_HOST:
            # Decrypted and answered by the onboarding app; never connected upstream.
            destination = await self.guard.check(request.host, request.port)
            if isinstance(destination, Refusal):
                if destination.decision is None:
                    self._write(flow, self.verdict(Answer.UNRESOLVED, None, identity, address,
                                                   "CONNECT", plan.host, []))
                else:
                    self._write(flow, self.refusal_verdict(
                        destination.decision, destination.decision.host, identity, address))
                return
        self._write(flow, self.tunnel_verdict(plan, identity, address))

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        client = data.context.client
        tunnel = self.tunnels.tunnel(client)
        address = client.peername[0] if client.peername else ""
        if tunnel is None:
            # Transparent mode, or TLS without a CONNECT: the TLS name is all there is.
            server = data.context.server.address
            name = data.client_hello.sni or (server[0] if server else "")
            port = server[1] if server else 443
            identity = self.identify.fallback_identity(address)
            plan = self.planner.host_plan(name, port, identity, self.clock(),
                                          self.network_hours(address))
            # A refused host is decrypted too, so that its block page can be shown.
            action = (TunnelAction.TUNNEL if plan.action is TunnelAction.TUNNEL
                      else TunnelAction.DECRYPT)
            self.tunnels.open(client, OpenTunnel(name, port, plan.host, action, identity))
            return
        if tunnel.action is TunnelAction.BLOCK_PAGE:
            return  # whatever the TLS name, every request inside gets the block page
        action, verdict = self.hello_plan(tunnel, data.client_hello.sni or "", address)
        self.tunnels.open(client, replace(tunnel, action=action))
        if verdict is not None:
            self.tunnels.hello_decided(client, verdict)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if (flow.response is not None or flow.request.method == "CONNECT"
                or verdict_of(flow) is not None):
            return
        request = flow.request
        names_given = (request.host.lower(), request.pretty_host.lower().rstrip("."))
        if ONBOARDING_HOST in names_given:
            identity = identity_of(flow) or self.fallback(flow)
            if names_given != (ONBOARDING_HOST, ONBOARDING_HOST):
                # Redirected under its own name only; never with a foreign Host.
                self._write(flow, self._block(
                    flow, Decision(Action.BLOCK, Rule.INTERNAL_DESTINATION, ONBOARDING_HOST,
                                   ONBOARDING_REASON), identity, counted=False))
            else:
                # The admin service's onboarding page has the centre's CA and how to trust it.
                self._write(flow, self.verdict(Answer.ONBOARDING, None, identity,
                                               client_ip(flow), request.method, request.url,
                                               [], counted=False))
            return
        if request.host == PROBE_HOST:
            self._write(flow, self.verdict(Answer.PROBE, None,
                                           identity_of(flow) or self.fallback(flow),
                                           client_ip(flow), request.method, request.url, [],
                                           counted=False))
            return
        self._write(flow, await self._decide_request(flow))

    async def _decide_request(self, flow: http.HTTPFlow) -> Verdict:
        request = flow.request
        tunnel = self.tunnels.tunnel(flow.client_conn)
        identity = (identity_of(flow) or (tunnel.identity if tunnel else None)
                    or self.fallback(flow))
        if tunnel is not None and tunnel.action is TunnelAction.BLOCK_PAGE \
                and tunnel.decision is not None:
            # Decrypted only for this: the block page, whatever was asked inside.
            return self._block(flow, tunnel.decision, identity)
        if tunnel is None and self.guard.is_admin(request.host, request.port):
            return await self._admin_request(flow, identity)
        if tunnel is None and self.needs_portal(identity, client_ip(flow), request.host):
            return self.verdict(Answer.PORTAL, None, identity, client_ip(flow),
                                request.method, shown_url(request), [], counted=False)
        scheme = request.scheme
        path = request.path if request.path.startswith("/") else "/" + request.path
        names = [request.host]
        host_header = request.headers.get("host")
        if host_header and host_header.rsplit(":", 1)[0].strip("[]") != request.host:
            names.append(host_header)
        if flow.client_conn.sni and flow.client_conn.sni != request.host:
            names.append(flow.client_conn.sni)
        if tunnel is not None and tunnel.host != request.host:
            names.append(tunnel.host)
        verdicts = doh_verdicts(flow)
        policy = self.policy_sync.policy
        at = self.clock()
        hours = self.network_hours(client_ip(flow))
        decision: Decision | None = None
        for name in names:
            if name.count(":") >= 2 and not name.startswith("["):
                name = f"[{name}]"  # an IPv6 literal, as it is written in a URL
            candidate = policy.decide(f"{scheme}://{name}{path}", user=identity.user,
                                      group=identity.group, at=at, verdicts=verdicts,
                                      hours=hours)
            if decision is None or (candidate.blocked and not decision.blocked):
                decision = candidate
            if candidate.blocked:
                break
        assert decision is not None
        if decision.blocked:
            return self._block(flow, decision, identity)
        # Allowed by the policy: now the destination (plain HTTP, and requests inside
        # decrypted tunnels), which gets a block page too, not a 502.
        if scheme == "http" and request.port not in self.config.upstream.http_ports:
            return self._block(flow, Decision(Action.BLOCK, Rule.PORT, request.host,
                                              HTTP_PORT_REASON), identity)
        destination = await self.guard.check(request.host, request.port)
        if isinstance(destination, Refusal):
            if destination.decision is None:
                return self.verdict(Answer.UNRESOLVED, None, identity, client_ip(flow),
                                    request.method, request.url, [])
            return self._block(flow, destination.decision, identity)
        host = decision.host or request.host
        hits = ([(decision, host, path, scheme == "https", "")]
                if self.config.log_allowed else [])
        terms = self.watch.matches(flow)
        if terms:
            hits.append((watch_decision(request.pretty_host), request.pretty_host,
                         request.path, scheme == "https", ", ".join(terms)[:200]))
        return self.verdict(Answer.FORWARD, decision, identity, client_ip(flow),
                            request.method, request.url, hits)

    async def _admin_request(self, flow: http.HTTPFlow, identity: Identity) -> Verdict:
        """A plain-HTTP request to the admin service: forwarded to it, with no hit, whatever
        the policy and the port lists say (the guard still resolves and pins it)."""
        request = flow.request
        destination = await self.guard.check(request.host, request.port)
        answer = Answer.UNRESOLVED if isinstance(destination, Refusal) else Answer.FORWARD
        return self.verdict(answer, admin_decision(request.host), identity, client_ip(flow),
                            request.method, request.url, [])

    def request(self, flow: http.HTTPFlow) -> None:
        """``mitm.it`` never goes upstream, whatever the request says (a backstop)."""
        if (flow.response is not None or flow.request.method == "CONNECT"
                or verdict_of(flow) is not None):
            return
        request = flow.request
        identity = identity_of(flow) or self.fallback(flow)
        if (request.scheme == "http" and request.port not in self.config.upstream.http_ports
                and not self.guard.is_admin(request.host, request.port)):
            self._write(flow, self._block(flow, Decision(Action.BLOCK, Rule.PORT, request.host,
                                                         HTTP_PORT_REASON), identity,
                                          counted=False))
        elif ONBOARDING_HOST in (request.host.lower(), request.pretty_host.lower()):
            self._write(flow, self._block(
                flow, Decision(Action.BLOCK, Rule.INTERNAL_DESTINATION, request.host,
                               ONBOARDING_REASON), identity, counted=False))
