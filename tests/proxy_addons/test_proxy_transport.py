"""The transport layer is no way round the filter, nor into the centre's network.

A real esafety proxy (with the CONNECT fast path, and without it: both must answer the same),
real Redis, loopback origins that record every request, a raw TCP listener that records every
byte, and raw-socket clients. A leak is asserted where it would happen: at the origin.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis as sync_redis
import yaml

from store.keys import Keys
from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    basic,
    curl,
    free_port,
    read_response_head,
    write_config,
)


def _marker() -> str:
    return "m" + uuid.uuid4().hex[:12]


def start_proxy(directory: Path, redis_url: str, origins: Origins, fast_path: bool,
                keys: Keys, upstream: dict[str, Any] | None = None,
                group: str = "staff") -> ProxyProcess:
    """A proxy whose upstream section is ``upstream`` (ports may name the proxy's own ports
    through the strings "proxy", "status" and "redis"), plus the origins' allowance."""
    config = write_config(directory / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": group}])
    process = ProxyProcess(directory / "data", config, redis_url, origins, fast_path=fast_path)
    named = {"proxy": process.port, "status": process.status_port,
             "redis": urlsplit(redis_url).port or 6379, "raw": origins.raw_port}
    data = yaml.safe_load(config.read_text())
    for key, value in (upstream or {}).items():
        if key in ("connect_ports", "http_ports"):
            value = [named.get(v, v) for v in value]
        if key == "allow_internal":
            value = [*data["upstream"]["allow_internal"], *value]
        data["upstream"][key] = value
    config.write_text(yaml.safe_dump(data))
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    return process.start()


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "no-fast-path"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(scope="module")
def module_keys() -> Keys:
    return Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")


@pytest.fixture(scope="module")
def closed_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, redis_url: str, origins: Origins,
          module_keys: Keys, fast_path: bool) -> Iterator[ProxyProcess]:
    """Only the origins' two ports are allowed internally; the raw listener's port is a
    listed port but internal, so it must be refused."""
    process = start_proxy(tmp_path_factory.mktemp("transport"), redis_url, origins, fast_path,
                          module_keys, {"connect_ports": [443, "raw"],
                                        "http_ports": [80, "raw"]})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def raw_allowed(tmp_path_factory: pytest.TempPathFactory, redis_url: str, origins: Origins,
                module_keys: Keys, fast_path: bool, closed_port: int
                ) -> Iterator[ProxyProcess]:
    """allow_internal names the raw listener by address AND port."""
    process = start_proxy(tmp_path_factory.mktemp("raw-allowed"), redis_url, origins,
                          fast_path, module_keys,
                          {"connect_ports": [443, "raw", closed_port],
                           "http_ports": [80, "raw", closed_port],
                           "allow_internal": [f"127.0.0.1:{origins.raw_port}"]})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def loopback_allowed(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                     origins: Origins, module_keys: Keys, fast_path: bool, closed_port: int
                     ) -> Iterator[ProxyProcess]:
    """allow_internal names all of loopback (no port): the own ports must still be refused."""
    process = start_proxy(tmp_path_factory.mktemp("loopback-allowed"), redis_url, origins,
                          fast_path, module_keys,
                          {"connect_ports": [443, "raw", "redis", "status", "proxy",
                                             closed_port],
                           "http_ports": [80, "raw", "redis", "status", "proxy", closed_port],
                           "allow_internal": ["127.0.0.0/8"]})
    yield process
    process.stop()


@pytest.fixture(scope="module", autouse=True)
def clean_keys(redis_url: str, module_keys: Keys) -> Iterator[None]:
    yield
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=module_keys.prefix + "*"):
        client.delete(key)
    client.close()


# -- clients ---------------------------------------------------------------------------------
def connect(proxy: ProxyProcess, target: str, extra: str = "",
            timeout: float = 10) -> tuple[socket.socket, str]:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n".encode())
    return sock, read_response_head(sock)


def plain(proxy: ProxyProcess, request: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_until_closed(sock, timeout)


def read_until_closed(sock: socket.socket | ssl.SSLSocket, timeout: float = 10) -> bytes:
    """Everything the other side sends until it closes (or the timeout passes)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data


def is_closed(sock: socket.socket, timeout: float = 10) -> bool:
    """True when the proxy closes the connection without sending anything more."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def client_hello(sni: str | None) -> bytes:
    """The bytes of a real TLS ClientHello (Python's ssl), with ``sni`` or no name at all."""
    context = ssl.create_default_context()
    if sni is None:
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tls_context(proxy: ProxyProcess, origins: Origins, check_hostname: bool = True
                ) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(proxy.ca_cert))
    context.load_verify_locations(cafile=str(origins.ca_file))
    context.check_hostname = check_hostname
    return context


