"""Fuzz the running proxy with malformed requests, CONNECT lines and headers: it never
crashes, never forwards a request for a blocked host, and keeps serving."""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis as sync_redis

from store.keys import Keys
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, curl, start_origins, write_config

INPUTS = 1500
SEED = 20261122

VALID = [
    b"GET http://allowed.test/page?q=1 HTTP/1.1\r\nHost: allowed.test\r\nUser-Agent: fuzz\r\n"
    b"Accept: */*\r\n\r\n",
    b"GET http://casino-royale.test/ HTTP/1.1\r\nHost: casino-royale.test\r\n\r\n",
    b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n",
    b"CONNECT casino-royale.test:443 HTTP/1.1\r\nHost: casino-royale.test:443\r\n\r\n",
    b"POST http://allowed.test/form HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n\r\na=b&c",
]
NASTY = [b"\x00", b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"@", b"%", b"%00", b"\xff", b"\xc3\x28",
         b"\\", b"[", b"]", b"..", b"//", b"#", b"?", b"\x7f", b"A" * 9000, b"9" * 30,
         b"Transfer-Encoding: chunked\r\n", b"Content-Length: -1\r\n",
         b"Content-Length: 99999999999999999999\r\n", b"Host: casino-royale.test\r\n",
         b"Proxy-Authorization: Basic !!!\r\n", b"Upgrade: h2c\r\nConnection: Upgrade\r\n",
         "é".encode(), b"\xe2\x80\xae"]


def mutate(rng: random.Random) -> bytes:
    data = bytearray(rng.choice(VALID))
    for _ in range(rng.randint(1, 6)):
        operation = rng.randrange(6)
        position = rng.randrange(len(data) + 1)
        if operation == 0 and data:
            del data[position:position + rng.randint(1, 8)]
        elif operation == 1:
            data[position:position] = rng.choice(NASTY)
        elif operation == 2 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif operation == 3:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif operation == 4:
            cut = data.find(b"\r\n")
            if cut > 0:
                method = rng.choice([b"GET", b"CONNECT", b"PRI", b"G\x00T", b"", b"get",
                                     b"OPTIONS", b"TRACE", b"X" * 300])
                first = data[:cut].split(b" ", 1)
                data[:cut] = method + b" " + (first[1] if len(first) > 1 else b"")
        else:
            data[position:position] = b"\r\nX-Fuzz: " + bytes(rng.randrange(32, 127)
                                                              for _ in range(rng.randint(0, 40)))
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    origins = start_origins(tmp_path_factory.mktemp("fuzz-origins"))
    yield origins
    origins.stop()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
          fuzz_origins: Origins) -> Iterator[ProxyProcess]:
    directory = tmp_path_factory.mktemp("fuzz")
    origins = fuzz_origins
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    config = write_config(directory / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    process = ProxyProcess(directory / "data", config, redis_url, origins)
    assert process.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    process.start()
    yield process
    process.stop()
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=keys.prefix + "*"):
        client.delete(key)
    client.close()


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.settimeout(0.1)
        try:
            sock.sendall(payload)
            return sock.recv(4096)
        except (TimeoutError, ConnectionError):
            return b""


def _blocked_at_origin(origins: Origins, since: int) -> list[str]:
    """Requests for the blocked host that reached the origin (by its Host, or the path)."""
    return [f"{r.host}{r.path_qs}" for r in origins.seen[since:]
            if "casino-royale" in (r.host + r.path_qs).lower()]


def test_malformed_input_never_crashes_or_leaks(proxy: ProxyProcess, fuzz_origins: Origins,
                                                security_figures: dict[str, str]) -> None:
    rng = random.Random(SEED)
    statuses: Counter[str] = Counter()
    leaks = []
    for n in range(INPUTS):
        payload = mutate(rng)
        before = len(fuzz_origins.seen)
        reply = _exchange(proxy.port, payload)
        status = reply.split(b" ", 2)[1].decode("latin-1") if reply.count(b" ") >= 2 else "none"
        statuses[status] += 1
        # A request for the blocked host must never reach the origin: checked at the origin.
        if found := _blocked_at_origin(fuzz_origins, before):
            leaks.append((payload[:200], found))
        if n % 250 == 0:
            assert proxy.process is not None and proxy.process.poll() is None, "proxy crashed"
    assert proxy.process is not None and proxy.process.poll() is None, "proxy crashed"
    time.sleep(1)  # anything forwarded after its client gave up has arrived by now
    assert leaks == []
    assert _blocked_at_origin(fuzz_origins, 0) == []
    # ...and it still serves ordinary traffic and blocks what it should.
    assert curl(proxy, "http://allowed.test/after-fuzz").status == 200
    assert fuzz_origins.saw("/after-fuzz")  # the origin check sees what is forwarded
    assert curl(proxy, "http://casino-royale.test/").status == 403
    assert proxy.status("/healthz")[0] == 200
    assert "Traceback" not in proxy.log_text()
    security_figures["fuzz inputs: proxy (malformed requests)"] = (
        f"{INPUTS} inputs, 0 crashes, 0 leaks; answers " +
        ", ".join(f"{s} {c}" for s, c in statuses.most_common(6)))
