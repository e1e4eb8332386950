"""RADIUS accounting from the Wi-Fi controller: who has which address, on which device.

The controller (the NAS) sends an Accounting-Request when a device joins (Start), now and then
while it stays (Interim-Update) and when it leaves (Stop), naming the user it authenticated
(``User-Name``), the address the device got (``Framed-IP-Address``) and the device's MAC
(``Calling-Station-Id``). Start and Interim-Update bind the address to that user for
``binding_hours`` (``Store.address_bindings``, source ``radius``), so every proxy attributes the
address's requests to them within a second; Stop removes that user's binding only. A user name
in one of the centre's ``realms`` (``alice@college.ac.uk``, ``COLLEGE\\alice``) names the
account ``alice``; in any other realm it is kept whole. Accounting-On and Accounting-Off (the
controller restarted, so every session it knew of is over) end every binding that controller
reported.

Two parts:

* :class:`AccountingPackets` is pure: one datagram and its source address in, one
  :class:`PacketOutcome` out. A packet from an address that is not a configured client, or
  whose Request Authenticator (or Message-Authenticator) does not match the client's shared
  secret, is dropped: never answered, never acted on. A packet that cannot be decoded is
  dropped as malformed. An authentic packet that names no user or address is answered (so the
  controller stops resending it) and changes nothing.
* :class:`RadiusAccountingListener` is the ``asyncio.DatagramProtocol`` in the admin process:
  it applies the outcomes in arrival order (one queue, so a Stop never overtakes its Start)
  and answers each authentic packet with a signed Accounting-Response only once its change is
  stored; when Redis cannot be written it does not answer, and the controller resends.

Counters (``esafety_radius_accounting_packets_total`` by ``outcome``) are on the admin's
``/metrics``. Shared secrets come only from the environment variables the config names; they
are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from prometheus_client import Counter
from pyrad.dictionary import Dictionary
from pyrad.packet import AccountingRequest, AcctPacket, PacketError
from redis.exceptions import RedisError

from admin_api.prometheus_metrics import RADIUS_OUTCOMES
from deployment.config import RadiusAccountingSettings, RadiusClient
from store.address_bindings import BindingError
from store.redis_store import Store

log = logging.getLogger(__name__)

DICTIONARY_FILE = Path(__file__).with_name("radius.dictionary")
OUTCOMES = RADIUS_OUTCOMES
"""``accepted``: authentic and acted on. ``unusable``: authentic, answered, but it named no user
or address (or a status esafety does not act on), so nothing changed. The other three are
dropped without an answer."""
QUEUE_LIMIT = 1000
"""Authentic packets waiting to be stored; beyond this they are dropped unanswered (the
controller resends)."""
LOG_EVERY_SECONDS = 60.0
"""A dropped packet is logged at most this often per source and reason (a flood of forged
packets never floods the log)."""
Address = tuple[Any, ...]
"""A datagram's source as asyncio gives it: (host, port) or, for IPv6, (host, port, flow, scope)."""
BINDING_STATUSES = {"Start": "start", "Interim-Update": "interim", "Stop": "stop"}
RESTART_STATUSES = ("Accounting-On", "Accounting-Off")
"""The controller (re)started or is stopping: every session it reported has ended."""
NOT_BINDING = "Acct-Status-Type"
"""How the reason for a status esafety does not act on starts."""
_MAC_SEPARATORS = re.compile(r"[:.\- ]")
_TWELVE_HEX = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class AccountingEvent:
    """What one authentic Start, Interim-Update, Stop, Accounting-On or -Off asks for."""

    status: str
    """``start``, ``interim``, ``stop`` or ``restart`` (Accounting-On or -Off)."""
    user: str
    address: str
    device: str
    """The device's MAC as ``aa:bb:cc:dd:ee:ff``, or "" when the packet gave none."""
    session: str = ""
    reporter: str = ""
    """The address of the controller that sent it."""


@dataclass(frozen=True)
class PacketOutcome:
    outcome: str
    """One of :data:`OUTCOMES`."""
    reason: str
    """Why, for the log (never a secret)."""
    source: str
    event: AccountingEvent | None = None
    reply: bytes | None = None
    """The signed Accounting-Response to send once the event is stored; None: no answer."""


def normal_mac(value: str) -> str:
    """``AA-BB-CC-DD-EE-FF``, ``aabb.ccdd.eeff`` or ``AABBCCDDEEFF`` as ``aa:bb:cc:dd:ee:ff``;
    "" for anything that is not one MAC address."""
    digits = _MAC_SEPARATORS.sub("", value.strip()).lower()
    if not _TWELVE_HEX.fullmatch(digits):
        return ""
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def local_user_name(user: str, realms: tuple[str, ...]) -> str:
    """``user`` without its realm when the realm is one of the centre's (lower case):
    ``alice@college.ac.uk`` and ``COLLEGE\\alice`` are ``alice``. A name in another realm is
    kept whole, so a visitor never takes the profile of a local account of the same name."""
    name, at, realm = user.rpartition("@")
    if at and name and realm.lower() in realms:
        return name
    domain, backslash, name = user.partition("\\")
    if backslash and name and domain.lower() in realms:
        return name
    return user