def hit_rule(redis_url: str, keys: Keys, head: str) -> str:
    """The rule of the hit record whose id the response carries."""
    hit_id = head.lower().split("x-esafety-hit-id: ")[1].split()[0].upper()
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            entries: list[tuple[str, dict[str, str]]] = client.xrange(keys.hits)  # type: ignore[assignment]
            for _id, fields in entries:
                if fields.get("id") == hit_id:
                    return str(fields["rule"])
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError(f"no hit record {hit_id}")


def wait_for_raw(origins: Origins, marker: bytes, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if origins.raw_saw(marker):
            return True
        time.sleep(0.05)
    return False


def raw_bytes_since(origins: Origins, mark: int, settle: float = 0.5) -> bytes:
    time.sleep(settle)  # let any relayed bytes arrive before looking
    return b"".join(origins.raw_connections_since(mark))


# -- internal destinations ---------------------------------------------------------------------
INTERNAL_TARGETS = ["localhost", "localhost.", "LOCALHOST", "origin.test", "allowed.test.",
                    "127.1", "0", "2130706433", "0x7f.0.0.1", "[::1]", "[::ffff:127.0.0.1]",
                    "169.254.169.254", "10.1.2.3", "192.168.1.1", "172.16.0.1", "100.64.0.1",
                    "[fd00::1]", "[fe80::1]"]


@pytest.mark.parametrize("host", INTERNAL_TARGETS)
def test_connect_to_an_internal_destination_is_refused_at_connect(
        proxy: ProxyProcess, origins: Origins, redis_url: str, module_keys: Keys,
        host: str) -> None:
    mark = origins.raw_mark()
    sock, head = connect(proxy, f"{host}:{origins.raw_port}")
    sock.close()
    assert head.startswith("HTTP/1.1 403"), head
    assert hit_rule(redis_url, module_keys, head) == "internal-destination"
    assert origins.raw_connections_since(mark) == []  # never even connected


@pytest.mark.parametrize("host", INTERNAL_TARGETS)
def test_plain_http_to_an_internal_destination_gets_the_block_page(
        proxy: ProxyProcess, origins: Origins, redis_url: str, module_keys: Keys,
        host: str) -> None:
    mark = origins.raw_mark()
    marker = _marker()
    reply = plain(proxy, f"GET http://{host}:{origins.raw_port}/{marker} HTTP/1.1\r\n"
                         f"Host: {host}:{origins.raw_port}\r\nConnection: close\r\n\r\n".encode())
    head = reply.decode("latin-1")
    assert head.startswith("HTTP/1.1 403"), head[:300]
    assert "own network, which the web filter" in head
    assert hit_rule(redis_url, module_keys, head) == "internal-destination"
    assert origins.raw_connections_since(mark) == []


def test_own_ports_are_refused_even_when_loopback_is_allowed(
        loopback_allowed: ProxyProcess, origins: Origins, redis_url: str,
        module_keys: Keys) -> None:
    proxy = loopback_allowed
    redis_port = urlsplit(redis_url).port or 6379
    for port in (redis_port, proxy.status_port, proxy.port):
        for host in ("localhost", "127.0.0.1", "127.0.0.2", "origin.test"):
            sock, head = connect(proxy, f"{host}:{port}")
            sock.close()
            assert head.startswith("HTTP/1.1 403"), (host, port, head)
            assert hit_rule(redis_url, module_keys, head) == "internal-destination"
            reply = plain(proxy, f"GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}"
                                 "\r\nConnection: close\r\n\r\n".encode()).decode("latin-1")
            assert reply.startswith("HTTP/1.1 403"), (host, port, reply[:200])
    # The same proxy does reach the rest of loopback: an entry without a port allows every port.
    sock, head = connect(proxy, f"localhost:{origins.raw_port}")
    with sock:
        assert head.startswith("HTTP/1.1 200"), head
        hello = client_hello("localhost")
        sock.sendall(hello)
        assert wait_for_raw(origins, hello[:64])


def test_an_allowed_internal_entry_with_a_port_allows_that_port_only(
        raw_allowed: ProxyProcess, origins: Origins, redis_url: str, module_keys: Keys,
        closed_port: int) -> None:
    proxy = raw_allowed
    sock, head = connect(proxy, f"localhost:{origins.raw_port}")
    with sock:
        assert head.startswith("HTTP/1.1 200"), head
        hello = client_hello("localhost")
        sock.sendall(hello)
        assert wait_for_raw(origins, hello[:64])
    marker = _marker().encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as plain_sock:
        plain_sock.sendall(b"GET http://localhost:%d/%s HTTP/1.1\r\nHost: localhost:%d\r\n\r\n"
                           % (origins.raw_port, marker, origins.raw_port))
        assert wait_for_raw(origins, marker)  # plain HTTP to the allowed port is forwarded
    for target in (f"localhost:{closed_port}", f"127.0.0.2:{origins.raw_port}"):
        sock, head = connect(proxy, target)
        sock.close()
        assert head.startswith("HTTP/1.1 403"), (target, head)
        assert hit_rule(redis_url, module_keys, head) == "internal-destination"


def test_an_unreachable_allowed_destination_gets_a_502_without_internal_detail(
        loopback_allowed: ProxyProcess, closed_port: int) -> None:
    reply = plain(loopback_allowed, f"GET http://localhost:{closed_port}/ HTTP/1.1\r\n"
                                    f"Host: localhost:{closed_port}\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 502")
    if loopback_allowed.fast_path:
        sock, head = connect(loopback_allowed, f"localhost:{closed_port}")
        sock.close()
        assert head.startswith("HTTP/1.1 502")
        assert "errno" not in head.lower() and "connect call" not in head.lower()
        assert str(closed_port) not in head


# -- ports -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["allowed.test:8443", "allowed.test:80", "allowed.test:22",
                                    "mixed-content.test:80", "casino-royale.test:8080"])
