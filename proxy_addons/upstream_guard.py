"""The proxy never becomes a way into the centre's own network.

Every upstream connection — CONNECT tunnels on the fast path and in mitmproxy, plain HTTP,
decrypted HTTPS — goes through :class:`UpstreamGuard`: the destination name is resolved once
(without blocking the event loop, with a timeout), EVERY address it resolves to is checked,
and the connection is pinned to the checked address (the name stays the TLS name and the Host
header), so a DNS answer that changes between check and connect gains nothing.

Refused: loopback, private (RFC 1918, ULA), link-local (169.254.169.254 included), CGNAT,
unspecified, multicast, reserved, and IPv6 forms that carry one of those (IPv4-mapped and
-compatible, 6to4, NAT64), unless ``upstream.allow_internal`` lists it; and, whatever that
says, the deployment's own ports (Redis, admin, proxy status, the proxy itself) on any internal
address.

One exception: the admin service itself, at exactly the ``host:port`` pairs browsers use for it
(:func:`deployment.public_address.admin_endpoints`: its public URL's and its listening
address's). The block page's buttons lead there, so everyone may reach it through the proxy.
The pair must match as asked (the name or address and the port): another port on the same
host (Redis, the proxy's status port) stays refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mitmproxy import connection, ctx
from mitmproxy.proxy import server_hooks

from categories.decision import Action, Decision, Rule
from categories.urlnorm import HostKind, URLError, canonical_host_with_kind
from deployment.config import UpstreamSettings
from deployment.public_address import ServiceAddress
from proxy_addons.tunnel_plan import ONBOARDING_HOST, ONBOARDING_REASON

log = logging.getLogger("esafety.upstream")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[tuple[str, int]]]]
"""``(host, port)`` to the ``(address, port)`` pairs to try; raises OSError when it fails."""

RESOLVE_TIMEOUT = 5.0
CACHE_SECONDS = 10.0
CACHE_LIMIT = 4096
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

INTERNAL_REASON = ("This address is inside the centre's own network, which the web filter does "
                   "not open to browsing.")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def ip_literal(host: str) -> IPAddress | None:
    """The address a host spells as an IP literal in any form (``127.1``, ``0x7f.0.0.1``,
    ``[::ffff:127.0.0.1]``...), IPv4-mapped forms as IPv4; None for a host name."""
    try:
        canonical, kind = canonical_host_with_kind(host)
    except URLError:
        return None
    if kind is HostKind.NAME:
        return None
    return ipaddress.ip_address(canonical)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d, the deprecated compatible form
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def _special(address: IPAddress) -> bool:
    return (not address.is_global or address.is_private or address.is_loopback
            or address.is_link_local or address.is_multicast or address.is_reserved
            or address.is_unspecified
            or (isinstance(address, ipaddress.IPv4Address)
                and address in ipaddress.IPv4Network("100.64.0.0/10")))


def is_internal(address: IPAddress) -> bool:
    """True for any address that is not a public unicast address, in any spelling."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None and _special(inner):
            return True
        if address.ipv4_mapped is not None:
            return False  # a mapped public IPv4 address: public
    return _special(address)


