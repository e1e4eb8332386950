"""Stage 3 of the proxy, ``respond``: answer what the verdict says, and nothing else.

A block page, a refused CONNECT, a 502 for a name that does not resolve, the proxy's probe
answer, and for a tunnel's TLS name whether mitmproxy relays it untouched. It never asks the
policy: everything comes from the verdict ``decide`` wrote.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import quote

from mitmproxy import http, tls
from mitmproxy.proxy import server_hooks

from categories.decision import Decision, Rule
from deployment.config import Config
from deployment.public_address import admin_public_url
from proxy_addons.block_page import block_headers, connect_refusal, render_block_page
from proxy_addons.probe_answer import PROBE_HEADERS, probe_body
from proxy_addons.tunnel_plan import TunnelAction
from proxy_addons.verdict import Answer, TunnelVerdicts, Verdict, verdict_of

UNRESOLVED_BODY = b"The web filter could not find the address of this site.\n"
ONBOARDING_PATH = "/onboarding"
PORTAL_PATH = "/portal"


def portal_url(config: Config, asked: str = "") -> str:
    """The Wi-Fi sign-in page, with the address the device asked for to go back to."""
    base = admin_url(config) + PORTAL_PATH
    return f"{base}?return={quote(asked, safe='')}" if asked else base


def portal_redirect(config: Config, asked: str) -> http.Response:
    """302 to the sign-in page: what mature captive portals answer the operating systems'
    probes with (Android, iOS, macOS and Windows all open their sign-in window on it)."""
    location = portal_url(config, asked)
    body = (f'<!doctype html><html lang="en-GB"><title>Sign in to the Wi-Fi</title>'
            f'<p>Sign in to use the internet: <a href="{escape(location)}">'
            f"{escape(location)}</a></p></html>\n")
    return http.Response.make(302, body.encode("utf-8"), {
        "Location": location, "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store"})


def portal_refusal(config: Config) -> http.Response:
    """403 to a CONNECT: browsers follow no redirect there, so the text names the page. (Not
    407: that would make a browser ask for a proxy password the portal does not answer.)"""
    body = ("This device is not signed in to the centre's Wi-Fi. Sign in at "
            f"{portal_url(config)} (open any http:// address to be taken there), then try "
            "again.\n")
    return http.Response.make(403, body.encode("utf-8"), {
        "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store",
        "X-Esafety-Portal": portal_url(config)})

_ILLEGAL_PAGE = """<!doctype html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Blocked</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;margin:0;
background:#f4f6f8;color:#1b1f23}}
main{{max-width:40rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;
border-top:6px solid #b3261e}}
h1{{font-size:1.6rem;margin-top:0}}
</style>
</head>
<body>
<main>
<h1>This page is blocked</h1>
<p>{reason}</p>
<p>Reference <code data-field="hit-id">{hit_id}</code>, {when}.</p>
<p>If you reached this by accident, you are not in trouble: please tell a member of staff,
as the centre's e-safety policy asks.</p>
<p><a href="{report_url}">I reached this by accident</a></p>
</main>
</body>
</html>
"""


def admin_url(config: Config) -> str:
    """The admin service's address as devices reach it: the block page's links and the
    onboarding redirect use this one place."""
    return admin_public_url(config)


def render_illegal_page(decision: Decision, hit_id: str, when: datetime,
                        admin_address: str) -> bytes:
    """The page for an address on an illegal-content list (IWF, CTIRU): the reason and a
    reference only. It never repeats the address, its host or its category list."""
    return _ILLEGAL_PAGE.format(
        reason=escape(decision.reason), hit_id=escape(hit_id),
        when=escape(when.strftime("%A %d %B %Y, %H:%M")),
        report_url=escape(f"{admin_address}/report?hit_id={hit_id}"),
    ).encode("utf-8")


def illegal_headers(hit_id: str) -> dict[str, str]:
    return {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
            "X-Esafety-Hit-Id": hit_id,
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


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
            if decision.rule is Rule.ILLEGAL_LIST:
                return http.Response.make(
                    403, render_illegal_page(decision, verdict.hit_id, verdict.at,
                                             admin_url(self.config)),
                    illegal_headers(verdict.hit_id))
            return http.Response.make(
                403, render_block_page(decision, verdict.hit_id, verdict.at, verdict.url,
                                       admin_url(self.config), self.config.centre_name),
                block_headers(decision, verdict.hit_id))
        if verdict.answer is Answer.ONBOARDING:
            return http.Response.make(
                302, b"", {"Location": admin_url(self.config) + ONBOARDING_PATH,
                           "Cache-Control": "no-store"})
        if verdict.answer is Answer.PORTAL:
            if verdict.method == "CONNECT":
                return portal_refusal(self.config)
            return portal_redirect(self.config, verdict.url)
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
        is refused TLS at the handshake (proxy_addons.tunnel_contents). One planned for the
        block page is decrypted (with ``connection_strategy=lazy``, nothing connects upstream
        before a request needs it, and its request is answered here)."""
        tunnel = self.tunnels.tunnel(data.context.client)
        if tunnel is not None:
            data.ignore_connection = tunnel.action is TunnelAction.TUNNEL

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """A tunnel decrypted only for the block page never connects upstream, whatever the
        mitmproxy options say (``connection_strategy=eager`` would connect at CONNECT)."""
        tunnel = self.tunnels.tunnel(data.client)
        if tunnel is not None and tunnel.action is TunnelAction.BLOCK_PAGE:
            data.server.error = "decrypted only to show the block page; never connected"
