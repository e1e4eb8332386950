"""The addresses other machines use for this deployment: the admin service's public URL and
the proxy's public ``host:port``.

``admin_public_url`` and ``proxy_public_address`` in the config win when they are set. Left
unset, they are detected: the address of the interface the default route leaves by (what a
learner's device on the same network reaches), with the admin's and the proxy's listening
ports. The port is always kept, so the block page's buttons, the PAC file and the proxy's
admin pass-through all name the exact service. Every user of these addresses asks here.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from categories.urlnorm import HostKind, URLError, canonical_host_with_kind
from deployment.config import Config

PROBE_ADDRESSES = (("192.0.2.1", 9), ("2001:db8::1", 9))
"""Documentation addresses (RFC 5737, RFC 3849): a UDP ``connect`` picks the interface of the
route towards them and sends nothing."""
LOOPBACK = "127.0.0.1"
DETECT_SECONDS = 60.0
"""How long a detected address is reused (a DHCP lease can change it)."""

_detected: tuple[float, str] | None = None


def _usable(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return not (parsed.is_loopback or parsed.is_unspecified or parsed.is_link_local
                or parsed.is_multicast)


def _route_address() -> str | None:
    """The local address of the default route's interface, or None without a route."""
    for target, family in ((PROBE_ADDRESSES[0], socket.AF_INET),
                           (PROBE_ADDRESSES[1], socket.AF_INET6)):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(target)
                address = str(probe.getsockname()[0])
        except OSError:
            continue
        if _usable(address):
            return address
    return None


def _hostname_address() -> str | None:
    """An address the machine's own name resolves to, other than loopback."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = str(info[4][0])
        if _usable(address):
            return address
    return None


def detect_public_host() -> str:
    """Detect now: the default route's interface address, else the host name's address, else
    ``127.0.0.1``."""
    return _route_address() or _hostname_address() or LOOPBACK


def detected_public_host() -> str:
    """:func:`detect_public_host`, remembered for :data:`DETECT_SECONDS`."""
    global _detected
    now = time.monotonic()
    if _detected is None or _detected[0] <= now:
        _detected = (now + DETECT_SECONDS, detect_public_host())
    return _detected[1]


def url_host(host: str) -> str:
    """``host`` as written in a URL or ``host:port``: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def admin_public_url(config: Config) -> str:
    """The admin service's URL as learners' browsers reach it, without a trailing slash:
    ``admin_public_url`` when set, else ``http://DETECTED:ADMIN_PORT``."""
    if config.admin_public_url:
        return config.admin_public_url.rstrip("/")
    return f"http://{url_host(detected_public_host())}:{config.listen.admin.port}"


def proxy_public_address(config: Config) -> str:
    """``host:port`` browsers use for the proxy: ``proxy_public_address`` when set, else the
    admin's public host (when it was set) or the detected address, with the proxy's
    listening port."""
    if config.proxy_public_address:
        return config.proxy_public_address
    host = (urlsplit(config.admin_public_url).hostname if config.admin_public_url else None)
    return f"{url_host(host or detected_public_host())}:{config.listen.proxy.port}"


def destination_name(host: str) -> str:
    """A destination host as :class:`ServiceAddress` holds it: an IP literal in its plain form
    (``127.1``, ``0x7f.0.0.1`` and ``[::ffff:127.0.0.1]`` are ``127.0.0.1``), a name lower-case
    without the final dot."""
    try:
        canonical, kind = canonical_host_with_kind(host)
    except URLError:
        return host.strip("[]").rstrip(".").lower()
    if kind is HostKind.NAME:
        return canonical
    address = ipaddress.ip_address(canonical.strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(frozen=True, slots=True)
class ServiceAddress:
    """One ``host:port`` a service answers on (see :func:`destination_name` for the host)."""

    host: str
    port: int

    @classmethod
    def of(cls, host: str, port: int) -> ServiceAddress:
        """The address ``host:port`` names, however the host is spelled."""
        return cls(destination_name(host), port)


def admin_public_endpoint(config: Config) -> ServiceAddress:
    """The host and port of :func:`admin_public_url` (the scheme's port when it names none)."""
    parts = urlsplit(admin_public_url(config))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return ServiceAddress((parts.hostname or LOOPBACK).lower(), port)


def admin_endpoints(config: Config) -> frozenset[ServiceAddress]:
    """Every ``host:port`` a browser may use for the admin service: its public URL's, and its
    listening address (for every interface: loopback, ``localhost`` and the detected
    address). Only these exact pairs, never another port on the same host."""
    listen = config.listen.admin
    found = {admin_public_endpoint(config)}
    hosts = ([listen.host] if listen.host not in ("", "0.0.0.0", "::")
             else [LOOPBACK, "::1", "localhost", detected_public_host()])
    found.update(ServiceAddress.of(h, listen.port) for h in hosts)
    return frozenset(ServiceAddress.of(a.host, a.port) for a in found)
