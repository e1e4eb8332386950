"""The evasion corpus through the real proxy: count the cases tried and leaked (must be 0).

A case is *blocked* when the proxy answers 403 (block page or refused CONNECT), *refused*
when it rejects the request as malformed (400) or the TLS handshake fails, and *leaked* when
the request reaches the origin (or the proxy tries to reach it)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from store.accounts import create_user
from store.connection import connect
from store.keys import Keys
from tests.evasion_corpus import Case, generate_cases
from tests.proxy_harness import PROXY_LISTS, Origins, ProxyProcess, basic, start_origins, write_config

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
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
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


def run_case(case: Case, proxy: ProxyProcess, origins: Origins) -> tuple[str, str]:
    """(outcome, detail) for one case."""
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
        connect = f"CONNECT {case.connect_host}:443 HTTP/1.1\r\nHost: {case.connect_host}:443\r\n"
        if case.as_staff:
            connect += f"Proxy-Authorization: {basic('staff9', PASSWORD)}\r\n"
        sock.sendall((connect + "\r\n").encode())
        status = _status(_read_head(sock))
        if status != 200:
            return _outcome(status), f"CONNECT answered {status}"
        context = ssl.create_default_context(cafile=str(proxy.ca_cert))
        context.load_verify_locations(cafile=str(origins.ca_file))
        try:
            with context.wrap_socket(sock, server_hostname=case.sni) as tls:
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {case.sni}\r\nConnection: close\r\n\r\n"
                            .encode())
                head = _read_head(tls)
        except (ssl.SSLError, OSError) as exc:
            return "refused", f"TLS failed: {exc}"
        return _outcome(_status(head)), head[:120].decode("latin-1")


def test_evasion_corpus_leaks_nothing(setup: tuple[ProxyProcess, Origins],
                                      security_figures: dict[str, str]) -> None:
    proxy, origins = setup
    cases = generate_cases(PROXY_LISTS)
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
    security_figures["evasion cases tried"] = str(len(cases))
    security_figures["evasion cases leaked"] = str(outcomes["leaked"])
    security_figures["evasion families"] = ", ".join(
        f"{name} {sum(c.values())}" for name, c in sorted(families.items()))
    assert leaks == [], f"{len(leaks)} leaks:\n" + "\n".join(leaks[:40])
    # Most cases are blocked by policy, not merely refused as malformed.
    assert outcomes["blocked"] > outcomes["refused"]


def test_the_corpus_is_not_vacuous(setup: tuple[ProxyProcess, Origins]) -> None:
    """The same request shapes to an allowed host do reach the origin."""
    proxy, origins = setup
    allowed = [Case("control", "plain", "http", b"GET http://allowed.test/ HTTP/1.1\r\n"
                    b"Host: allowed.test\r\n\r\n"),
               Case("control", "h2", "h2", url="https://mixed-content.test/news"),
               Case("control", "sni", "sni", connect_host="127.0.0.1", sni="allowed.test",
                    as_staff=True)]
    for case in allowed:
        outcome, detail = run_case(case, proxy, origins)
        assert outcome == "leaked", (case, detail)  # i.e. forwarded, as it should be
    assert Path(proxy.ca_cert).exists()
