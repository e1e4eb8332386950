"""Test-only mitmproxy addon: every test host NAME resolves to 127.0.0.1.

It replaces the upstream guard's resolver, so the guard still checks (and refuses) what a name
resolves to: a test name is loopback, and only the origins' ports listed in the test config's
``upstream.allow_internal`` are reachable. IP literals are not mapped (``[::1]`` stays ::1).
ESAFETY_TEST_PORTS maps requested ports to local ones, e.g. "80=18001,443=18443"; the host name
(and so the TLS name and the Host header) is kept, only the address changes.

Loaded into a plain mitmdump (the benchmarks' peer), where there is no guard, it rewrites every
upstream address to loopback itself.
"""

from __future__ import annotations

import os

from mitmproxy import ctx
from mitmproxy.proxy import server_hooks

PORTS = {int(a): int(b) for a, b in (item.split("=") for item in
                                     os.environ.get("ESAFETY_TEST_PORTS", "").split(",") if item)}


async def test_resolver(host: str, port: int) -> list[tuple[str, int]]:
    from proxy_addons.upstream_guard import ip_literal  # only ever called inside esafety

    literal = ip_literal(host)
    address = str(literal) if literal is not None else "127.0.0.1"
    return [(address, PORTS.get(port, port))]


class HostMap:
    def __init__(self) -> None:
        self.guarded = False

    def load(self, _loader: object) -> None:
        self._install()

    def running(self) -> None:
        self._install()

    def _install(self) -> None:
        guard = ctx.master.addons.get(  # type: ignore[no-untyped-call]
            "upstreamguard")  # absent in a plain mitmdump
        if guard is not None:
            guard.resolver = test_resolver
            self.guarded = True

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if self.guarded or data.server.address is None:
            return  # esafety: the guard resolves through test_resolver and checks the answer
        _host, port = data.server.address
        data.server.address = ("127.0.0.1", PORTS.get(port, port))


addons = [HostMap()]
