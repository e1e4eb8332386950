"""Kerberos (Negotiate) proxy sign-in for domain-joined devices: a real MIT KDC with a realm, a
service keytab and user principals made by the test, a real esafety proxy process that must
sign devices in on its network, real Redis, and real clients (``kinit`` and
``curl --proxy-negotiate``; raw sockets for tokens a browser would never send)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as sync_redis

from proxy_addons.kerberos_signin import KerberosPrincipal, principal_identity
from store.accounts import create_user, get_user, save_user
from store.address_bindings import AddressBindings
from store.connection import connect
from store.keys import Keys
from tests.harness.kerberos_kdc import Kdc, running_kdc
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, free_port, write_config

PROBE = "http://esafety-proxy.invalid/status"
BLOCKED = "http://hatesite.test/forum/thread?id=7"
BLOCKED_HTTPS = "https://casino-royale.test/"
ALLOWED_HTTPS = "https://allowed.test/news"
PASSWORD = "kerberos test password"


@dataclass(frozen=True)
class Realm:
    kdc: Kdc
    proxy: ProxyProcess
    redis_url: str
    keys: Keys
    directory: Path

    def ticket(self, name: str, lifetime: str = "") -> Path:
        """``kinit`` as ``name``: the path of the credential cache holding the ticket."""
        ccache = self.directory / f"ccache-{name}-{uuid.uuid4().hex[:6]}"
        self.kdc.kinit(f"{name}@{self.kdc.realm}", PASSWORD, ccache, lifetime)
        return ccache

    @property
    def proxy_url(self) -> str:
        # curl asks the KDC for HTTP@<the proxy's host name>: HTTP/localhost@REALM here.
        return f"http://localhost:{self.proxy.port}"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
          origins: Origins) -> Iterator[Realm]:
    directory = tmp_path_factory.mktemp("kerberos")
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    with running_kdc(directory / "kdc") as kdc:
        keytab = directory / "proxy.keytab"
        kdc.add_service("HTTP/localhost", keytab)
        # Another service's key in the same keytab: its tickets must still be refused.
        kdc.add_service("HTTP/elsewhere.test", keytab)
        for name in ("alice", "bob", "carol", "dave", "frank"):
            kdc.add_user(name, PASSWORD)
        kdc.add_user("Erin", PASSWORD)
        asyncio.run(_accounts(redis_url, keys))
        config = write_config(
            directory / "esafety.yaml", keys.prefix,
            networks=[{"cidr": "127.0.0.0/8", "group": "learner", "site": "test-wifi",
                       "auth": "required"}],
            identity={"kerberos": {"keytab": str(keytab), "service": "HTTP/localhost"}})
        proxy = ProxyProcess(directory / "data", config, redis_url, origins,
                             extra_env=kdc.env())
        imported = proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
        assert imported.returncode == 0, imported.stdout + imported.stderr
        proxy.start()
        try:
            yield Realm(kdc, proxy, redis_url, keys, directory)
        finally:
            proxy.stop()
            client = sync_redis.Redis.from_url(redis_url)
            for key in client.scan_iter(match=keys.prefix + "*"):
                client.delete(key)
            client.close()


async def _accounts(redis_url: str, keys: Keys) -> None:
    """alice has an esafety account (the directory sync made her staff); bob has none."""
    client = connect(redis_url)
    try:
        await create_user(client, keys, "alice", "staff", "staff", "unused password 1")
        await create_user(client, keys, "erin", "staff", "staff", "unused password 2")
        await create_user(client, keys, "frank", "staff", "staff", "unused password 3")
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Reply:
    exit_code: int
    heads: list[str]
    """Every response head curl saw (407s and a CONNECT's answer included), lower-cased."""
    status: int
    body: str

    def header(self, name: str) -> str:
        for head in reversed(self.heads):
            found = re.search(rf"^{name}: *(.*?)\r?$", head, re.MULTILINE)
            if found:
                return found.group(1)
        return ""


def negotiate_curl(realm: Realm, url: str, ccache: Path | None, *args: str) -> Reply:
    """curl through the proxy signing in with Kerberos from ``ccache`` (as a browser on a
    domain-joined device does)."""
    cmd = ["curl", "-sS", "--max-time", "15", "-x", realm.proxy_url, "--noproxy", "",
           "--proxy-negotiate", "-U", ":", "-D", "-", "-o", "-",
           "-w", "\n__STATUS__%{http_code}", "--cacert", str(realm.proxy.ca_cert), *args, url]
    done = subprocess.run(cmd, capture_output=True, timeout=30,
                          env=realm.kdc.env(ccache or realm.directory / "no-ccache"))
    out, _, status = done.stdout.decode("utf-8", "replace").rpartition("\n__STATUS__")
    heads = []
    while out.startswith("HTTP/"):
        head, _, out = out.partition("\r\n\r\n")
        heads.append(head.lower())
    return Reply(done.returncode, heads, int(status or 0), out)


def token_for(realm: Realm, ccache: Path, host: str = "localhost") -> str:
    """A ``Negotiate`` header value for ``HTTP/host``, made from ``ccache`` now (pyspnego as
    the client, in its own process with the realm's environment)."""
    program = ("import base64, spnego; print(base64.b64encode(spnego.client(hostname="
               f"{host!r}, service='HTTP', protocol='negotiate').step()).decode())")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          env=realm.kdc.env(ccache), timeout=30)
    assert done.returncode == 0, done.stderr
    return "Negotiate " + done.stdout.strip()


