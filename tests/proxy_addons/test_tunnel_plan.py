"""The tunnel planner on its own: every combination of CONNECT host, port and TLS name.

The same planner answers the CONNECT fast path and mitmproxy's hooks; the end-to-end tests in
tests/proxy_addons/test_proxy_transport.py check that both paths act on its answers."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from categories import Policy, load_definitions
from categories.decision import Rule
from categories.domain_index import ListInfo, build_index
from categories.list_formats import EntryKind
from deployment.config import Config, UpstreamSettings
from proxy_addons.identify import Identity
from proxy_addons.tunnel_plan import TunnelAction, TunnelPlanner

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday morning: no break windows open
LEARNER = Identity(user=None, group="learner", site="main", source="network")
STAFF = Identity(user="s", group="staff", site="main", source="auth")

REFUSE, TUNNEL, DECRYPT, CLOSE = (TunnelAction.REFUSE, TunnelAction.TUNNEL,
                                  TunnelAction.DECRYPT, TunnelAction.CLOSE)

HOSTS = {
    "plain": "allowed.test",
    "plain2": "origin.test",
    "blocked": "casino-royale.test",
    "path-rules": "mixed-content.test",
    "search": "www.google.com",
    "doh-name": "doh.unknown-resolver.test",
    "no-decrypt": "mybank.test",
    "onboarding": "mitm.it",
}
KIND_PLAN = {"plain": TUNNEL, "plain2": TUNNEL, "blocked": REFUSE, "path-rules": DECRYPT,
             "search": DECRYPT, "doh-name": DECRYPT, "no-decrypt": TUNNEL,
             "onboarding": DECRYPT}


@pytest.fixture(scope="module")
def planner() -> TunnelPlanner:
    lists = [ListInfo("gambling", "t/gambling"), ListInfo("adult", "t/adult"),
             ListInfo("bank", "t/bank")]
    entries = [(0, EntryKind.DOMAIN, "casino-royale.test", 1),
               (1, EntryKind.URL, "mixed-content.test/adult-section", 1),
               (2, EntryKind.DOMAIN, "mybank.test", 1)]
    policy = Policy(load_definitions(), build_index(lists, entries))
    return TunnelPlanner(Config(), lambda: policy)


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_connect_time_plan_for_each_kind_of_host(planner: TunnelPlanner, kind: str) -> None:
    plan = planner.tunnel_plan(HOSTS[kind], 443, None, LEARNER, NOW)
    assert plan.action is KIND_PLAN[kind]
    assert plan.host == HOSTS[kind]
    assert plan.decision.blocked == (KIND_PLAN[kind] is REFUSE)


@pytest.mark.parametrize("port", [80, 22, 6379, 8443, 65535])
def test_connect_to_a_port_not_listed_is_refused_with_the_port_rule(planner: TunnelPlanner,
                                                                    port: int) -> None:
    plan = planner.tunnel_plan("allowed.test", port, None, LEARNER, NOW)
    assert plan.action is REFUSE and plan.decision.rule is Rule.PORT
    # The TLS name cannot change that.
    assert planner.tunnel_plan("allowed.test", port, "allowed.test", LEARNER,
                               NOW).action is REFUSE


def test_listed_connect_ports_are_planned_like_443() -> None:
    base = TunnelPlanner(Config(), lambda: Policy(load_definitions()))
    wider = TunnelPlanner(replace(Config(), upstream=UpstreamSettings(
        connect_ports=frozenset({443, 8443}))), base.policy)
    assert wider.tunnel_plan("allowed.test", 8443, None, LEARNER, NOW).action is TUNNEL
    assert base.tunnel_plan("allowed.test", 8443, None, LEARNER, NOW).action is REFUSE


def _expected(connect_kind: str, sni_kind: str) -> TunnelAction:
    connect, named = KIND_PLAN[connect_kind], KIND_PLAN[sni_kind]
    if connect is REFUSE:
        return REFUSE
    if HOSTS[connect_kind] == HOSTS[sni_kind]:
        return connect
    if named is REFUSE:
        return CLOSE
    if connect is TUNNEL and named is TUNNEL:
        return TUNNEL
    if connect is DECRYPT:
        return DECRYPT
    return CLOSE


@pytest.mark.parametrize(("connect_kind", "sni_kind"),
                         list(itertools.product(sorted(HOSTS), sorted(HOSTS))))
def test_the_tls_name_is_the_host_that_is_decided(planner: TunnelPlanner, connect_kind: str,
                                                 sni_kind: str) -> None:
    plan = planner.tunnel_plan(HOSTS[connect_kind], 443, HOSTS[sni_kind], LEARNER, NOW)
    assert plan.action is _expected(connect_kind, sni_kind)
    # Never relayed undecrypted unless both names would be.
    if plan.action is TUNNEL:
        assert KIND_PLAN[connect_kind] is TUNNEL and KIND_PLAN[sni_kind] is TUNNEL
    if plan.action is CLOSE and KIND_PLAN[sni_kind] is REFUSE:
        assert plan.decision.blocked and plan.host == HOSTS[sni_kind]


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_a_client_hello_without_a_name_only_passes_a_plain_tunnel(planner: TunnelPlanner,
                                                                  kind: str) -> None:
    plan = planner.tunnel_plan(HOSTS[kind], 443, "", LEARNER, NOW)
    expected = {TUNNEL: TUNNEL, REFUSE: REFUSE}.get(KIND_PLAN[kind], CLOSE)
    assert plan.action is expected


@pytest.mark.parametrize("sni", ["bad name with spaces", "%zz", "a" * 300 + ".test",
                                 "xn--.test", "ex\u0000ample.test"])
def test_a_tls_name_that_cannot_be_read_closes(planner: TunnelPlanner, sni: str) -> None:
    plan = planner.tunnel_plan("allowed.test", 443, sni, LEARNER, NOW)
    assert plan.action is CLOSE


@pytest.mark.parametrize("spelling", ["CASINO-ROYALE.TEST", "casino-royale.test.",
                                      "www.casino-royale.test"])
def test_spellings_of_a_blocked_tls_name_close(planner: TunnelPlanner, spelling: str) -> None:
    plan = planner.tunnel_plan("allowed.test", 443, spelling, LEARNER, NOW)
    assert plan.action is CLOSE and plan.decision.blocked


def test_the_same_name_spelled_differently_is_the_same_host(planner: TunnelPlanner) -> None:
    assert planner.tunnel_plan("allowed.test", 443, "ALLOWED.TEST.", LEARNER,
                               NOW).action is TUNNEL


def test_decryption_switched_off_tunnels_what_it_would_have_decrypted(
        planner: TunnelPlanner) -> None:
    off = TunnelPlanner(replace(Config(), decryption_enabled=False, safe_search=False),
                        planner.policy)
    assert off.tunnel_plan("www.google.com", 443, None, LEARNER, NOW).action is TUNNEL
    assert off.tunnel_plan("mixed-content.test", 443, None, LEARNER, NOW).action is TUNNEL
    # A host blocked as a whole is still refused.
    assert off.tunnel_plan("casino-royale.test", 443, None, LEARNER, NOW).action is REFUSE


def test_inspect_and_never_decrypt_hosts(planner: TunnelPlanner) -> None:
    configured = TunnelPlanner(replace(Config(), inspect_hosts=("allowed.test",),
                                       never_decrypt_hosts=("www.google.com",)),
                               planner.policy)
    assert configured.tunnel_plan("allowed.test", 443, None, LEARNER, NOW).action is DECRYPT
    assert configured.tunnel_plan("www.google.com", 443, None, LEARNER, NOW).action is TUNNEL


def test_identity_matters_for_the_plan(planner: TunnelPlanner) -> None:
    # Bare IP literals are blocked for learners and allowed for staff.
    assert planner.tunnel_plan("198.51.100.9", 443, None, LEARNER, NOW).action is REFUSE
    assert planner.tunnel_plan("198.51.100.9", 443, None, STAFF, NOW).action is TUNNEL
    assert planner.tunnel_plan("198.51.100.9", 443, "allowed.test", STAFF,
                               NOW).action is TUNNEL
    assert planner.tunnel_plan("198.51.100.9", 443, "casino-royale.test", STAFF,
                               NOW).action is CLOSE
