"""A tunnel carries only what was decided for it, in mitmproxy's path too.

mitmproxy relays anything it cannot read as raw TCP (``next_layer``: TCPLayer), and reads
plain HTTP inside a CONNECT tunnel as if it were a request to the CONNECT host. Either would
carry bytes the filter never decided. This addon, placed after mitmproxy's NextLayer, closes
the connection instead: a client's traffic is HTTP to the proxy, TLS inside a tunnel, and
HTTP inside decrypted TLS, and nothing else. (An undecrypted tunnel the planner chose is set
up by the TLS layer itself, after its ClientHello was checked, not here.)

It also closes, at the TLS handshake, a tunnel whose ClientHello the planner refused.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from mitmproxy import tls
from mitmproxy.proxy import commands, events, layer, layers
from mitmproxy.proxy.layers.http import HttpStream

from proxy_addons.tunnel_plan import TunnelAction
from proxy_addons.verdict import TunnelVerdicts

log = logging.getLogger("esafety.tunnel")

_NEVER_FOR_CLIENTS: tuple[type[layer.Layer], ...] = (
    layers.TCPLayer, layers.UDPLayer, layers.DNSLayer, layers.RawQuicLayer,
    layers.ServerQuicLayer, layers.ClientQuicLayer)


class ClosingLayer(layer.Layer):
    """Closes the client connection on its first event; forwards nothing."""

    _closed = False

    def _handle_event(self, event: events.Event) -> Generator[Any, Any, None]:
        if not self._closed:
            self._closed = True
            yield commands.CloseConnection(self.context.client)


def _inside_tunnel(stack: list[layer.Layer]) -> bool:
    return any(isinstance(item, (layers.HttpLayer, HttpStream)) for item in stack)


def _decrypted(stack: list[layer.Layer]) -> bool:
    seen_http = False
    for item in stack:
        if isinstance(item, (layers.HttpLayer, HttpStream)):
            seen_http = True
        elif seen_http and isinstance(item, layers.ClientTLSLayer):
            return True
    return False


_NO_TLS_CONTEXT = "No TLS context was provided"


class _ClosedByPlan(logging.Filter):
    """mitmproxy logs a refused TLS start as an ERROR; here it is the planner's decision (the
    hit is recorded), so it is logged at INFO with a message that says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(_NO_TLS_CONTEXT):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "closed a tunnel whose TLS name the filter refused", ()
        return True


class TunnelContents:
    def __init__(self, tunnels: TunnelVerdicts) -> None:
        self.tunnels = tunnels
        self.closed = 0
        server_log = logging.getLogger("mitmproxy.proxy.server")
        if not any(isinstance(f, _ClosedByPlan) for f in server_log.filters):
            server_log.addFilter(_ClosedByPlan())

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        chosen = nextlayer.layer
        if chosen is None:
            return  # mitmproxy needs more bytes to decide
        layers_now = nextlayer.context.layers
        # A new layer appends itself to the context's stack: look only at what was before it.
        stack = layers_now[:next((i for i, item in enumerate(layers_now) if item is chosen),
                                 len(layers_now))]
        why = ""
        if isinstance(chosen, _NEVER_FOR_CLIENTS):
            why = "raw bytes that are neither TLS nor HTTP"
        elif (isinstance(chosen, layers.HttpLayer) and _inside_tunnel(stack)
              and not _decrypted(stack)):
            why = "plain HTTP inside a tunnel"
        if why:
            self.closed += 1
            client = nextlayer.context.client
            log.info("closed a tunnel from %s carrying %s",
                     client.peername[0] if client.peername else "?", why)
            nextlayer.layer = ClosingLayer(nextlayer.context)

    def tls_start_client(self, tls_start: tls.TlsData) -> None:
        """No TLS for a tunnel the planner closed: mitmproxy then closes the connection."""
        tunnel = self.tunnels.tunnel(tls_start.context.client)
        if tunnel is not None and tunnel.action is TunnelAction.CLOSE:
            self.closed += 1
            tls_start.ssl_conn = None