def raw_status(realm: Realm, request: str) -> str:
    """The status line the proxy answers one raw request with."""
    import socket
    with socket.create_connection(("127.0.0.1", realm.proxy.port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode("latin-1").split("\r\n")[0]


def hit(realm: Realm, hit_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(realm.redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = [f for _i, f in client.xrange(realm.keys.hits) if f.get("id") == hit_id]
            if found:
                return found[0]
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError(f"no hit {hit_id}")


def auth_failures(realm: Realm) -> float:
    _status, text = realm.proxy.status("/metrics")
    found = re.search(r"^esafety_proxy_auth_failures_total(?:\{[^}]*\})? (\S+)$", text,
                      re.MULTILINE)
    assert found, text[-2000:]
    return float(found.group(1))


def test_the_challenge_offers_negotiate_before_basic(realm: Realm) -> None:
    reply = negotiate_curl(realm, PROBE, None)
    assert reply.status == 407
    offered = re.findall(r"^proxy-authenticate: *(\S+)", reply.heads[-1], re.MULTILINE)
    assert offered == ["negotiate", "basic"]


def test_a_kerberos_user_is_named_on_the_hit_of_a_blocked_site(realm: Realm) -> None:
    ccache = realm.ticket("alice")
    reply = negotiate_curl(realm, BLOCKED, ccache)
    assert reply.status == 403 and "This page is blocked" in reply.body
    recorded = hit(realm, reply.header("x-esafety-hit-id").upper())
    assert (recorded["user"], recorded["group"], recorded["identified_by"]) == \
        ("alice", "staff", "kerberos")
    assert recorded["site"] == "test-wifi" and recorded["device"] == ""
    probe = negotiate_curl(realm, PROBE, ccache)
    assert probe.status == 200
    who = json.loads(probe.body)
    assert (who["user"], who["group"], who["identified_by"]) == ("alice", "staff", "kerberos")


def test_https_through_the_fast_path_and_mitmproxy_is_attributed_too(realm: Realm) -> None:
    ccache = realm.ticket("carol")
    # Allowed: the fast path accepts the ticket and relays the tunnel itself.
    allowed = negotiate_curl(realm, ALLOWED_HTTPS, ccache, "--cacert",
                             str(realm.proxy.origins.ca_file))
    assert allowed.status == 200 and json.loads(allowed.body)["path"] == "/news"
    # Blocked: the fast path hands the CONNECT to mitmproxy, which answers it with the
    # same ticket (a second look at one Kerberos token must not be taken for a replay).
    blocked = negotiate_curl(realm, BLOCKED_HTTPS, ccache)
    assert blocked.exit_code != 0 and any(h.startswith("http/1.1 403") for h in blocked.heads)
    recorded = hit(realm, blocked.header("x-esafety-hit-id").upper())
    assert (recorded["user"], recorded["group"], recorded["identified_by"]) == \
        ("carol", "learner", "kerberos")


def test_a_user_without_an_account_gets_the_networks_group(realm: Realm) -> None:
    reply = negotiate_curl(realm, PROBE, realm.ticket("bob"))
    who = json.loads(reply.body)
    assert (who["user"], who["group"], who["identified_by"]) == ("bob", "learner", "kerberos")


def test_the_principal_name_is_lower_cased_to_the_account(realm: Realm) -> None:
    reply = negotiate_curl(realm, PROBE, realm.ticket("Erin"))
    who = json.loads(reply.body)
    assert (who["user"], who["group"], who["identified_by"]) == ("erin", "staff", "kerberos")


async def _binding(realm: Realm, address: str, user: str | None) -> None:
    """A RADIUS sign-in binding of ``address`` to ``user`` (staff), or none (``None``)."""
    client = connect(realm.redis_url)
    try:
        bindings = AddressBindings(client, realm.keys)
        if user is None:
            await bindings.unbind(address)
        else:
            await bindings.bind(address, user, "radius", 600, group="staff")
    finally:
        await client.aclose()


def _probe_from(realm: Realm, address: str, authorization: str | None = None
                ) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", realm.proxy.port, timeout=10,
                                      source_address=(address, 0))
    try:
        conn.request("GET", PROBE, headers={"Proxy-Authorization": authorization}
                     if authorization else {})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return response.status, (json.loads(body) if response.status == 200 else {})


def test_kerberos_on_the_connection_beats_a_sign_in_binding_at_the_address(
        realm: Realm) -> None:
    """The documented precedence: a sign-in on the connection (here Kerberos) names the
    person even where the Wi-Fi controller bound the address to someone else; requests
    without one are still the binding's."""
    address = "127.0.0.9"
    asyncio.run(_binding(realm, address, "frank"))
    try:
        deadline = time.monotonic() + 5
        while _probe_from(realm, address)[1].get("user") != "frank":
            assert time.monotonic() < deadline, "the proxy never saw the binding"
            time.sleep(0.1)
        status, who = _probe_from(realm, address, token_for(realm, realm.ticket("alice")))
        assert status == 200
        assert (who["user"], who["group"], who["identified_by"]) == ("alice", "staff",
                                                                     "kerberos")
        status, who = _probe_from(realm, address)
        assert (status, who["user"], who["identified_by"]) == (200, "frank", "radius")
    finally:
        asyncio.run(_binding(realm, address, None))


def test_a_computers_ticket_names_the_device(realm: Realm) -> None:
    keytab = realm.directory / "pc1.keytab"
    realm.kdc.add_service("host/pc1.test", keytab)
    ccache = realm.directory / "ccache-pc1"
    realm.kdc.kinit_keytab(f"host/pc1.test@{realm.kdc.realm}", keytab, ccache)
    reply = negotiate_curl(realm, BLOCKED, ccache)
    assert reply.status == 403
    recorded = hit(realm, reply.header("x-esafety-hit-id").upper())
    assert (recorded["user"], recorded["device"], recorded["group"],
            recorded["identified_by"]) == ("", "pc1.test", "learner", "kerberos")


def test_a_forged_token_gets_the_407_and_counts_as_a_failed_sign_in(realm: Realm) -> None:
    before = auth_failures(realm)
    forged = "Negotiate " + base64.b64encode(secrets.token_bytes(600)).decode()
    # A real token's shape with a changed byte: its ticket no longer decrypts.
    good = base64.b64decode(token_for(realm, realm.ticket("dave")).split()[1])
    tampered = good[:-40] + bytes([good[-40] ^ 0xFF]) + good[-39:]
    for header in (forged, "Negotiate " + base64.b64encode(tampered).decode(),
                   "Negotiate not-base64!"):
        assert raw_status(realm, f"GET {PROBE} HTTP/1.1\r\nHost: esafety-proxy.invalid\r\n"
                                 f"Proxy-Authorization: {header}\r\n\r\n") \
            == "HTTP/1.1 407 Proxy Authentication Required"
        assert raw_status(realm, "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443"
                                 f"\r\nProxy-Authorization: {header}\r\n\r\n") \
            == "HTTP/1.1 407 Proxy Authentication Required"
    assert auth_failures(realm) >= before + 6


def test_a_ticket_for_another_service_gets_the_407(realm: Realm) -> None:
    header = token_for(realm, realm.ticket("dave"), host="elsewhere.test")
    assert raw_status(realm, f"GET {PROBE} HTTP/1.1\r\nHost: esafety-proxy.invalid\r\n"
                             f"Proxy-Authorization: {header}\r\n\r\n") \
        == "HTTP/1.1 407 Proxy Authentication Required"
    # The same user's ticket for the proxy is honoured.
    header = token_for(realm, realm.ticket("dave"))
    assert raw_status(realm, f"GET {PROBE} HTTP/1.1\r\nHost: esafety-proxy.invalid\r\n"
                             f"Proxy-Authorization: {header}\r\n\r\n") == "HTTP/1.1 200 OK"


def test_an_expired_ticket_gets_the_407(realm: Realm) -> None:
    ccache = realm.ticket("dave", lifetime="3s")
    header = token_for(realm, ccache)  # made while the ticket was still valid
    time.sleep(5)  # past its end and the realm's one second of clock skew
    assert raw_status(realm, f"GET {PROBE} HTTP/1.1\r\nHost: esafety-proxy.invalid\r\n"
                             f"Proxy-Authorization: {header}\r\n\r\n") \
        == "HTTP/1.1 407 Proxy Authentication Required"
    assert negotiate_curl(realm, PROBE, ccache).status == 407


async def _disable(redis_url: str, keys: Keys, name: str) -> None:
    client = connect(redis_url)
    try:
        user = await get_user(client, keys, name)
        assert user is not None
        await save_user(client, keys, dataclasses.replace(user, disabled=True))
    finally:
        await client.aclose()


def test_a_disabled_account_ends_the_kerberos_sign_in(realm: Realm) -> None:
    ccache = realm.ticket("frank")
    conn = http.client.HTTPConnection("127.0.0.1", realm.proxy.port, timeout=10)
    try:
        conn.request("GET", PROBE, headers={"Proxy-Authorization": token_for(realm, ccache)})
        reply = conn.getresponse()
        who = json.loads(reply.read())
        assert (reply.status, who["user"], who["group"]) == (200, "frank", "staff")
        asyncio.run(_disable(realm.redis_url, realm.keys, "frank"))
        # The open connection's sign-in is re-checked: its next request must sign in again.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            conn.request("GET", PROBE)
            reply = conn.getresponse()
            reply.read()
            if reply.status == 407:
                break
            time.sleep(0.2)
        assert reply.status == 407
    finally:
        conn.close()
    # A new ticket does not sign a disabled account in either.
    assert negotiate_curl(realm, PROBE, ccache).status == 407


def test_principals_map_to_users_and_devices() -> None:
    realm = "CENTRE.LOCAL"
    assert principal_identity("alice@CENTRE.LOCAL", realm) == KerberosPrincipal("alice")
    assert principal_identity("J.Smith@CENTRE.LOCAL", realm) == KerberosPrincipal("j.smith")
    assert principal_identity("host/PC1.centre.local@CENTRE.LOCAL", realm) == \
        KerberosPrincipal(None, "pc1.centre.local")
    assert principal_identity("PC1$@CENTRE.LOCAL", realm) == KerberosPrincipal(None, "pc1")
    for refused in ("alice@OTHER.REALM", "alice@centre.local", "alice/admin@CENTRE.LOCAL",
                    "HTTP/proxy.centre.local@CENTRE.LOCAL", "a\\@b@CENTRE.LOCAL",
                    "@CENTRE.LOCAL", "alice", "-x@CENTRE.LOCAL", "x" * 65 + "@CENTRE.LOCAL"):
        assert principal_identity(refused, realm) is None, refused


def test_a_proxy_with_an_unusable_keytab_says_why_and_does_not_start(
        realm: Realm, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "esafety.yaml", realm.keys.prefix,
        identity={"kerberos": {"keytab": str(tmp_path / "missing.keytab"),
                               "service": "HTTP/localhost"}})
    done = subprocess.run(
        [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
         str(tmp_path / "data"), "proxy", "--listen", f"127.0.0.1:{free_port()}", "--status-listen",
         f"127.0.0.1:{free_port()}", "--workers", "1"],
        capture_output=True, text=True, timeout=60,
        env={**realm.kdc.env(), "ESAFETY_REDIS_URL": realm.redis_url,
             "PATH": os.environ.get("PATH", "")})
    assert done.returncode != 0
    assert "identity.kerberos.keytab" in done.stdout + done.stderr
    assert "missing.keytab" in done.stdout + done.stderr