def test_connect_to_a_port_not_listed_is_refused(proxy: ProxyProcess, origins: Origins,
                                                 redis_url: str, module_keys: Keys,
                                                 target: str) -> None:
    marker = _marker()
    sock, head = connect(proxy, target)
    with sock:
        assert head.startswith("HTTP/1.1 403"), head
        assert hit_rule(redis_url, module_keys, head) in ("port", "category")
        # A learner's next move: bytes that are not HTTP on the same connection.
        sock.sendall(f"\r\nGET /adult-section/{marker} HTTP/1.1\r\nHost: mixed-content.test"
                     "\r\n\r\n".encode())
        read_until_closed(sock, 2)
    assert origins.saw(marker) == []
    if not target.startswith("casino"):
        assert hit_rule(redis_url, module_keys, head) == "port"


def test_plain_http_to_a_port_not_listed_is_refused(proxy: ProxyProcess, origins: Origins,
                                                    redis_url: str, module_keys: Keys) -> None:
    marker = _marker()
    for port in (8080, 443, 8443):
        head = plain(proxy, f"GET http://allowed.test:{port}/{marker} HTTP/1.1\r\n"
                            f"Host: allowed.test:{port}\r\nConnection: close\r\n\r\n".encode()
                     ).decode("latin-1")
        assert head.startswith("HTTP/1.1 403"), head[:200]
        assert hit_rule(redis_url, module_keys, head) == "port"
    assert origins.saw(marker) == []
    # The listed port still works.
    assert curl(proxy, f"http://allowed.test/{marker}").status == 200
    assert len(origins.saw(marker)) == 1


# -- what a tunnel carries ------------------------------------------------------------------------
NOT_TLS = [b"\r\nGET /adult-section/%s HTTP/1.1\r\nHost: mixed-content.test\r\n\r\n",
           b"\r\n\r\nGET /adult-section/%s HTTP/1.1\r\nHost: mixed-content.test\r\n\r\n",
           b"GET /adult-section/%s HTTP/1.1\r\nHost: mixed-content.test\r\n\r\n",
           b"\x00\x01\x02\x03 raw bytes %s\r\n\r\n",
           b"SSH-2.0-OpenSSH_9.6 %s\r\n"]


@pytest.mark.parametrize("payload", NOT_TLS, ids=["crlf-get", "2crlf-get", "plain-get",
                                                  "binary", "ssh"])
