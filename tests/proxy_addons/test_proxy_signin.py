"""Proxy sign-in that cannot be guessed or kept after it ends: a real esafety proxy process,
real Redis, a real admin app, and real clients (curl from several loopback addresses, raw
keep-alive sockets, TLS through a CONNECT tunnel)."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient, TestServer

from admin_api.app import build_app
from admin_api.context import AdminSettings
from deployment.config import Config
from deployment.instance import Instance
from esafety.embedded_redis import EmbeddedRedis
from store.accounts import create_user, get_user, hash_password, issue_token, save_user
from store.connection import connect
from store.keys import Keys
from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    basic,
    curl,
    raw_connection,
    read_response_head,
    write_config,
)

PASSWORD = "correct horse battery"
PROBE = "http://esafety-proxy.invalid/status"
# Learners get social networks at break and lunch by default; a learner group without those
# windows keeps this test's answers the same at any time of day.
NO_WINDOWS = {"learner": {}}
STAFF_ONLY = "http://friendface.test/feed"  # social networks: allowed to staff, not learners
ENDS_WITHIN = 5.0
USERS = [("staff1", "staff"), ("staff2", "staff"), ("staff3", "staff"), ("staff4", "staff"),
         ("staff5", "staff"), ("staff6", "staff"), ("staff7", "staff"), ("staff8", "staff"),
         ("learner1", "learner")]


@pytest.fixture(scope="module")
def module_keys() -> Keys:
    return Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _make_users(redis_url: str, keys: Keys) -> None:
    client = connect(redis_url)
    try:
        for name, group in USERS:
            await create_user(client, keys, name, group, group, PASSWORD)
        await create_user(client, keys, "it1", "it_support", "staff", PASSWORD)
    finally:
        await client.aclose()


async def _token(redis_url: str, keys: Keys, name: str) -> str:
    client = connect(redis_url)
    try:
        return await issue_token(client, keys, name)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, redis_url: str, origins: Origins,
          module_keys: Keys) -> Iterator[ProxyProcess]:
    directory = tmp_path_factory.mktemp("signin")
    config = write_config(
        directory / "esafety.yaml", module_keys.prefix, groups=NO_WINDOWS,
        networks=[{"cidr": "127.0.0.0/8", "group": "learner", "site": "test-wifi"}])
    _run(_make_users(redis_url, module_keys))
    process = ProxyProcess(directory / "data", config, redis_url, origins)
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process.start()
    assert curl(process, STAFF_ONLY).status == 403  # learners (this network) may not
    yield process
    process.stop()
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=module_keys.prefix + "*"):
        client.delete(key)
    client.close()


def probe(proxy: ProxyProcess, user: tuple[str, str] | None = None,
          address: str = "127.0.0.1") -> tuple[int, dict[str, Any] | None, str]:
    """(status, who the proxy says is browsing, body) for one fresh connection."""
    result = curl(proxy, PROBE, "--interface", address, user=user)
    return result.status, (result.json() if result.status == 200 else None), result.body


def is_network(who: dict[str, Any] | None) -> bool:
    return who is not None and who["user"] is None and who["identified_by"] == "network" \
        and who["group"] == "learner"


def lock_out(proxy: ProxyProcess, name: str, address: str) -> int:
    """Guess wrong passwords for ``name`` from ``address`` until the proxy answers 407."""
    for attempt in range(1, 12):
        status, who, _ = probe(proxy, (name, f"guess number {attempt}"), address)
        if status == 407:
            return attempt
        assert status == 200 and is_network(who), who
    raise AssertionError("never locked")


class KeepAlive:
    """One client connection to the proxy, kept open across requests."""

    def __init__(self, proxy: ProxyProcess, address: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=15,
                                               source_address=(address, 0))
        self.local: tuple[str, int] | None = None

    def get(self, url: str, auth: str) -> tuple[int, str]:
        self.conn.request("GET", url, headers={"Proxy-Authorization": auth})
        response = self.conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        assert self.conn.sock is not None
        local = self.conn.sock.getsockname()
        if self.local is None:
            self.local = local
        assert local == self.local, "the proxy closed the keep-alive connection"
        return response.status, body

    def close(self) -> None:
        self.conn.close()


def test_brute_force_locks_the_guessing_address_only(proxy: ProxyProcess) -> None:
    statuses = []
    for i in range(50):
        status, who, _ = probe(proxy, ("staff1", f"wrong password {i}"))
        statuses.append(status)
        if status == 200:  # a wrong password gets the network's profile, never staff's
            assert is_network(who), who
    assert statuses == [200] * 5 + [407] * 45
    # Now the right password from the guessing laptop is refused too: no oracle left.
    status, who, body = probe(proxy, ("staff1", PASSWORD))
    assert status == 407 and who is None and "Too many wrong passwords" in body
    blocked = curl(proxy, STAFF_ONLY, user=("staff1", PASSWORD))
    assert blocked.status == 407 and "friendface" not in blocked.body
    with raw_connection(proxy) as sock:  # the CONNECT fast path refuses it the same way
        sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n"
                     b"Proxy-Authorization: " + basic("staff1", PASSWORD).encode() + b"\r\n\r\n")
        assert read_response_head(sock).startswith("HTTP/1.1 407")
    # The real staff member at another address still signs in.
    status, who, _ = probe(proxy, ("staff1", PASSWORD), "127.0.0.5")
    assert status == 200 and who is not None
    assert (who["user"], who["group"], who["identified_by"]) == ("staff1", "staff", "auth")
    staff = curl(proxy, STAFF_ONLY, "--interface", "127.0.0.5", user=("staff1", PASSWORD))
    assert staff.status == 200
    # ...and that success does not unlock the guessing address.
    assert probe(proxy, ("staff1", PASSWORD))[0] == 407


def test_token_sign_in_works_while_passwords_are_locked(proxy: ProxyProcess, redis_url: str,
                                                        module_keys: Keys) -> None:
    assert lock_out(proxy, "staff6", "127.0.0.2") == 6
    assert probe(proxy, ("staff6", PASSWORD), "127.0.0.2")[0] == 407
    token = _run(_token(redis_url, module_keys, "staff6"))
    status, who, _ = probe(proxy, ("staff6", token), "127.0.0.2")
    assert status == 200 and who is not None
    assert (who["user"], who["group"], who["identified_by"]) == ("staff6", "staff", "auth")
    # Wrong or expired tokens are not password guesses: they never lock anyone out.
    for i in range(10):
        status, who, _ = probe(proxy, ("staff7", f"{i:02d}" + "x" * 41), "127.0.0.2")
        assert status == 200 and is_network(who)
    status, who, _ = probe(proxy, ("staff7", PASSWORD), "127.0.0.2")
    assert status == 200 and who is not None and who["user"] == "staff7"


def test_an_admin_lockout_also_locks_the_proxy_at_that_address(
        proxy: ProxyProcess, redis_url: str, module_keys: Keys, tmp_path: Path) -> None:
    async def lock_at_admin() -> list[int]:
        instance = Instance(dataclasses.replace(Config(), redis_prefix=module_keys.prefix),
                            tmp_path / "admin", redis_url)
        settings = AdminSettings(instance=instance, redis_url=redis_url, keys=module_keys,
                                 run_workers=False)
        client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
        await client.start_server()
        statuses = []
        try:
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.4", 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                for password in ["guess"] * 5 + [PASSWORD]:
                    async with session.post(client.make_url("/api/v1/auth/login"), json={
                            "username": "it1", "password": password}) as resp:
                        statuses.append(resp.status)
        finally:
            await client.close()
        return statuses

    assert _run(lock_at_admin()) == [401] * 5 + [429]
    status, who, _ = probe(proxy, ("it1", PASSWORD), "127.0.0.4")
    assert status == 407 and who is None
    status, who, _ = probe(proxy, ("it1", PASSWORD), "127.0.0.9")
    assert status == 200 and who is not None and who["user"] == "it1"


def test_passwords_off_refuses_a_right_password_and_accepts_a_token(
        tmp_path: Path, redis_url: str, origins: Origins, module_keys: Keys,
        proxy: ProxyProcess) -> None:
    config = write_config(tmp_path / "tokens-only.yaml", module_keys.prefix,
                          proxy_auth={"mode": "required", "passwords": False})
    tokens_only = ProxyProcess(tmp_path / "data", config, redis_url, origins).start()
    try:
        status, who, _ = probe(tokens_only, ("staff5", PASSWORD))
        assert status == 407 and who is None
        token = _run(_token(redis_url, module_keys, "staff5"))
        status, who, _ = probe(tokens_only, ("staff5", token))
        assert status == 200 and who is not None
        assert (who["user"], who["identified_by"]) == ("staff5", "auth")
        # Refused passwords were never checked, so they cost the account no attempts.
        assert probe(proxy, ("staff5", PASSWORD))[1] is not None
        # Where sign-in is required, a revoked token's open connection is asked to sign in.
        conn = KeepAlive(tokens_only, "127.0.0.12")
        try:
            status, body = conn.get(PROBE, basic("staff5", token))
            assert status == 200 and json.loads(body)["user"] == "staff5"
            _cli(tokens_only, "users", "revoke-tokens", "staff5")()
            deadline = time.monotonic() + ENDS_WITHIN
            while status == 200 and time.monotonic() < deadline:
                status, body = conn.get(PROBE, basic("staff5", token))
                assert status == 407 or json.loads(body)["user"] == "staff5"
                time.sleep(0.2)
            assert status == 407
            assert conn.get(STAFF_ONLY, basic("staff5", token))[0] == 407
        finally:
            conn.close()
    finally:
        tokens_only.stop()
    bad = write_config(tmp_path / "bad.yaml", module_keys.prefix,
                       proxy_auth={"mode": "off", "passwords": "sometimes"})
    checked = ProxyProcess(tmp_path / "data2", bad, redis_url, origins).cli("config", "check")
    assert checked.returncode != 0 and "passwords" in checked.stdout + checked.stderr


def _cli(proxy: ProxyProcess, *args: str) -> Callable[[], None]:
    def run() -> None:
        done = proxy.cli(*args)
        assert done.returncode == 0, done.stderr
    return run


def _profile_ends_on_open_connection(proxy: ProxyProcess, name: str, secret: str,
                                     address: str, end: Callable[[], None]
                                     ) -> list[dict[str, Any] | int]:
    conn = KeepAlive(proxy, address)
    auth = basic(name, secret)
    try:
        for _ in range(3):
            status, body = conn.get(PROBE, auth)
            assert status == 200 and json.loads(body)["user"] == name
        assert conn.get(STAFF_ONLY, auth)[0] == 200
        end()
        deadline = time.monotonic() + ENDS_WITHIN
        seen: list[dict[str, Any] | int] = []
        while time.monotonic() < deadline:
            status, body = conn.get(PROBE, auth)
            who = json.loads(body) if status == 200 else status
            if who != seen[-1:] or not seen:
                seen.append(who)
            if status != 200 or json.loads(body)["user"] != name:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"{name} kept their profile for {ENDS_WITHIN} s: {seen}")
        # From here on, the same connection never gets the old profile back.
        for _ in range(4):
            status, body = conn.get(STAFF_ONLY, auth)
            assert status in (403, 407), (status, body[:200])
            status, body = conn.get(PROBE, auth)
            assert status == 407 or is_network(json.loads(body)), body
        return seen
    finally:
        conn.close()


def test_disabling_a_user_ends_their_profile_on_a_keep_alive_connection(
        proxy: ProxyProcess) -> None:
    seen = _profile_ends_on_open_connection(proxy, "staff2", PASSWORD, "127.0.0.3",
                                            _cli(proxy, "users", "disable", "staff2"))
    assert isinstance(seen[-1], dict) and is_network(seen[-1])


def test_revoking_tokens_ends_a_token_sign_in_on_a_keep_alive_connection(
        proxy: ProxyProcess, redis_url: str, module_keys: Keys) -> None:
    token = _run(_token(redis_url, module_keys, "staff3"))
    seen = _profile_ends_on_open_connection(proxy, "staff3", token, "127.0.0.6",
                                            _cli(proxy, "users", "revoke-tokens", "staff3"))
    assert isinstance(seen[-1], dict) and is_network(seen[-1])
    # The account itself still works with its password.
    assert probe(proxy, ("staff3", PASSWORD), "127.0.0.6")[1] is not None


async def _change_user(redis_url: str, keys: Keys, name: str, **changes: Any) -> None:
    client = connect(redis_url)
    try:
        user = await get_user(client, keys, name)
        assert user is not None
        await save_user(client, keys, dataclasses.replace(user, **changes))
    finally:
        await client.aclose()


def test_a_password_change_ends_sign_ins_made_with_the_old_password(
        proxy: ProxyProcess, redis_url: str, module_keys: Keys) -> None:
    new_hash = hash_password("a brand new passphrase")
    seen = _profile_ends_on_open_connection(
        proxy, "staff7", PASSWORD, "127.0.0.10",
        lambda: _run(_change_user(redis_url, module_keys, "staff7", password_hash=new_hash)))
    assert isinstance(seen[-1], dict) and is_network(seen[-1])
    status, who, _ = probe(proxy, ("staff7", "a brand new passphrase"), "127.0.0.10")
    assert status == 200 and who is not None and who["user"] == "staff7"


def test_a_group_change_takes_effect_on_a_keep_alive_connection(
        proxy: ProxyProcess, redis_url: str, module_keys: Keys) -> None:
    token = _run(_token(redis_url, module_keys, "staff5"))
    conn = KeepAlive(proxy, "127.0.0.11")
    auth = basic("staff5", token)
    try:
        assert conn.get(STAFF_ONLY, auth)[0] == 200
        _run(_change_user(redis_url, module_keys, "staff5", group="learner"))
        deadline = time.monotonic() + ENDS_WITHIN
        while time.monotonic() < deadline:
            who = json.loads(conn.get(PROBE, auth)[1])
            if who["group"] == "learner":
                break
            time.sleep(0.2)
        assert (who["user"], who["group"], who["identified_by"]) == ("staff5", "learner", "auth")
        assert conn.get(STAFF_ONLY, auth)[0] == 403
    finally:
        conn.close()
        _run(_change_user(redis_url, module_keys, "staff5", group="staff"))


def _tunnel(proxy: ProxyProcess, name: str) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(b"CONNECT www.google.com:443 HTTP/1.1\r\nHost: www.google.com:443\r\n"
                 b"Proxy-Authorization: " + basic(name, PASSWORD).encode() + b"\r\n\r\n")
    head = read_response_head(sock)
    assert head.startswith("HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=str(proxy.ca_cert))
    tls = context.wrap_socket(sock, server_hostname="www.google.com")
    _tunnel_get(tls)
    return tls


def _tunnel_get(tls: ssl.SSLSocket) -> dict[str, Any]:
    """One request inside the decrypted tunnel; the origin's echo of it."""
    tls.sendall(b"GET /search?q=maths HTTP/1.1\r\nHost: www.google.com\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        assert chunk, "the tunnel closed"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = tls.recv(4096)
        assert chunk, "the tunnel closed"
        body += chunk
    echo: dict[str, Any] = json.loads(body)
    return echo


def _closed_within(tls: ssl.SSLSocket, seconds: float) -> bool:
    tls.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = tls.recv(4096)
        except TimeoutError:
            continue
        except (ssl.SSLError, ConnectionError):
            return True
        if not data:
            return True
    return False


def test_disabling_a_user_closes_their_open_tunnel(proxy: ProxyProcess) -> None:
    ending, control = _tunnel(proxy, "staff4"), _tunnel(proxy, "learner1")
    try:
        done = proxy.cli("users", "disable", "staff4")
        assert done.returncode == 0, done.stderr
        assert _closed_within(ending, ENDS_WITHIN)
        assert _tunnel_get(control)["host"] == "www.google.com"  # others' tunnels stay open
    finally:
        ending.close()
        control.close()


def _relayed_tunnel(proxy: ProxyProcess, name: str) -> ssl.SSLSocket:
    """A pass-through tunnel to an allowed host (relayed, not decrypted): the origin's own
    certificate, one request answered by the origin."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n"
                 b"Proxy-Authorization: " + basic(name, PASSWORD).encode() + b"\r\n\r\n")
    head = read_response_head(sock)
    assert head.startswith("HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=str(proxy.origins.ca_file))
    tls = context.wrap_socket(sock, server_hostname="allowed.test")
    tls.sendall(b"GET /still-open HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    assert tls.recv(4096).startswith(b"HTTP/1.1 200")
    return tls


def test_disabling_a_user_closes_their_relayed_tunnel(proxy: ProxyProcess) -> None:
    """The fast path relays allowed HTTPS without decrypting it; such a tunnel (which trusts
    the origin's certificate, not esafety's) still ends when its user's sign-in ends."""
    ending, control = _relayed_tunnel(proxy, "staff8"), _relayed_tunnel(proxy, "learner1")
    try:
        done = proxy.cli("users", "disable", "staff8")
        assert done.returncode == 0, done.stderr
        assert _closed_within(ending, ENDS_WITHIN)
        control.sendall(b"GET /still-open HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        assert control.recv(4096).startswith(b"HTTP/1.1 200")  # others' tunnels stay open
    finally:
        ending.close()
        control.close()


def test_other_users_are_served_while_many_passwords_are_checked(
        proxy: ProxyProcess, redis_url: str, module_keys: Keys) -> None:
    token = _run(_token(redis_url, module_keys, "learner1"))
    spray = [subprocess.Popen(
        ["curl", "-sS", "--max-time", "60", "-x", proxy.proxy_url, "--noproxy", "",
         "--interface", "127.0.0.7", "--proxy-user", f"ghost{i}:not the password {i}",
         "-o", "/dev/null", "-w", "%{http_code}", PROBE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(24)]
    try:
        for _ in range(3):
            status, who, _ = probe(proxy, None, "127.0.0.8")
            assert status == 200 and is_network(who)
            status, who, _ = probe(proxy, ("learner1", token), "127.0.0.8")
            assert status == 200 and who is not None and who["user"] == "learner1"
            assert curl(proxy, "http://allowed.test/", "--interface", "127.0.0.8").status == 200
    finally:
        outputs = [p.communicate(timeout=90)[0].decode() for p in spray]
    assert outputs == ["200"] * 24  # every guess was checked and got the network profile


def test_with_redis_down_sign_ins_fall_back_to_the_network_identity(
        tmp_path: Path, origins: Origins) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False).start()
    keys = Keys(prefix="esafety-outage:")
    _run(_make_users(server.url, keys))
    config = write_config(tmp_path / "outage.yaml", keys.prefix, groups=NO_WINDOWS,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner",
                                     "site": "test-wifi"}])
    outage = ProxyProcess(tmp_path / "data", config, server.url, origins).start()
    conn = KeepAlive(outage, "127.0.0.1")
    auth = basic("staff1", PASSWORD)
    try:
        status, body = conn.get(PROBE, auth)
        assert status == 200 and json.loads(body)["user"] == "staff1"
        server.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = conn.get(PROBE, auth)
            assert status == 200
            if json.loads(body)["user"] is None:
                break
            time.sleep(0.5)
        assert is_network(json.loads(body)), body
        for _ in range(3):  # never staff again while Redis is away, on old or new connections
            assert is_network(json.loads(conn.get(PROBE, auth)[1]))
            status, who, _ = probe(outage, ("staff1", PASSWORD))
            assert status == 200 and is_network(who)
        assert curl(outage, "http://allowed.test/").status == 200  # still filtering
    finally:
        conn.close()
        outage.stop()
        server.stop()
