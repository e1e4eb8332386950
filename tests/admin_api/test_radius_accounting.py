"""RADIUS accounting: the Wi-Fi controller says who has which address.

End to end: Debian's ``radclient`` (freeradius-utils) sends Accounting-Requests to the real
admin service, and a real esafety proxy on the same Redis attributes requests from that
address (``curl --interface``) to the user and device, until the Stop. The packet handling is
also tested on its own with packets pyrad builds, and the listener with datagrams on a real
UDP socket and a real Redis."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pyrad.dictionary import Dictionary
from pyrad.packet import AccessRequest, AccountingResponse, AcctPacket

from admin_api.prometheus_metrics import AdminMetrics
from admin_api.workers.radius_accounting import (
    DICTIONARY_FILE,
    AccountingPackets,
    RadiusAccountingListener,
    local_user_name,
    normal_mac,
)
from deployment.config import IdentitySettings, RadiusAccountingSettings, RadiusClient
from deployment.listen_address import ListenAddress
from store.connection import connect
from store.hits import hit_from_entry
from store.keys import Keys
from store.records import HitRecord
from store.redis_store import Store
from tests.harness.api import Api, ApiFactory
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, curl, write_config

SECRET = "a shared secret only the controller knows"
SECRET_ENV = "ESAFETY_TEST_RADIUS_SECRET"
DEVICE_ADDRESS = "127.0.0.5"
BLOCKED = "http://casino-royale.test/spin"
# Learners get social networks at break and lunch by default; a learner group without those
# windows keeps this test's answers the same at any time of day.
NO_WINDOWS = {"learner": {}}
PROBE = "http://esafety-proxy.invalid/status"  # the proxy says who is browsing
STAFF_ONLY = "http://friendface.test/feed"  # social networks: staff may, guests may not
DICTIONARY = Dictionary(str(DICTIONARY_FILE))
CONTROLLER = RadiusClient(ipaddress.ip_network("127.0.0.1/32"), SECRET_ENV)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accounting_request(secret: str = SECRET, **attributes: str) -> AcctPacket:
    packet = AcctPacket(secret=secret.encode(), dict=DICTIONARY)
    for name, value in attributes.items():
        packet[name.replace("_", "-")] = value
    return packet


def start_packet(secret: str = SECRET, **extra: str) -> AcctPacket:
    attributes = {"Acct_Status_Type": "Start", "User_Name": "kim.staff",
                  "Framed_IP_Address": "10.0.20.5", "Calling_Station_Id": "AA-BB-CC-DD-EE-0F",
                  "Acct_Session_Id": "session-1", **extra}
    return accounting_request(secret, **attributes)


# -- the packet handling on its own ----------------------------------------------------------
def test_a_good_start_is_accepted_and_answered_with_a_signed_response() -> None:
    packets = AccountingPackets((CONTROLLER,), {SECRET_ENV: SECRET}, DICTIONARY)
    request = start_packet()
    outcome = packets.handle(request.RequestPacket(), "127.0.0.1")
    assert outcome.outcome == "accepted"
    assert outcome.event is not None
    assert (outcome.event.status, outcome.event.user, outcome.event.address,
            outcome.event.device) == ("start", "kim.staff", "10.0.20.5", "aa:bb:cc:dd:ee:0f")
    assert outcome.reply is not None
    reply = AcctPacket(secret=SECRET.encode(), dict=DICTIONARY, packet=outcome.reply)
    assert reply.code == AccountingResponse
    assert request.VerifyReply(reply, outcome.reply)  # signed with the shared secret


def test_packets_from_unknown_clients_or_with_the_wrong_secret_are_dropped_unanswered() -> None:
    packets = AccountingPackets((CONTROLLER,), {SECRET_ENV: SECRET}, DICTIONARY)
    stranger = packets.handle(start_packet().RequestPacket(), "127.0.0.9")
    assert (stranger.outcome, stranger.event, stranger.reply) == ("unknown_client", None, None)
    forged = packets.handle(start_packet(secret="a guess").RequestPacket(), "127.0.0.1")
    assert (forged.outcome, forged.event, forged.reply) == ("bad_authenticator", None, None)
    # A genuine packet changed in flight (the address) no longer matches its authenticator.
    genuine = start_packet().RequestPacket()
    assert genuine.count(bytes([8, 6, 10, 0, 20, 5])) == 1  # Framed-IP-Address 10.0.20.5
    tampered = genuine.replace(bytes([8, 6, 10, 0, 20, 5]), bytes([8, 6, 10, 0, 20, 6]))
    altered = packets.handle(tampered, "127.0.0.1")
    assert (altered.outcome, altered.event, altered.reply) == ("bad_authenticator", None, None)
    # A client whose secret variable is not set is never trusted.
    unset = AccountingPackets((CONTROLLER,), {}, DICTIONARY)
    assert unset.handle(start_packet().RequestPacket(), "127.0.0.1").outcome == "unknown_client"


def test_a_start_without_an_address_is_answered_but_binds_nothing() -> None:
    packets = AccountingPackets((CONTROLLER,), {SECRET_ENV: SECRET}, DICTIONARY)
    request = accounting_request(Acct_Status_Type="Start", User_Name="kim.staff",
                                 Calling_Station_Id="aa:bb:cc:dd:ee:0f")
    outcome = packets.handle(request.RequestPacket(), "127.0.0.1")
    assert outcome.outcome == "unusable" and outcome.event is None
    assert "without Framed-IP-Address" in outcome.reason and "kim.staff" in outcome.reason
    assert outcome.reply is not None  # authentic: answered, so the controller stops resending


@pytest.mark.parametrize("data", [
    b"", b"\x04", b"\x04\x01\x00\x14", b"\x04\x01\x00\xff" + b"\x00" * 16,
    b"\x04\x01\x00\x17" + b"\x00" * 16 + b"\x01\x01\x00",  # an attribute of length 1
])
def test_malformed_packets_are_dropped(data: bytes) -> None:
    packets = AccountingPackets((CONTROLLER,), {SECRET_ENV: SECRET}, DICTIONARY)
    outcome = packets.handle(data, "127.0.0.1")
    assert (outcome.outcome, outcome.event, outcome.reply) == ("malformed", None, None)


def test_an_access_request_on_the_accounting_port_is_not_accounting() -> None:
    packets = AccountingPackets((CONTROLLER,), {SECRET_ENV: SECRET}, DICTIONARY)
    request = start_packet()
    request.code = AccessRequest
    outcome = packets.handle(request.RequestPacket(), "127.0.0.1")
    assert outcome.outcome == "malformed" and outcome.reply is None


def test_device_ids_are_normal_mac_addresses() -> None:
    for spelling in ("AA-BB-CC-DD-EE-0F", "aabb.ccdd.ee0f", "AABBCCDDEE0F", "aa:bb:cc:dd:ee:0f"):
        assert normal_mac(spelling) == "aa:bb:cc:dd:ee:0f"
    assert normal_mac("not a mac") == "" and normal_mac("aa:bb:cc") == ""


def test_only_the_centres_own_realms_are_taken_off_user_names() -> None:
    realms = ("college.ac.uk", "college")
    for spelling in ("alice@college.ac.uk", "alice@COLLEGE.AC.UK", "COLLEGE\\alice",
                     "college\\alice", "alice"):
        assert local_user_name(spelling, realms) == "alice", spelling
    # A visitor's realm (eduroam) is kept: they never become the local alice.
    for foreign in ("alice@other.ac.uk", "OTHER\\alice", "alice@college.ac.uk.evil.test",
                    "@college.ac.uk", "college\\"):
        assert local_user_name(foreign, realms) == foreign
    assert local_user_name("alice@college.ac.uk", ()) == "alice@college.ac.uk"


# -- the listener: real UDP socket, real Redis ------------------------------------------------
async def _exchange(port: int, data: bytes, wait: float = 0.5,
                    source: str = "127.0.0.1") -> bytes | None:
    """Send one datagram from ``source``; the answer, or None when none came."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((source, 0))
        await loop.sock_sendto(sock, data, ("127.0.0.1", port))
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 4096), wait)
        except TimeoutError:
            return None


