"""A tunnel that carries nothing for ``upstream.tunnel_idle_seconds`` is closed by the proxy,
on both proxy paths (the fast path's relay and mitmproxy), while a tunnel in use stays open.

Without it a client (or a site it talks to) could hold connections open for ever: each costs
the proxy a socket and memory. The origins keep idle connections for 75 s, so a close within
seconds is the proxy's; on the fast path its counter says so too."""

from __future__ import annotations

import select
import socket
import ssl
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.harness.proxy import (
    Origins,
    ProxyProcess,
    proxy_on_fixture_lists,
    read_response_head,
    worker_counter,
)

IDLE_SECONDS = 2
IDLE_CLOSED = "esafety_proxy_idle_tunnels_closed_total"


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "no-fast-path"])
def proxy(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          redis_url: str, origins: Origins) -> Iterator[ProxyProcess]:
    upstream = {"connect_ports": [443, origins.https_port], "tunnel_idle_seconds": IDLE_SECONDS}
    with proxy_on_fixture_lists(tmp_path_factory.mktemp("idle"), redis_url, origins,
                                fast_path=bool(request.param), upstream=upstream) as process:
        yield process


def _tunnel(proxy: ProxyProcess) -> ssl.SSLSocket:
    """A TLS connection to allowed.test through a CONNECT tunnel (not decrypted)."""
    authority = f"allowed.test:{proxy.origins.https_port}"
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=15)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = read_response_head(sock)
    assert head.startswith("HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=str(proxy.origins.ca_file))
    return context.wrap_socket(sock, server_hostname="allowed.test")


def _get(tls: ssl.SSLSocket, path: str) -> bytes:
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: allowed.test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, "the tunnel closed while in use"
        data += chunk
    return data


def _closed_by_peer(tls: ssl.SSLSocket, within: float) -> bool:
    """Whether the other end closes the connection within ``within`` seconds."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([tls], [], [], left)
        if readable:
            try:
                if tls.recv(65536) == b"":
                    return True
            except (ssl.SSLError, OSError):
                return True
    return False


def test_an_idle_tunnel_is_closed_and_a_busy_one_is_not(proxy: ProxyProcess) -> None:
    fast = proxy.fast_path
    before = worker_counter(proxy, IDLE_CLOSED)
    marker = uuid.uuid4().hex
    idle, busy = _tunnel(proxy), _tunnel(proxy)
    try:
        assert _get(idle, f"/idle-{marker}").startswith(b"HTTP/1.1 200")
        assert proxy.origins.saw(f"idle-{marker}")
        started = time.monotonic()
        # The busy tunnel sends a request every half second for twice the idle limit.
        while time.monotonic() - started < 2 * IDLE_SECONDS + 1:
            assert _get(busy, f"/busy-{marker}").startswith(b"HTTP/1.1 200")
            time.sleep(0.5)
        assert _closed_by_peer(idle, within=0) or _closed_by_peer(idle, 5 * IDLE_SECONDS), (
            "the idle tunnel was still open")
        assert not _closed_by_peer(busy, within=0.1)
        assert _get(busy, f"/still-{marker}").startswith(b"HTTP/1.1 200")
    finally:
        idle.close()
        busy.close()
    if fast:
        assert worker_counter(proxy, IDLE_CLOSED) == before + 1


def test_a_tunnel_is_not_closed_before_the_idle_limit(proxy: ProxyProcess) -> None:
    tls = _tunnel(proxy)
    try:
        assert _get(tls, "/early").startswith(b"HTTP/1.1 200")
        assert not _closed_by_peer(tls, within=IDLE_SECONDS * 0.6)
        assert _get(tls, "/early-again").startswith(b"HTTP/1.1 200")
    finally:
        tls.close()
