"""Proxy and forwarding headers never reach the origin.

A learner's ``Proxy-Authorization`` (their centre password, in clear for a plain-HTTP site)
is for the proxy only, and a client-supplied ``X-Forwarded-For`` / ``Forwarded`` /
``X-Real-IP`` is a lie the proxy did not tell. This addon runs last before a request goes
upstream, so it holds whatever the other addons did (sign-in off, Redis down, errors).
"""

from __future__ import annotations

from mitmproxy import http

STRIPPED = ("proxy-authorization", "proxy-connection", "proxy-authenticate", "x-forwarded-for",
            "x-forwarded-host", "x-forwarded-proto", "forwarded", "x-real-ip")


def strip_forwarding_headers(headers: http.Headers) -> list[str]:
    """Remove the proxy and forwarding headers; return the names removed."""
    removed = []
    for name in STRIPPED:
        if name in headers:
            del headers[name]
            removed.append(name)
    return removed


class ForwardHeaders:
    """Last in the addon order, so every other addon has read the headers first."""

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # A streamed request body goes upstream straight after this hook, without ``request``.
        if flow.request.method != "CONNECT":
            strip_forwarding_headers(flow.request.headers)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "CONNECT":
            strip_forwarding_headers(flow.request.headers)
