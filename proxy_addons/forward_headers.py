"""Proxy and forwarding headers never reach the origin.

A learner's ``Proxy-Authorization`` (their centre password, in clear for a plain-HTTP site)
is for the proxy only, and a client-supplied ``X-Forwarded-For`` / ``Forwarded`` /
``X-Real-IP`` is a lie the proxy did not tell. This addon runs last before a request goes
upstream, so it holds whatever the other addons did (sign-in off, Redis down, errors).

The one forwarding header the proxy does set is its own ``X-Forwarded-For`` on requests to the
admin service (its exact addresses, as ``decide`` found them): the Wi-Fi sign-in page binds
the device's address, not the proxy's. The admin believes it only from the proxy's addresses.
"""

from __future__ import annotations

from mitmproxy import http

from categories.decision import Rule
from proxy_addons.verdict import verdict_of

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
            self._tell_the_admin(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "CONNECT":
            strip_forwarding_headers(flow.request.headers)
            self._tell_the_admin(flow)

    @staticmethod
    def _tell_the_admin(flow: http.HTTPFlow) -> None:
        """The device's address, for the admin service only (whatever the client sent was
        removed just before)."""
        verdict = verdict_of(flow)
        if (verdict is not None and verdict.decision is not None and verdict.client_ip
                and verdict.decision.rule is Rule.ADMIN_SERVICE):
            flow.request.headers["X-Forwarded-For"] = verdict.client_ip