@pytest.mark.parametrize("connect_host", ["allowed.test", "mixed-content.test", "localhost"])
def test_a_tunnel_that_does_not_carry_tls_is_closed(raw_allowed: ProxyProcess, origins: Origins,
                                                    connect_host: str, payload: bytes) -> None:
    """allowed.test is a pass-through tunnel, mixed-content.test one to decrypt; both lead to
    the raw listener, which must receive none of the bytes."""
    marker = _marker().encode()
    mark = origins.raw_mark()
    sock, head = connect(raw_allowed, f"{connect_host}:{origins.raw_port}")
    with sock:
        assert head.startswith("HTTP/1.1 200"), head
        sock.sendall(payload % marker)
        assert is_closed(sock)
    assert marker not in raw_bytes_since(origins, mark)
    assert raw_bytes_since(origins, mark, 0) == b""


@pytest.mark.parametrize("connect_host", ["allowed.test", "mixed-content.test"])
def test_plain_http_inside_a_tunnel_on_443_is_closed(proxy: ProxyProcess, origins: Origins,
                                                     connect_host: str) -> None:
    marker = _marker()
    sock, head = connect(proxy, f"{connect_host}:443")
    with sock:
        assert head.startswith("HTTP/1.1 200"), head
        sock.sendall(f"GET /adult-section/{marker} HTTP/1.1\r\nHost: mixed-content.test\r\n"
                     "\r\n".encode())
        assert is_closed(sock)
    assert origins.saw(marker) == []


def _tls_exchange(proxy: ProxyProcess, origins: Origins, connect_host: str, sni: str | None,
                  request: str, check_hostname: bool = True) -> tuple[bytes, dict[str, Any]]:
    """CONNECT, TLS with ``sni``, one request: (reply, peer certificate); (b"", {}) when the
    proxy closed the connection during the handshake."""
    sock, head = connect(proxy, f"{connect_host}:443")
    assert head.startswith("HTTP/1.1 200"), head
    context = tls_context(proxy, origins, check_hostname)
    try:
        with context.wrap_socket(sock, server_hostname=sni) as tls:
            cert = tls.getpeercert() or {}
            tls.sendall(request.encode())
            return read_until_closed(tls), dict(cert)
    except (ssl.SSLError, ConnectionError, OSError):
        return b"", {}
    finally:
        sock.close()


def _issuer(cert: dict[str, Any]) -> str:
    return str(cert.get("issuer", "")).lower()


@pytest.mark.parametrize(("sni", "path"), [
    ("casino-royale.test", "/spin"),                      # blocked
    ("mixed-content.test", "/adult-section/page"),         # has path rules
    ("www.google.com", "/search?safe=off&q="),             # search engine needing safe search
    ("doh.unknown-resolver.test", "/dns-query?dns="),      # looks like DNS over HTTPS
])
def test_a_tls_name_needing_another_plan_closes_a_pass_through_tunnel(
        proxy: ProxyProcess, origins: Origins, sni: str, path: str) -> None:
    marker = _marker()
    reply, _cert = _tls_exchange(proxy, origins, "allowed.test", sni,
                                 f"GET {path}{marker} HTTP/1.1\r\nHost: {sni}\r\n"
                                 "Connection: close\r\n\r\n")
    assert b'"method"' not in reply
    assert origins.saw(marker) == []


def test_a_plain_tls_name_on_a_plain_tunnel_is_relayed_untouched(proxy: ProxyProcess,
                                                                 origins: Origins) -> None:
    marker = _marker()
    reply, cert = _tls_exchange(proxy, origins, "allowed.test", "origin.test",
                                f"GET /{marker} HTTP/1.1\r\nHost: origin.test\r\n"
                                "Connection: close\r\n\r\n")
    assert b'"method"' in reply
    assert "esafety ca" not in _issuer(cert)  # not decrypted: the origin's own certificate
    [seen] = origins.saw(marker)
    assert seen.scheme == "https"


def test_a_decrypted_tunnel_decides_every_request_whatever_the_tls_name(
        proxy: ProxyProcess, origins: Origins) -> None:
    marker = _marker()
    blocked, cert = _tls_exchange(proxy, origins, "mixed-content.test", "allowed.test",
                                  f"GET /adult-section/{marker} HTTP/1.1\r\nHost: allowed.test"
                                  "\r\nConnection: close\r\n\r\n")
    assert blocked.startswith(b"HTTP/1.1 403"), blocked[:200]
    assert "esafety ca" in _issuer(cert)  # the centre's CA: decrypted
    assert origins.saw(marker) == []
    fine, _cert = _tls_exchange(proxy, origins, "mixed-content.test", "allowed.test",
                                f"GET /news/{marker} HTTP/1.1\r\nHost: allowed.test\r\n"
                                "Connection: close\r\n\r\n")
    assert fine.startswith(b"HTTP/1.1 200"), fine[:200]
    assert len(origins.saw(marker)) == 1


