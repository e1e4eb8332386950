"""What a CONNECT tunnel may carry: refuse it, tunnel it untouched, decrypt it, or close it.

One pure planner serves both the CONNECT fast path (``tunnel_front``) and mitmproxy's hooks
(``decide``), so both give the same answer. It is asked twice per tunnel: at CONNECT time
(``sni=None``) and again when the ClientHello arrives (``sni`` is its server name, ``""`` when
the client sent none). The TLS name is the host that is decided: a tunnel is relayed
undecrypted only when both the CONNECT host and the TLS name would be tunnelled as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from categories.decision import Action, Decision, Rule
from categories.policy import Policy
from categories.profiles import ANY_HOUR, NetworkHours
from categories.urlnorm import URLError, canonical_host
from deployment.config import Config
from proxy_addons.identify import Identity
from proxy_addons.search_engines import engine_of

ONBOARDING_HOST = "mitm.it"
"""mitmproxy's onboarding app (the CA download), served by the proxy itself, never upstream."""
ONBOARDING_REASON = "The proxy's certificate page is only served under its own name."
DOH_NAME_PREFIXES = ("dns.", "doh.", "dns-over-https.", "dot.")

PORT_REASON = ("The centre's web filter only opens secure connections to the usual web port; "
               "this port is not allowed.")
SNI_REASON = ("The secure connection named a different site from the one it asked for, so the "
              "web filter closed it.")
UNREADABLE_SNI_REASON = "The secure connection named a site that could not be read."


class TunnelAction(StrEnum):
    REFUSE = "refuse"
    """Answer the CONNECT with 403 (nothing is connected)."""
    TUNNEL = "tunnel"
    """Relay the TLS bytes untouched; the certificate is the origin's own."""
    DECRYPT = "decrypt"
    """Decrypt, so that every request inside is decided."""
    CLOSE = "close"
    """Close the connection at the ClientHello; nothing is forwarded."""
    BLOCK_PAGE = "block_page"
    """Decrypt only to answer every request inside with the block page: for a device that
    trusts the centre's CA. Nothing is connected upstream, not even to read the certificate."""


@dataclass(frozen=True, slots=True)
class TunnelPlan:
    action: TunnelAction
    host: str
    """The canonical host the plan is about (the TLS name when that decided)."""
    decision: Decision
    """The decision behind the plan; logged when it blocks."""


def host_in(host: str, suffixes: tuple[str, ...]) -> bool:
    return any(host == s or host.endswith("." + s) for s in suffixes)


class TunnelPlanner:
    """Pure: it reads the config and the current policy, and does no I/O."""

    def __init__(self, config: Config, policy: Callable[[], Policy]) -> None:
        self.config = config
        self.policy = policy

    def should_decrypt(self, host: str, decision: Decision) -> bool:
        config = self.config
        if not config.decryption_enabled:
            return False
        if decision.no_decrypt or host_in(host, config.never_decrypt_hosts):
            return False
        return (self.policy().needs_path(host)
                or (config.safe_search and engine_of(host) is not None)
                or host_in(host, config.inspect_hosts)
                or host.startswith(DOH_NAME_PREFIXES)
                or (decision.blocked and decision.rule is Rule.OVERRIDE))

    def block_page_plan(self, plan: TunnelPlan) -> TunnelPlan:
        """For a device that trusts the centre's CA: a host refused at CONNECT is decrypted
        instead, only to show its block page, unless it may never be decrypted (a category
        marked no-decrypt such as banking or health, a host configured as pinned, or
        decryption turned off), or it was refused for its port."""
        decision = plan.decision
        config = self.config
        if (plan.action is TunnelAction.REFUSE and decision.blocked
                and decision.rule is not Rule.PORT and config.decryption_enabled
                and not decision.no_decrypt
                and not host_in(plan.host, config.never_decrypt_hosts)
                and plan.host != ONBOARDING_HOST):
            return TunnelPlan(TunnelAction.BLOCK_PAGE, plan.host, decision)
        return plan

    def host_plan(self, raw_host: str, port: int, identity: Identity, now: datetime,
                  hours: NetworkHours = ANY_HOUR) -> TunnelPlan:
        """The plan for one host name, whatever the TLS name turns out to be."""
        policy = self.policy()
        decision = policy.decide(f"https://{raw_host}:{port}/", user=identity.user,
                                 group=identity.group, at=now, hours=hours)
        try:
            host = canonical_host(raw_host)
        except URLError:
            host = raw_host.lower()
        if host == ONBOARDING_HOST:
            return TunnelPlan(TunnelAction.DECRYPT, host, decision)
        blocked_here = decision.blocked and not (
            decision.host and policy.needs_path(decision.host))
        decrypt = self.should_decrypt(host, decision) if decision.host else False
        if blocked_here or (decision.blocked and not decrypt):
            return TunnelPlan(TunnelAction.REFUSE, host, decision)
        return TunnelPlan(TunnelAction.DECRYPT if decrypt else TunnelAction.TUNNEL, host,
                          decision)

    def tunnel_plan(self, connect_host: str, port: int, sni: str | None, identity: Identity,
                    now: datetime, hours: NetworkHours = ANY_HOUR) -> TunnelPlan:
        """The plan for ``CONNECT connect_host:port``; with ``sni`` once the ClientHello is in
        (``""``: the ClientHello named no server)."""
        if port not in self.config.upstream.connect_ports:
            host = _canonical_or_lower(connect_host)
            return TunnelPlan(TunnelAction.REFUSE, host,
                              Decision(Action.BLOCK, Rule.PORT, host, PORT_REASON))
        connect = self.host_plan(connect_host, port, identity, now, hours)
        if sni is None or connect.action is TunnelAction.REFUSE:
            return connect
        if sni == "":
            if connect.action is TunnelAction.TUNNEL:
                return connect
            return TunnelPlan(TunnelAction.CLOSE, connect.host,
                              Decision(Action.BLOCK, Rule.INVALID_URL, connect.host, SNI_REASON))
        try:
            sni_host = canonical_host(sni)
        except URLError:
            return TunnelPlan(TunnelAction.CLOSE, connect.host,
                              Decision(Action.BLOCK, Rule.INVALID_URL, "", UNREADABLE_SNI_REASON))
        if sni_host == connect.host:
            return connect
        named = self.host_plan(sni_host, port, identity, now, hours)
        if named.action is TunnelAction.REFUSE:
            return TunnelPlan(TunnelAction.CLOSE, named.host, named.decision)
        if connect.action is TunnelAction.TUNNEL and named.action is TunnelAction.TUNNEL:
            return connect
        if connect.action is TunnelAction.DECRYPT:
            # Decrypted, every request inside is decided on the CONNECT host, the TLS name and
            # the Host header alike.
            return connect
        # The tunnel was planned as a pass-through, but its TLS name needs decrypting: the
        # fast path cannot start decrypting mid-tunnel, so both paths close it.
        return TunnelPlan(TunnelAction.CLOSE, named.host,
                          Decision(Action.BLOCK, Rule.INVALID_URL, named.host, SNI_REASON))


def _canonical_or_lower(raw_host: str) -> str:
    try:
        return canonical_host(raw_host)
    except URLError:
        return raw_host.lower()
