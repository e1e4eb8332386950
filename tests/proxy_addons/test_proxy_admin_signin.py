"""Where the proxy requires sign-in, the admin service is still reached without it: it has its
own sign-in, and the browser extension signs in there before it can answer the proxy's. A
real proxy (sign-in required, fast path on and off) and a real admin service; every other
destination still gets the 407."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from store.keys import Keys
from tests.harness.proxy import (
    Origins,
    ProxyProcess,
    curl_plain,
    free_port,
    read_response_head,
    write_config,
)
from tests.harness.ui import AdminProcess


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "no-fast-path"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            redis_url: str, origins: Origins) -> Iterator[tuple[ProxyProcess, int]]:
    directory = tmp_path_factory.mktemp("admin-signin")
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    admin_port = free_port()
    config = write_config(directory / "esafety.yaml", keys.prefix,
                          admin_public_url=f"http://127.0.0.1:{admin_port}",
                          proxy_auth={"mode": "required"})
    proxy = ProxyProcess(directory / "data", config, redis_url, origins,
                         fast_path=bool(request.param))
    admin = AdminProcess(directory / "data", config, redis_url, admin_port)
    try:
        proxy.start()
        admin.start()
        yield proxy, admin_port
    finally:
        admin.stop()
        proxy.stop()


def _connect_head(proxy: ProxyProcess, target: str) -> str:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return read_response_head(sock)


def test_the_admin_service_needs_no_proxy_sign_in_and_everything_else_does(
        running: tuple[ProxyProcess, int]) -> None:
    proxy, admin_port = running
    status, body = curl_plain(proxy.proxy_url, f"http://127.0.0.1:{admin_port}/sign-in")
    assert status == 200 and "<html" in body.lower()
    assert _connect_head(proxy, f"127.0.0.1:{admin_port}").startswith("HTTP/1.1 200")
    assert curl_plain(proxy.proxy_url, "http://origin.test/")[0] == 407
    assert _connect_head(proxy, "origin.test:443").startswith("HTTP/1.1 407")
    assert _connect_head(proxy, f"127.0.0.2:{admin_port}").startswith("HTTP/1.1 407")