def test_a_client_hello_without_a_name(proxy: ProxyProcess, origins: Origins) -> None:
    marker = _marker()
    # To a host that must be decrypted: closed, nothing forwarded.
    reply, _cert = _tls_exchange(proxy, origins, "mixed-content.test", None,
                                 f"GET /adult-section/{marker} HTTP/1.1\r\nHost: "
                                 "mixed-content.test\r\nConnection: close\r\n\r\n",
                                 check_hostname=False)
    assert reply == b""
    assert origins.saw(marker) == []
    # To a plain pass-through host: still tunnelled (many TLS clients send no name).
    reply, cert = _tls_exchange(proxy, origins, "allowed.test", None,
                                f"GET /{marker} HTTP/1.1\r\nHost: allowed.test\r\n"
                                "Connection: close\r\n\r\n", check_hostname=False)
    assert b'"method"' in reply and "esafety ca" not in _issuer(cert)
    assert len(origins.saw(marker)) == 1


# -- mitm.it ---------------------------------------------------------------------------------------
def test_mitm_it_is_answered_only_under_its_own_name(proxy: ProxyProcess,
                                                     origins: Origins) -> None:
    marker = _marker()
    for request in (f"GET http://mitm.it/{marker} HTTP/1.1\r\nHost: origin.test\r\n",
                    f"GET http://mitm.it/{marker} HTTP/1.1\r\nHost: mitm.it.evil.test\r\n",
                    f"GET http://origin.test/{marker} HTTP/1.1\r\nHost: mitm.it\r\n"):
        reply = plain(proxy, (request + "Connection: close\r\n\r\n").encode())
        assert reply.startswith(b"HTTP/1.1 403"), (request, reply[:200])
    assert origins.saw(marker) == []
    # Its own name, any path, plain HTTP or HTTPS: sent to the admin's onboarding page.
    for url in ("http://mitm.it/cert/pem", "https://mitm.it/", f"http://mitm.it/{marker}"):
        answer = curl(proxy, url)
        assert answer.status == 302, (url, answer.stderr)
        assert "location: http://admin.test:8090/onboarding\r\n" in answer.headers.lower()
        assert "BEGIN CERTIFICATE" not in answer.body
    assert origins.saw(marker) == []


# -- headers --------------------------------------------------------------------------------------
PROXY_HEADERS = {"Proxy-Authorization": basic("learner1", "a secret password"),
                 "Proxy-Connection": "keep-alive", "X-Forwarded-For": "203.0.113.9",
                 "Forwarded": "for=203.0.113.9", "X-Real-IP": "203.0.113.9"}


@pytest.mark.parametrize("url", ["http://origin.test/", "https://mixed-content.test/news/",
                                 "https://www.google.com/search?q="])
def test_proxy_and_forwarding_headers_never_reach_the_origin(proxy: ProxyProcess,
                                                            origins: Origins,
                                                            url: str) -> None:
    marker = _marker()
    args = [a for name, value in PROXY_HEADERS.items() for a in ("-H", f"{name}: {value}")]
    result = curl(proxy, url + marker, *args)
    assert result.status == 200, result
    [seen] = origins.saw(marker)
    received = {name.lower() for name in seen.headers}
    assert received.isdisjoint(name.lower() for name in PROXY_HEADERS), received
    assert "a secret password" not in str(seen.headers)


def test_keep_alive_requests_share_one_checked_upstream_connection(
        proxy: ProxyProcess, origins: Origins) -> None:
    """Pinning each upstream connection to its checked address must not cost keep-alive: ten
    plain-HTTP requests on one client connection reach the origin on one upstream connection
    (before the fix, every request opened a new one and keep-alive stalled at 20 requests/s)."""
    marker = _marker()
    urls = [f"http://allowed.test/{marker}/{i}" for i in range(10)]
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-x", proxy.proxy_url, "--noproxy", "",
         "--cacert", str(proxy.ca_cert), "-w", "%{http_code} ",
         *(arg for url in urls for arg in ("-o", "/dev/null", url))],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    assert done.stdout.split() == ["200"] * 10, done.stdout + done.stderr
    seen = origins.saw(marker)
    assert len(seen) == 10
    assert len({request.peer_port for request in seen}) == 1, [r.peer_port for r in seen]