def _source_address(source: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        parsed = ipaddress.ip_address(source.split("%")[0])
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class AccountingPackets:
    """Pure packet handling: datagram and source address in, :class:`PacketOutcome` out."""

    def __init__(self, clients: tuple[RadiusClient, ...], environ: Mapping[str, str],
                 dictionary: Dictionary | None = None, realms: tuple[str, ...] = ()) -> None:
        self.realms = realms
        self.dictionary = dictionary if dictionary is not None else Dictionary(
            str(DICTIONARY_FILE))
        self.clients: list[tuple[RadiusClient, bytes | None]] = []
        for client in clients:
            secret = environ.get(client.secret_env, "")
            if not secret:
                log.error("RADIUS client %s: the environment variable %s holding its shared "
                          "secret is not set; its packets are dropped", client.network,
                          client.secret_env)
            self.clients.append((client, secret.encode() if secret else None))

    def client_for(self, source: str) -> tuple[RadiusClient, bytes | None] | None:
        """The most specific configured client containing ``source``."""
        address = _source_address(source)
        if address is None:
            return None
        found = [(client, secret) for client, secret in self.clients
                 if address.version == client.network.version and address in client.network]
        if not found:
            return None
        return max(found, key=lambda item: item[0].network.prefixlen)

    def handle(self, data: bytes, source: str) -> PacketOutcome:
        client = self.client_for(source)
        if client is None:
            return PacketOutcome("unknown_client", "not a configured RADIUS client", source)
        configured, secret = client
        if secret is None:
            return PacketOutcome("unknown_client", f"the secret of client {configured.network} "
                                 f"({configured.secret_env}) is not set", source)
        try:
            packet = AcctPacket(secret=secret, dict=self.dictionary, packet=data)
        except (PacketError, ValueError, TypeError, KeyError, IndexError) as exc:
            return PacketOutcome("malformed", f"cannot be decoded ({exc})", source)
        if packet.code != AccountingRequest:
            return PacketOutcome("malformed", f"RADIUS code {packet.code} is not an "
                                 "Accounting-Request", source)
        if not packet.VerifyAcctRequest():
            return PacketOutcome("bad_authenticator", "the Request Authenticator does not "
                                 "match the client's shared secret", source)
        if packet.message_authenticator:
            try:
                signed = bool(packet.verify_message_authenticator())
            except (PacketError, ValueError, TypeError, KeyError, IndexError):
                signed = False
            if not signed:
                return PacketOutcome("bad_authenticator", "the Message-Authenticator does "
                                     "not match the client's shared secret", source)
        reply = packet.CreateReply().ReplyPacket()
        try:
            event, problem = self._event(packet, source)
        except (PacketError, ValueError, TypeError, KeyError, IndexError, OSError) as exc:
            event, problem = None, f"an attribute cannot be read ({exc})"
        if event is None:
            return PacketOutcome("unusable", problem, source, reply=reply)
        return PacketOutcome("accepted", "", source, event, reply)

    @staticmethod
    def _first(packet: AcctPacket, name: str) -> str:
        if name not in packet:
            return ""
        values = packet[name]
        return _text(values[0]).strip() if values else ""

    def _event(self, packet: AcctPacket, source: str) -> tuple[AccountingEvent | None, str]:
        status_text = self._first(packet, "Acct-Status-Type")
        session = self._first(packet, "Acct-Session-Id")
        if status_text in RESTART_STATUSES:
            return AccountingEvent("restart", "", "", "", session, reporter=source), ""
        status = BINDING_STATUSES.get(status_text)
        if status is None:
            return None, (f"{NOT_BINDING} {status_text or 'missing'}: nothing to bind "
                          f"(session {session or '-'})")
        user = local_user_name(self._first(packet, "User-Name"), self.realms)
        address = (self._first(packet, "Framed-IP-Address")
                   or self._first(packet, "Framed-IPv6-Address"))
        if not user:
            return None, f"{status_text} without User-Name: nothing bound (session {session or '-'})"
        if not address:
            return None, (f"{status_text} for {user!r} without Framed-IP-Address: nothing "
                          f"bound (session {session or '-'})")
        device = normal_mac(self._first(packet, "Calling-Station-Id"))
        return AccountingEvent(status, user, address, device, session, source), ""


class RadiusAccountingListener(asyncio.DatagramProtocol):
    """The UDP listener in the admin process: check each datagram, store what it asks, then
    answer."""

    def __init__(self, settings: RadiusAccountingSettings, store: Store,
                 environ: Mapping[str, str], counter: Counter) -> None:
        self.settings = settings
        self.store = store
        self.packets = AccountingPackets(settings.clients, environ, realms=settings.realms)
        self.counter = counter
        self.transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[tuple[PacketOutcome, Address]] = asyncio.Queue(QUEUE_LIMIT)
        self._worker: asyncio.Task[None] | None = None
        self._logged: dict[tuple[str, str], float] = {}

    # -- lifetime --------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        listen = self.settings.listen
        await loop.create_datagram_endpoint(lambda: self, sock=_udp_socket(listen.host,
                                                                           listen.port))
        self._worker = asyncio.create_task(self._apply_in_order(), name="radius-accounting")
        log.info("RADIUS accounting listening on %s (UDP) for %d client(s)", listen,
                 len(self.settings.clients))

    async def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    # -- packets -----------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Address) -> None:
        source = str(addr[0])
        try:
            outcome = self.packets.handle(data, source)
        except Exception as exc:  # never let one datagram stop the listener
            outcome = PacketOutcome("malformed", f"unreadable ({exc!r})", source)
        if outcome.event is None:
            self.counter.labels(outcome.outcome).inc()
            self._log_dropped(outcome)
            if outcome.reply is not None:
                self._send(outcome.reply, addr)
            return
        try:
            self._queue.put_nowait((outcome, addr))
        except asyncio.QueueFull:
            log.warning("RADIUS accounting from %s: too many packets waiting; not answered "
                        "(the controller resends)", source)

    def error_received(self, exc: Exception) -> None:
        log.warning("RADIUS accounting socket: %s", exc)

    def _send(self, reply: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def _log_dropped(self, outcome: PacketOutcome) -> None:
        if outcome.outcome == "unusable":  # authentic (not a flood): every one is logged
            level = logging.INFO if outcome.reason.startswith(NOT_BINDING) else logging.WARNING
            log.log(level, "RADIUS accounting from %s: %s", outcome.source, outcome.reason)
            return
        now = time.monotonic()
        key = (outcome.source, outcome.outcome)
        if now - self._logged.get(key, -LOG_EVERY_SECONDS) < LOG_EVERY_SECONDS:
            return
        if len(self._logged) > 1000:
            self._logged.clear()
        self._logged[key] = now
        log.warning("RADIUS accounting packet from %s dropped (%s): %s", outcome.source,
                    outcome.outcome.replace("_", " "), outcome.reason)

    async def _apply_in_order(self) -> None:
        while True:
            outcome, addr = await self._queue.get()
            assert outcome.event is not None
            try:
                applied = await self.apply(outcome.event)
            except (RedisError, OSError) as exc:
                log.warning("RADIUS accounting from %s: cannot store it (%s); not answered, "
                            "the controller resends", outcome.source, exc)
                continue
            self.counter.labels("accepted" if applied else "unusable").inc()
            if outcome.reply is not None:
                self._send(outcome.reply, addr)

    async def apply(self, event: AccountingEvent) -> bool:
        """Store what ``event`` asks; False when it could not be used (logged)."""
        bindings = self.store.address_bindings
        if event.status == "restart":
            ended = await bindings.unbind_reported_by("radius", event.reporter)
            log.info("RADIUS Accounting-On/Off from %s: the controller restarted, so the %d "
                     "sign-ins it reported have ended", event.reporter, ended)
            return True
        try:
            # An account of that name, else of that name in lower case (the directory sync's
            # and Kerberos's spelling): JSmith on the Wi-Fi is the account jsmith.
            account = (await self.store.accounts.get(event.user)
                       or await self.store.accounts.get(event.user.lower()))
            user = account.name if account is not None else event.user
            if event.status == "stop":
                removed = await bindings.unbind(event.address, user=user, source="radius")
                # The device left the Wi-Fi: a portal sign-in at that address ends with it
                # (whoever signed in there), so the next device given the address starts
                # unidentified.
                if await bindings.unbind(event.address, source="portal"):
                    log.info("RADIUS Stop at %s ended the portal sign-in there", event.address)
                log.info("RADIUS Stop: %s at %s%s (session %s)", user, event.address,
                         "" if removed else " had no binding of theirs", event.session or "-")
                return True
            group = account.group if account is not None and not account.disabled else ""
            await bindings.bind(event.address, user, "radius",
                                self.settings.binding_hours * 3600, device=event.device,
                                group=group, reported_by=event.reporter)
        except BindingError as exc:
            log.warning("RADIUS accounting for %r at %s: %s; nothing bound", event.user,
                        event.address, exc)
            return False
        log.info("RADIUS %s: %s at %s, device %s, group %s (session %s)",
                 "Start" if event.status == "start" else "Interim-Update", user,
                 event.address, event.device or "-", group or "the network's",
                 event.session or "-")
        return True


def _udp_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking UDP socket: ``host`` "" means every interface (IPv6 and IPv4
    where the system allows one socket for both, else IPv4)."""
    if not host:
        with contextlib.suppress(OSError):
            return _bound(socket.AF_INET6, ("::", port), dual_stack=True)
        host = "0.0.0.0"
    family, _type, _proto, _name, address = socket.getaddrinfo(
        host, port, socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)[0]
    return _bound(family, address)


def _bound(family: int, address: Any, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
