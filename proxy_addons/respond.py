"""Stage 3 of the proxy, ``respond``: answer what the verdict says, and nothing else.

A block page, a refused CONNECT, a 502 for a name that does not resolve, the proxy's probe
answer, and for a tunnel's TLS name whether mitmproxy relays it untouched. It never asks the
policy: everything comes from the verdict ``decide`` wrote.
"""

from __future__ import annotations

from mitmproxy import http, tls

from deployment.config import Config
from deployment.public_address import admin_public_url
from proxy_addons.block_page import block_headers, connect_refusal, render_block_page
from proxy_addons.probe_answer import PROBE_HEADERS, probe_body
from proxy_addons.tunnel_plan import TunnelAction
from proxy_addons.verdict import Answer, TunnelVerdicts, Verdict, verdict_of

UNRESOLVED_BODY = b"The web filter could not find the address of this site.\n"


def refusal_headers(hit_id: str) -> dict[str, str]:
    """Headers of a refused CONNECT."""
    return {"Content-Type": "text/plain; charset=utf-8", "X-Esafety-Hit-Id": hit_id,
            "Cache-Control": "no-store"}


class Respond:
    """mitmproxy addon: sets ``flow.response`` from the flow's verdict."""

    def __init__(self, config: Config, tunnels: TunnelVerdicts,
                 probe_key: bytes | None = None) -> None:
        self.config = config
        self.tunnels = tunnels
        self.probe_key = probe_key
        """The private key that signs probe answers (see :mod:`store.probe_key`)."""

    def response_for(self, flow: http.HTTPFlow, verdict: Verdict) -> http.Response | None:
        decision = verdict.decision
        if verdict.answer is Answer.BLOCK_PAGE and decision is not None:
            return http.Response.make(
                403, render_block_page(decision, verdict.hit_id, verdict.at, verdict.url,
                                       admin_public_url(self.config)),
                block_headers(decision, verdict.hit_id))
        if verdict.answer is Answer.REFUSE_CONNECT and decision is not None:
            return http.Response.make(403, connect_refusal(decision, verdict.hit_id),
                                      refusal_headers(verdict.hit_id))
        if verdict.answer is Answer.UNRESOLVED:
            return http.Response.make(502, UNRESOLVED_BODY,
                                      {"Content-Type": "text/plain; charset=utf-8"})
        if verdict.answer is Answer.PROBE:
            return http.Response.make(
                200, probe_body(self.config.centre_id, verdict.identity,
                                flow.request.query.get("nonce", ""), self.probe_key),
                PROBE_HEADERS)
        return None

    def _answer(self, flow: http.HTTPFlow) -> None:
        verdict = verdict_of(flow)
        if verdict is None or flow.response is not None:
            return
        response = self.response_for(flow, verdict)
        if response is not None:
            flow.response = response

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._answer(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._answer(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        self._answer(flow)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """Only a tunnel planned as a pass-through is relayed undecrypted; one planned closed
        is refused TLS at the handshake (proxy_addons.tunnel_contents)."""
        tunnel = self.tunnels.tunnel(data.context.client)
        if tunnel is not None:
            data.ignore_connection = tunnel.action is TunnelAction.TUNNEL