async def test_the_listener_binds_only_for_good_packets_and_survives_garbage(
        redis_url: str, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(connect(redis_url), keys)
    metrics = AdminMetrics()
    port = free_udp_port()
    # Every interface (as the default ":1813"): IPv4 clients arrive on the dual-stack socket.
    settings = RadiusAccountingSettings(ListenAddress("", port), (CONTROLLER,), 1.0)
    listener = RadiusAccountingListener(settings, store, {SECRET_ENV: SECRET},
                                        metrics.radius_accounting)
    await listener.start()
    caplog.set_level(logging.INFO, "admin_api.workers.radius_accounting")

    def count(outcome: str) -> float:
        return metrics.radius_accounting.labels(outcome)._value.get()

    try:
        for data in (b"", b"\xff" * 3, b"\x04\x01\x00\x17" + b"\x00" * 19):
            assert await _exchange(port, data) is None
        assert await _exchange(port, start_packet(secret="wrong").RequestPacket()) is None
        no_address = accounting_request(Acct_Status_Type="Start", User_Name="kim.staff")
        assert await _exchange(port, no_address.RequestPacket()) is not None
        assert await store.address_bindings.all() == {}
        assert (count("malformed"), count("bad_authenticator"), count("unusable")) == (3, 1, 1)
        assert "Start for 'kim.staff' without Framed-IP-Address: nothing bound" in caplog.text
        assert "dropped (bad authenticator)" in caplog.text and SECRET not in caplog.text
        # Still listening: a good Start binds, and a Stop for someone else changes nothing.
        assert await _exchange(port, start_packet().RequestPacket()) is not None
        binding = await store.address_bindings.get("10.0.20.5")
        assert binding is not None
        assert (binding.user, binding.device, binding.source, binding.group) == (
            "kim.staff", "aa:bb:cc:dd:ee:0f", "radius", "")
        assert 3500 < binding.expires_at - time.time() <= 3600
        other = start_packet(Acct_Status_Type="Stop", User_Name="someone.else")
        assert await _exchange(port, other.RequestPacket()) is not None
        assert await store.address_bindings.get("10.0.20.5") is not None
        stop = start_packet(Acct_Status_Type="Stop")
        assert await _exchange(port, stop.RequestPacket()) is not None
        assert await store.address_bindings.get("10.0.20.5") is None
        # An Interim-Update binds too (the admin service may have started mid-session).
        interim = start_packet(Acct_Status_Type="Interim-Update", Framed_IP_Address="10.0.20.7",
                               Calling_Station_Id="aabb.ccdd.ee10")
        assert await _exchange(port, interim.RequestPacket()) is not None
        binding = await store.address_bindings.get("10.0.20.7")
        assert binding is not None and (binding.user, binding.device) == (
            "kim.staff", "aa:bb:cc:dd:ee:10")
        assert count("accepted") == 4
    finally:
        await listener.stop()
        await store.aclose()


# -- end to end: radclient, the admin service, a proxy ----------------------------------------
@pytest.fixture
def proxy(tmp_path: Path, redis_url: str, origins: Origins, keys: Keys
          ) -> Iterator[ProxyProcess]:
    config = write_config(tmp_path / "esafety.yaml", keys.prefix, groups=NO_WINDOWS,
                          networks=[{"cidr": "127.0.0.0/8", "group": "guest",
                                     "site": "test-wifi"}])
    process = ProxyProcess(tmp_path / "proxy-data", config, redis_url, origins)
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process.start()
    yield process
    process.stop()


def radclient(port: int, secret_file: Path, attributes: dict[str, str]
              ) -> subprocess.CompletedProcess[str]:
    """One Accounting-Request from Debian's radclient (one try, one second to answer)."""
    text = "\n".join(f"{name} = {value}" for name, value in attributes.items()) + "\n"
    return subprocess.run(["radclient", "-r", "1", "-t", "1", "-S", str(secret_file),
                           f"127.0.0.1:{port}", "acct"], input=text, capture_output=True,
                          text=True, timeout=20)


async def blocked_hit(proxy: ProxyProcess, api: Api,
                      user: tuple[str, str] | None = None) -> HitRecord:
    """Request the blocked site from the device's address (signed in on the connection as
    ``user``, when given); the hit the proxy recorded."""
    result = await asyncio.to_thread(
        functools.partial(curl, proxy, BLOCKED, "--interface", DEVICE_ADDRESS, user=user))
    assert result.status == 403, result.stderr
    match = re.search(r"x-esafety-hit-id: (\S+)", result.headers, re.IGNORECASE)
    assert match is not None, result.headers
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for _id, fields in await api.state.store.hits.read_after("0-0", 10_000, None):
            hit = hit_from_entry(dict(fields))
            if hit.id == match.group(1):
                return hit
        await asyncio.sleep(0.05)
    raise AssertionError(f"no hit {match.group(1)} in the stream")


async def staff_only_status(proxy: ProxyProcess, user: tuple[str, str] | None = None) -> int:
    result = await asyncio.to_thread(
        functools.partial(curl, proxy, STAFF_ONLY, "--interface", DEVICE_ADDRESS, user=user))
    return result.status


async def settles(check: Callable[[], Awaitable[object]], expected: object,
                  within: float = 1.5) -> bool:
    """Whether the async ``check()`` returns ``expected`` within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await check() == expected:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)


async def test_radclient_start_and_stop_attribute_a_devices_requests_to_its_user(
        make_api: ApiFactory, proxy: ProxyProcess, tmp_path: Path) -> None:
    port = free_udp_port()
    identity = IdentitySettings(radius_accounting=RadiusAccountingSettings(
        ListenAddress("127.0.0.1", port), (CONTROLLER,), binding_hours=1.0))
    api = await make_api(environ={SECRET_ENV: SECRET}, identity=identity)
    await api.state.store.accounts.create("kim.staff", "staff", "staff", "long enough pass")
    secret_file = tmp_path / "radius-secret"
    secret_file.write_text(SECRET + "\n")
    session = {"User-Name": "kim.staff", "Framed-IP-Address": DEVICE_ADDRESS,
               "Calling-Station-Id": "AA-BB-CC-DD-EE-0F", "Acct-Session-Id": "5f3a0001",
               "NAS-IP-Address": "127.0.0.1"}

    before = await blocked_hit(proxy, api)
    assert (before.user, before.identified_by) == ("", "network")
    assert await staff_only_status(proxy) == 403  # the network's group: guests

    start = await asyncio.to_thread(radclient, port, secret_file,
                                    {**session, "Acct-Status-Type": "Start"})
    assert start.returncode == 0, start.stdout + start.stderr
    assert "Accounting-Response" in start.stdout
    # Every proxy follows within a second: the device's requests are now kim's, as staff.
    assert await settles(lambda: staff_only_status(proxy), 200)
    probe = await asyncio.to_thread(curl, proxy, PROBE, "--interface", DEVICE_ADDRESS)
    assert probe.status == 200
    assert {key: probe.json()[key] for key in ("user", "group", "identified_by")} == {
        "user": "kim.staff", "group": "staff", "identified_by": "radius"}
    during = await blocked_hit(proxy, api)
    assert (during.user, during.device, during.identified_by, during.group,
            during.client_ip) == ("kim.staff", "aa:bb:cc:dd:ee:0f", "radius", "staff",
                                  DEVICE_ADDRESS)

    stop = await asyncio.to_thread(radclient, port, secret_file,
                                   {**session, "Acct-Status-Type": "Stop"})
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert await settles(lambda: staff_only_status(proxy), 403)
    after = await blocked_hit(proxy, api)
    assert (after.user, after.device, after.identified_by) == ("", "", "network")

    # A Start signed with the wrong secret is not answered and changes nothing.
    secret_file.write_text("not the shared secret\n")
    forged = await asyncio.to_thread(radclient, port, secret_file,
                                     {**session, "Acct-Status-Type": "Start"})
    assert forged.returncode != 0 and "Accounting-Response" not in forged.stdout
    await asyncio.sleep(0.6)  # longer than the proxies' poll of the bindings
    assert await staff_only_status(proxy) == 403
    unattributed = await blocked_hit(proxy, api)
    assert (unattributed.user, unattributed.identified_by) == ("", "network")
    assert await api.state.store.address_bindings.all() == {}
    status, metrics = await api.call("GET", "/metrics")
    assert status == 200
    assert 'esafety_radius_accounting_packets_total{outcome="bad_authenticator"} 1.0' in metrics
    assert 'esafety_radius_accounting_packets_total{outcome="accepted"} 2.0' in metrics


async def test_a_token_on_the_connection_beats_a_radius_binding_at_the_same_address(
        make_api: ApiFactory, proxy: ProxyProcess, tmp_path: Path) -> None:
    """The precedence: a sign-in on the connection (here the extension's proxy token) names
    who is browsing, even at an address the Wi-Fi controller has bound to someone else."""
    port = free_udp_port()
    identity = IdentitySettings(radius_accounting=RadiusAccountingSettings(
        ListenAddress("127.0.0.1", port), (CONTROLLER,), binding_hours=1.0))
    api = await make_api(environ={SECRET_ENV: SECRET}, identity=identity)
    accounts = api.state.store.accounts
    await accounts.create("kim.staff", "staff", "staff", "long enough pass")
    await accounts.create("lee.learner", "learner", "learner", "long enough pass")
    lee = ("lee.learner", await accounts.issue_token("lee.learner"))
    secret_file = tmp_path / "radius-secret"
    secret_file.write_text(SECRET + "\n")
    start = await asyncio.to_thread(radclient, port, secret_file, {
        "Acct-Status-Type": "Start", "User-Name": "kim.staff",
        "Framed-IP-Address": DEVICE_ADDRESS, "Calling-Station-Id": "AA-BB-CC-DD-EE-0F",
        "Acct-Session-Id": "5f3a0002", "NAS-IP-Address": "127.0.0.1"})
    assert start.returncode == 0, start.stdout + start.stderr
    # The address is kim's (staff) for requests that carry no sign-in.
    assert await settles(lambda: staff_only_status(proxy), 200)

    # lee's token on the connection, from the same address: lee, as a learner.
    probe = await asyncio.to_thread(
        functools.partial(curl, proxy, PROBE, "--interface", DEVICE_ADDRESS, user=lee))
    assert probe.status == 200
    assert {key: probe.json()[key] for key in ("user", "group", "identified_by")} == {
        "user": "lee.learner", "group": "learner", "identified_by": "auth"}
    assert await staff_only_status(proxy, lee) == 403  # kim's staff profile is not lee's
    hit = await blocked_hit(proxy, api, lee)
    assert (hit.user, hit.group, hit.identified_by, hit.device, hit.client_ip) == (
        "lee.learner", "learner", "auth", "", DEVICE_ADDRESS)  # not kim's, nor kim's MAC

    # Without the token the binding still names kim: it was overridden, not ended.
    assert await api.state.store.address_bindings.get(DEVICE_ADDRESS) is not None
    unsigned = await blocked_hit(proxy, api)
    assert (unsigned.user, unsigned.identified_by, unsigned.device) == (
        "kim.staff", "radius", "aa:bb:cc:dd:ee:0f")


async def test_housekeeping_removes_expired_bindings(make_api: ApiFactory, keys: Keys,
                                                    redis_url: str, redis: aioredis.Redis
                                                    ) -> None:
    store = Store(connect(redis_url), keys)
    try:
        await store.address_bindings.bind("10.0.20.8", "kim.staff", "radius", 60,
                                          now=time.time() - 120)
        await store.address_bindings.bind("10.0.20.9", "sam.staff", "radius", 3600)
    finally:
        await store.aclose()
    assert sorted(await redis.hkeys(keys.address_bindings)) == ["10.0.20.8", "10.0.20.9"]
    await make_api()  # housekeeping runs as the admin service starts
    for _ in range(100):
        if len(await redis.hkeys(keys.address_bindings)) == 1:
            break
        await asyncio.sleep(0.05)
    assert await redis.hkeys(keys.address_bindings) == ["10.0.20.9"]


async def test_a_controller_restart_ends_only_its_own_sign_ins_and_realms_name_local_accounts(
        redis_url: str, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    """Two controllers: Accounting-On from one (it rebooted, so its sessions are over) ends
    the bindings it reported and leaves the other's. A user name in the centre's realm binds
    the local account, with its group; one in a visitor's realm binds that name as it is."""
    store = Store(connect(redis_url), keys)
    await store.accounts.create("alice", "staff", "staff", "a long password")
    port = free_udp_port()
    second = RadiusClient(ipaddress.ip_network("127.0.0.2/32"), SECRET_ENV)
    settings = RadiusAccountingSettings(ListenAddress("127.0.0.1", port), (CONTROLLER, second),
                                        1.0, realms=("college.ac.uk",))
    listener = RadiusAccountingListener(settings, store, {SECRET_ENV: SECRET},
                                        AdminMetrics().radius_accounting)
    await listener.start()
    caplog.set_level(logging.INFO, "admin_api.workers.radius_accounting")
    try:
        # The Wi-Fi's spelling need not be the account's case (directories ignore case).
        ours = start_packet(User_Name="Alice@College.ac.uk", Framed_IP_Address="10.0.30.1")
        assert await _exchange(port, ours.RequestPacket()) is not None
        visitor = start_packet(User_Name="alice@other.ac.uk", Framed_IP_Address="10.0.30.2")
        assert await _exchange(port, visitor.RequestPacket()) is not None
        elsewhere = start_packet(User_Name="kim.staff", Framed_IP_Address="10.0.40.1")
        assert await _exchange(port, elsewhere.RequestPacket(), source="127.0.0.2") is not None
        bound = await store.address_bindings.all()
        assert {a: (b.user, b.group, b.reported_by) for a, b in bound.items()} == {
            "10.0.30.1": ("alice", "staff", "127.0.0.1"),
            "10.0.30.2": ("alice@other.ac.uk", "", "127.0.0.1"),
            "10.0.40.1": ("kim.staff", "", "127.0.0.2")}
        # A Stop in yet another case ends alice's binding; a Start puts it back.
        stop = start_packet(Acct_Status_Type="Stop", User_Name="ALICE",
                            Framed_IP_Address="10.0.30.1")
        assert await _exchange(port, stop.RequestPacket()) is not None
        assert await store.address_bindings.get("10.0.30.1") is None
        assert await _exchange(port, ours.RequestPacket()) is not None
        # The first controller restarts.
        restart = accounting_request(Acct_Status_Type="Accounting-On")
        assert await _exchange(port, restart.RequestPacket()) is not None
        assert set(await store.address_bindings.all()) == {"10.0.40.1"}
        assert "the 2 sign-ins it reported have ended" in caplog.text
        # A forged Accounting-Off (wrong secret) from the second ends nothing.
        forged = accounting_request(secret="wrong", Acct_Status_Type="Accounting-Off")
        assert await _exchange(port, forged.RequestPacket(), source="127.0.0.2") is None
        assert set(await store.address_bindings.all()) == {"10.0.40.1"}
        stopping = accounting_request(Acct_Status_Type="Accounting-Off")
        assert await _exchange(port, stopping.RequestPacket(), source="127.0.0.2") is not None
        assert await store.address_bindings.all() == {}
    finally:
        await listener.stop()
        await store.aclose()
