"""The upstream guard's one exception: the admin service, at its exact ``host:port`` pairs, in
any spelling of its address; nothing else on its host. End to end, with a real proxy, admin
and browser: tests/security/test_security_admin_reach.py."""

from __future__ import annotations

import asyncio

import pytest

from deployment.config import UpstreamSettings
from deployment.public_address import ServiceAddress
from proxy_addons.upstream_guard import Destination, Refusal, UpstreamGuard, ip_literal

ADMIN = (ServiceAddress("esafety.centre.example", 8090), ServiceAddress("10.0.0.5", 8090),
         ServiceAddress("127.0.0.1", 8090))
OWN_PORTS = (6379, 8080, 8090, 9180)


def _guard() -> UpstreamGuard:
    guard = UpstreamGuard(UpstreamSettings(), own_ports=OWN_PORTS, admin=ADMIN)
    answers = {"esafety.centre.example": ["10.0.0.5"], "other.centre.example": ["10.0.0.5"]}

    async def resolver(host: str, port: int) -> list[tuple[str, int]]:
        literal = ip_literal(host)
        if literal is not None:
            return [(str(literal), port)]
        return [(a, port) for a in answers.get(host.rstrip(".").lower(), ["10.9.9.9"])]

    guard.resolver = resolver
    return guard


@pytest.mark.parametrize("host", ["esafety.centre.example", "ESAFETY.Centre.Example.",
                                  "10.0.0.5", "127.0.0.1", "127.1", "[::ffff:127.0.0.1]",
                                  "0x7f.0.0.1"])
def test_the_admin_service_is_let_through_at_its_exact_address(host: str) -> None:
    guard = _guard()
    assert guard.is_admin(host, 8090)
    assert isinstance(asyncio.run(guard.check(host, 8090)), Destination)


@pytest.mark.parametrize(("host", "port"), [
    ("esafety.centre.example", 6379), ("esafety.centre.example", 9180),
    ("esafety.centre.example", 8080), ("10.0.0.5", 6379), ("127.0.0.1", 9180),
    ("127.0.0.2", 8090), ("localhost", 8090), ("other.centre.example", 8090),
    ("10.0.0.6", 8090), ("[::1]", 8090)])
def test_other_ports_and_other_hosts_stay_refused(host: str, port: int) -> None:
    guard = _guard()
    assert not guard.is_admin(host, port)
    refused = asyncio.run(guard.check(host, port))
    assert isinstance(refused, Refusal) and refused.decision is not None, (host, port)
