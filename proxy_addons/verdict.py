"""The record passed down the proxy's stages: ``identify → decide → respond → record``.

``decide`` writes one :class:`Verdict` per flow (``flow.metadata["esafety.verdict"]``), or per
client connection for the TLS name of a tunnel; ``respond`` and ``record`` only read it. A
verdict is frozen: nothing after ``decide`` changes what was decided.
"""

from __future__ import annotations

import weakref
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from mitmproxy import connection, http

from categories.decision import Decision
from proxy_addons.identify import Identity
from proxy_addons.tunnel_plan import TunnelAction

VERDICT_KEY = "esafety.verdict"


class Answer(StrEnum):
    """What ``respond`` answers for a verdict."""

    FORWARD = "forward"
    """Nothing: the request goes upstream, or the tunnel is opened."""
    BLOCK_PAGE = "block_page"
    """403 with the block page."""
    REFUSE_CONNECT = "refuse_connect"
    """403 to a CONNECT, with a short body (browsers show their own error)."""
    UNRESOLVED = "unresolved"
    """502: the destination's name could not be resolved."""
    PROBE = "probe"
    """The proxy's own status answer (see :mod:`proxy_addons.probe_answer`)."""
    CLOSE = "close"
    """A tunnel whose TLS name was refused: closed at the handshake."""
    ONBOARDING = "onboarding"
    """302 to the admin service's onboarding page (``http://mitm.it/`` through the proxy)."""
    PORTAL = "portal"
    """An unidentified device on a network with ``auth: portal``: a plain-HTTP request (an
    operating system's captive-portal probe included) gets a 302 to the Wi-Fi sign-in page;
    a CONNECT gets a 403 whose body names it. Never a hit: counted in a metric."""


@dataclass(frozen=True, slots=True)
class HitEntry:
    """One hit the ``record`` stage writes, as ``decide`` described it."""

    hit_id: str
    decision: Decision
    host: str
    path: str
    decrypted: bool
    search_terms: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    answer: Answer
    decision: Decision | None
    """None for answers that are not about a site (the probe, an unresolved name)."""
    identity: Identity
    client_ip: str
    method: str
    url: str
    """What the learner asked for, as shown on the block page."""
    at: datetime
    """When it was decided, in the policy's time zone."""
    tz: ZoneInfo
    hits: tuple[HitEntry, ...] = ()
    """What ``record`` writes: blocks always, allowed requests when configured, and searches
    that matched the Prevent watch list."""
    counted: bool = True
    """A request or tunnel decided (the ``esafety_proxy_requests_total`` metric)."""

    @property
    def hit_id(self) -> str:
        """The reference on the block page: the first hit's id."""
        return self.hits[0].hit_id if self.hits else ""


@dataclass(frozen=True, slots=True)
class OpenTunnel:
    """What was decided for a client's CONNECT tunnel, for the TLS and request hooks after it."""

    connect_host: str
    port: int
    host: str
    action: TunnelAction
    identity: Identity
    decision: Decision | None = None
    """For :attr:`TunnelAction.BLOCK_PAGE`: the block every request inside is answered with."""


def verdict_of(flow: http.HTTPFlow) -> Verdict | None:
    value = flow.metadata.get(VERDICT_KEY)
    return value if isinstance(value, Verdict) else None


class TunnelVerdicts:
    """Per client connection: the open tunnel, and the verdict on its TLS name (which has no
    flow to carry it). Written by ``decide``; read by ``respond`` (tunnel contents) and
    ``record``."""

    def __init__(self) -> None:
        self.tunnels: MutableMapping[connection.Client, OpenTunnel] = (
            weakref.WeakKeyDictionary())
        self._hello: MutableMapping[connection.Client, Verdict] = weakref.WeakKeyDictionary()

    def tunnel(self, client: connection.Client) -> OpenTunnel | None:
        return self.tunnels.get(client)

    def open(self, client: connection.Client, tunnel: OpenTunnel) -> None:
        self.tunnels[client] = tunnel

    def hello_decided(self, client: connection.Client, verdict: Verdict) -> None:
        self._hello[client] = verdict

    def take_hello(self, client: connection.Client) -> Verdict | None:
        """The verdict on the client's TLS name, once."""
        return self._hello.pop(client, None)
