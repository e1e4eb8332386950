"""Test-only mitmproxy addon: every upstream connection goes to loopback test origins.

ESAFETY_TEST_PORTS maps requested ports to local ones, e.g. "80=18001,443=18443"; the host
name (and so the TLS name) is kept, only the address changes.
"""

from __future__ import annotations

import os

from mitmproxy.proxy import server_hooks

PORTS = {int(a): int(b) for a, b in (item.split("=") for item in
                                     os.environ.get("ESAFETY_TEST_PORTS", "").split(",") if item)}


class HostMap:
    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address is None:
            return
        _host, port = data.server.address
        data.server.address = ("127.0.0.1", PORTS.get(port, port))


addons = [HostMap()]
