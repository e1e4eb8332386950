"""The evasion corpus through the real proxy: count the cases tried and leaked (must be 0).

A case *leaked* when the origin received anything while it ran: the loopback origins record
every request, and a raw TCP listener every byte, so a leak is seen where it happens, never
inferred from the answer. Otherwise a case is *blocked* when the proxy answers 403 (block page
or refused CONNECT) and *refused* when it rejects the request as malformed (400), the TLS
handshake fails or the connection is closed. An answer that is none of these counts as leaked
too."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from store.accounts import create_user
from store.connection import connect
from store.keys import Keys
from tests.harness.evasion_corpus import Case, generate_cases
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, basic, start_origins, write_config

PASSWORD = "evasion test password"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, redis_url: str
          ) -> Iterator[tuple[ProxyProcess, Origins]]:
    directory = tmp_path_factory.mktemp("evasion")
    origins = start_origins(directory)
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")

    async def users() -> None:
        client = connect(redis_url)
        await create_user(client, keys, "staff9", "staff", "staff", PASSWORD)
        await client.aclose()

    asyncio.run(users())
    config = write_config(directory / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}],
                          upstream={"connect_ports": [443, origins.raw_port],
                                    "http_ports": [80, origins.raw_port],
                                    "allow_internal": [f"127.0.0.1:{origins.raw_port}"]})
    proxy = ProxyProcess(directory / "data", config, redis_url, origins)
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    proxy.start()
    yield proxy, origins
    proxy.stop()
    origins.stop()
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=keys.prefix + "*"):
        client.delete(key)
    client.close()


def _status(head: bytes) -> int:
    try:
        return int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _with_auth(payload: bytes) -> bytes:
    line, _, rest = payload.partition(b"\r\n")
    return line + b"\r\nProxy-Authorization: " + basic("staff9", PASSWORD).encode() + b"\r\n" + rest


def _outcome(status: int) -> str:
    if status == 403:
        return "blocked"
    if status in (400, 414, 431, 0):
        return "refused"
    return "leaked"


def _origin_state(origins: Origins) -> tuple[int, int]:
    """(requests the origins received, raw bytes the raw listener received)."""
    return len(origins.seen), sum(len(data) for data in list(origins.raw_seen))


def run_case(case: Case, proxy: ProxyProcess, origins: Origins) -> tuple[str, str]:
    """(outcome, detail) for one case: leaked if the origin received anything meanwhile."""
    before = _origin_state(origins)
    outcome, detail = _send_case(case, proxy, origins)
    after = _origin_state(origins)
    if after != before:
        seen = origins.seen[before[0]:after[0]]
        return "leaked", (f"origin received {[f'{r.host}{r.path_qs}' for r in seen]} and "
                          f"{after[1] - before[1]} raw bytes; proxy answered: {detail}")
    return outcome, detail


def _read_until_closed(sock: socket.socket, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionError, OSError):
        pass
    return data


def _send_case(case: Case, proxy: ProxyProcess, origins: Origins) -> tuple[str, str]:
    if case.kind == "h2":
        done = subprocess.run(
            ["curl", "-sS", "--http2", "--max-time", "10", "-x", proxy.proxy_url, "--cacert",
             str(proxy.ca_cert), "-o", "/dev/null", "-w", "%{http_code}", case.url],
            capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            return ("blocked" if "403" in done.stderr else "refused"), done.stderr.strip()
        return _outcome(int(done.stdout or 0)), done.stdout
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        if case.kind in ("http", "connect"):
            payload = _with_auth(case.payload) if case.as_staff else case.payload
            sock.sendall(payload)
            head = _read_head(sock)
            return _outcome(_status(head)), head[:120].decode("latin-1")
        target = f"{case.connect_host}:{case.port}"
        connect = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if case.as_staff:
            connect += f"Proxy-Authorization: {basic('staff9', PASSWORD)}\r\n"
        sock.sendall((connect + "\r\n").encode())
        status = _status(_read_head(sock))
        if status != 200:
            return _outcome(status), f"CONNECT answered {status}"
        if case.kind == "tunnel":
            sock.sendall(case.payload)
            reply = _read_until_closed(sock)
            return ("refused" if not reply else _outcome(_status(reply))), f"closed, {reply[:60]!r}"
        context = ssl.create_default_context(cafile=str(proxy.ca_cert))
        context.load_verify_locations(cafile=str(origins.ca_file))
        context.check_hostname = case.sni is not None
        name = case.sni or case.connect_host
        try:
            with context.wrap_socket(sock, server_hostname=case.sni) as tls:
                tls.sendall(f"GET {case.path} HTTP/1.1\r\nHost: {name}\r\nConnection: close"
                            "\r\n\r\n".encode())
                head = _read_head(tls)
        except (ssl.SSLError, OSError) as exc:
            return "refused", f"TLS failed: {exc}"
        if not head:
            return "refused", "closed"
        return _outcome(_status(head)), head[:120].decode("latin-1")


def test_evasion_corpus_leaks_nothing(setup: tuple[ProxyProcess, Origins],
                                      security_figures: dict[str, str]) -> None:
    proxy, origins = setup
    cases = generate_cases(PROXY_LISTS, raw_port=origins.raw_port)
    assert len(cases) > 2000
    outcomes: Counter[str] = Counter()
    families: dict[str, Counter[str]] = {}
    leaks: list[str] = []
    for case in cases:
        outcome, detail = run_case(case, proxy, origins)
        outcomes[outcome] += 1
        families.setdefault(case.family, Counter())[outcome] += 1
        if outcome == "leaked":
            leaks.append(f"{case.family}: {case.description} -> {detail}")
    time.sleep(1)  # anything the proxy forwarded late would arrive by now
    assert _origin_state(origins) == (0, 0), (
        "the origins received something during the corpus: "
        f"{[f'{r.host}{r.path_qs}' for r in origins.seen][:20]}")
    security_figures["evasion cases tried"] = str(len(cases))
    security_figures["evasion cases leaked"] = str(outcomes["leaked"])
    security_figures["evasion families"] = ", ".join(
        f"{name} {sum(c.values())}" for name, c in sorted(families.items()))
    assert leaks == [], f"{len(leaks)} leaks:\n" + "\n".join(leaks[:40])
    # Most cases are blocked by policy, not merely refused as malformed.
    assert outcomes["blocked"] > outcomes["refused"]


def _client_hello() -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_the_corpus_is_not_vacuous(setup: tuple[ProxyProcess, Origins]) -> None:
    """The same request shapes to an allowed host do reach the origin."""
    proxy, origins = setup
    allowed = [Case("control", "plain", "http", b"GET http://allowed.test/ HTTP/1.1\r\n"
                    b"Host: allowed.test\r\n\r\n"),
               Case("control", "h2", "h2", url="https://mixed-content.test/news"),
               Case("control", "sni", "sni", connect_host="127.0.0.1", sni="allowed.test",
                    as_staff=True)]
    for case in allowed:
        before = len(origins.seen)
        outcome, detail = run_case(case, proxy, origins)
        assert outcome == "leaked", (case, detail)  # i.e. forwarded, as it should be
        assert len(origins.seen) == before + 1  # and the origin really received it
    # A tunnel to the allowed raw listener relays a real ClientHello: the leak check sees bytes.
    hello = Case("control", "tls", "tunnel", _client_hello(), connect_host="localhost",
                 port=origins.raw_port)
    outcome, detail = run_case(hello, proxy, origins)
    assert outcome == "leaked", detail
    assert Path(proxy.ca_cert).exists()
