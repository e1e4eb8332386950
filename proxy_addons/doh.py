"""DNS-over-HTTPS detection: a fact ``decide`` feeds to the policy as a verdict category."""

from __future__ import annotations

from mitmproxy import http

DOH_CATEGORY = "dns_over_https"
_DOH_CONTENT_TYPES = ("application/dns-message", "application/dns-json")
_DOH_PATHS = ("/dns-query", "/resolve")


def looks_like_doh(flow: http.HTTPFlow) -> bool:
    """A DNS-over-HTTPS request, by path or by content type, to any resolver."""
    request = flow.request
    path = request.path.split("?", 1)[0].rstrip("/").lower()
    if path.endswith(_DOH_PATHS) and (request.method in ("GET", "POST")) and (
            "dns=" in request.path or "name=" in request.path or request.method == "POST"):
        return True
    content_type = request.headers.get("content-type", "").lower()
    accept = request.headers.get("accept", "").lower()
    return any(t in content_type or t in accept for t in _DOH_CONTENT_TYPES)


def doh_verdicts(flow: http.HTTPFlow) -> tuple[str, ...]:
    """The verdict categories this request carries for the policy."""
    return (DOH_CATEGORY,) if looks_like_doh(flow) else ()
