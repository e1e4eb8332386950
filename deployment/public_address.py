"""The address other machines use for this deployment, detected.

The address of the interface the default route leaves by (what a learner's device on the
same network reaches), found with a UDP ``connect`` that sends nothing; loopback only when it
is the only one.
"""

from __future__ import annotations

import ipaddress
import socket
import time

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


def detect_public_host() -> str:
    """Detect now: the default route's interface address, else ``127.0.0.1``."""
    return _route_address() or LOOPBACK


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
