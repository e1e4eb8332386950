"""Every port in ``upstream.connect_ports`` gets the fast path, not only 443.

A pass-through tunnel through mitmproxy costs several times the CPU of one the fast path
relays, so a centre that allows another HTTPS port (8443, say) must not pay mitmproxy's price
for it. Here the loopback origin's own HTTPS port (not 443) is an allowed connect port: an
allowed site on it is relayed by the fast path (its counter moves, the origin saw the request),
a blocked site on it is refused without reaching the origin, and a port that is not listed is
refused at CONNECT.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.harness.proxy import (
    Origins,
    ProxyProcess,
    fast_tunnel_count,
    free_port,
    proxy_on_fixture_lists,
    raw_connection,
    read_response_head,
)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
          origins: Origins) -> Iterator[ProxyProcess]:
    with proxy_on_fixture_lists(tmp_path_factory.mktemp("ports"), redis_url, origins,
                                upstream={"connect_ports": [443, origins.https_port]}) as process:
        yield process


def connect(proxy: ProxyProcess, authority: str) -> str:
    with raw_connection(proxy) as sock:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        return read_response_head(sock)


def test_an_allowed_port_other_than_443_is_relayed_by_the_fast_path(
        proxy: ProxyProcess) -> None:
    port = proxy.origins.https_port
    assert port != 443
    before = fast_tunnel_count(proxy)
    marker = uuid.uuid4().hex
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "15", "-x", proxy.proxy_url, "--noproxy", "",
         "--cacert", str(proxy.origins.ca_file), "-o", "/dev/null", "-w", "%{http_code}",
         f"https://allowed.test:{port}/port-{marker}"],
        capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin:/bin"})
    assert done.stdout == "200", done.stderr
    assert proxy.origins.saw(f"port-{marker}")
    assert fast_tunnel_count(proxy) == before + 1


def test_a_blocked_site_and_an_unlisted_port_are_refused_at_connect(
        proxy: ProxyProcess) -> None:
    port = proxy.origins.https_port
    assert connect(proxy, f"casino-royale.test:{port}").startswith("HTTP/1.1 403")
    assert connect(proxy, f"allowed.test:{free_port()}").startswith("HTTP/1.1 403")