def plain_address(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 as IPv4, which is what the socket really reaches."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def redis_ports(url: str | None) -> set[int]:
    """Every TCP port a Redis URL names (sentinels too); a unix socket names none."""
    if not url or url.startswith("unix:"):
        return set()
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    ports = set()
    for part in netloc.split(","):
        _host, sep, port = part.rpartition(":")
        if sep and port.isdigit() and "]" not in port:
            ports.add(int(port))
        else:
            ports.add(26379 if "sentinel" in url else 6379)
    return ports


@dataclass(frozen=True, slots=True)
class Destination:
    """Checked: connect to ``address``; ``host`` stays the TLS name and the Host header."""

    host: str
    address: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Refusal:
    decision: Decision | None
    """What blocked it (a hit), or None when the name did not resolve."""


async def system_resolver(host: str, port: int) -> list[tuple[str, int]]:
    """The operating system's resolver, off the event loop (``loop.getaddrinfo``)."""
    literal = ip_literal(host)
    if literal is not None:
        return [(str(literal), port)]
    name = host.rstrip(".").lower()
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return [("127.0.0.1", port), ("::1", port)]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return [(str(info[4][0]), port) for info in infos]


class UpstreamGuard:
    """mitmproxy addon: checks and pins every upstream connection (the backstop; the
    ``decide`` stage and the fast path ask :meth:`check` before answering).

    ``resolver`` may be replaced (a test addon maps test names to loopback through it)."""

    name = "upstreamguard"

    def __init__(self, settings: UpstreamSettings, own_ports: Iterable[int] = (),
                 admin: Iterable[ServiceAddress] = ()) -> None:
        self.settings = settings
        self.own_ports: set[int] = set(own_ports)
        self.admin: frozenset[ServiceAddress] = frozenset(
            ServiceAddress.of(a.host, a.port) for a in admin)
        """The admin service's exact ``host:port`` pairs, always let through."""
        self.resolver: Resolver = system_resolver
        self._cache: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self._verdicts: dict[tuple[str, int], tuple[float, Destination | Refusal]] = {}
        self._names: MutableMapping[connection.Server, tuple[str, int]] = (
            weakref.WeakKeyDictionary())
        """Pinned connections, by the name they were asked for (see ``server_connected``)."""
        self.refused = 0

    # -- the check -----------------------------------------------------------------------------
    async def _resolve(self, host: str, port: int) -> list[tuple[str, int]]:
        key = (host, port)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        answers = await asyncio.wait_for(self.resolver(host, port), RESOLVE_TIMEOUT)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = (now + CACHE_SECONDS, answers)
        return answers

    def is_admin(self, host: str, port: int) -> bool:
        """True when ``host:port`` (as asked, in any spelling of an IP literal) is one of the
        admin service's pairs."""
        return bool(self.admin) and ServiceAddress.of(host, port) in self.admin

    def address_refused(self, address: IPAddress, port: int) -> bool:
        address = plain_address(address)
        if not is_internal(address):
            return False
        if port in self.own_ports:
            return True  # the deployment's own services, whatever allow_internal says
        return not any(a.allows(address, port) for a in self.settings.allow_internal)

    async def check(self, host: str, port: int) -> Destination | Refusal:
        """Resolve ``host`` once and check every address it gives. A verdict is remembered
        as long as the resolution it rests on (plain-HTTP keep-alive asks on every request)."""
        key = (host, port)
        remembered = self._verdicts.get(key)
        if remembered is not None and remembered[0] > time.monotonic():
            verdict = remembered[1]
            if isinstance(verdict, Refusal) and verdict.decision is not None:
                self.refused += 1
            return verdict
        verdict = await self._check(host, port)
        if len(self._verdicts) >= CACHE_LIMIT:
            self._verdicts.clear()
        self._verdicts[key] = (time.monotonic() + CACHE_SECONDS, verdict)
        return verdict

    async def _check(self, host: str, port: int) -> Destination | Refusal:
        name = host.strip("[]").rstrip(".").lower()
        if name == ONBOARDING_HOST:
            return self._refuse(name, ONBOARDING_REASON)
        try:
            answers = await self._resolve(host, port)
        except (OSError, TimeoutError, UnicodeError, ValueError) as exc:
            log.info("cannot resolve %s: %s", host, exc)
            return Refusal(None)
        if not answers:
            return Refusal(None)
        admin = self.is_admin(host, port)
        checked: list[tuple[str, int]] = []
        for address_text, real_port in answers:
            try:
                address = ipaddress.ip_address(address_text.split("%", 1)[0])
            except ValueError:
                return Refusal(None)
            if not admin and self.address_refused(address, real_port):
                return self._refuse(name, INTERNAL_REASON)
            checked.append((str(plain_address(address)), real_port))
        return Destination(name, checked[0])

    def _refuse(self, host: str, reason: str) -> Refusal:
        self.refused += 1
        return Refusal(Decision(Action.BLOCK, Rule.INTERNAL_DESTINATION, host, reason))

    # -- mitmproxy hooks ----------------------------------------------------------------------
    def running(self) -> None:
        server = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        for address in (server.listen_addrs() if server else []):
            self.own_ports.add(int(address[1]))

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """The backstop for every connection: check, then pin to the checked address."""
        server = data.server
        if server.address is None or server.error:
            return
        host, port = str(server.address[0]), int(server.address[1])
        verdict = await self.check(host, port)
        if isinstance(verdict, Refusal):
            server.error = ("refused by the web filter" if verdict.decision
                            else "the site's address could not be found")
            return
        if server.sni is None and ip_literal(host) is None:
            server.sni = data.client.sni or verdict.host
        if verdict.address != server.address:
            self._names[server] = server.address
            server.address = verdict.address

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Once connected to the checked address, the connection is known by its name again.

        mitmproxy reuses an open upstream connection for the next request only when the
        connection's ``address`` equals the request's ``(host, port)``; a connection left
        under its pinned IP would never be reused, and every keep-alive request would open a
        new one (and stall). Renaming an open connection is refused by ``Server.__setattr__``,
        which guards against redirecting it; this only gives back the name whose resolution
        was checked and connected to, so it goes round that guard deliberately."""
        name = self._names.pop(data.server, None)
        if name is not None:
            object.__setattr__(data.server, "address", name)
