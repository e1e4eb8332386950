"""Security headers on every response, errors and streamed CSV included.

Added in ``on_response_prepare``, which runs for every response just before its headers are
sent. JSON gets a CSP that allows nothing; the printable HTML report gets one that allows
only its own inline stylesheet (by hash) and inline SVG.
"""

from __future__ import annotations

import base64
import hashlib

from aiohttp import web

from admin_api.reports.style import REPORT_CSS
from admin_api.web.content_security import PAGE_CSP, UI_CSP, UI_PAGE

_STYLE_HASH = base64.b64encode(hashlib.sha256(REPORT_CSS.encode()).digest()).decode()
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HTML_CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    for name, value in _COMMON.items():
        headers.setdefault(name, value)
    html = (response.content_type or "").startswith("text/html")
    headers["Content-Security-Policy"] = (request.get(PAGE_CSP) or
                                          (UI_CSP if request.get(UI_PAGE) else
                                           HTML_CSP if html else API_CSP))
    headers.setdefault("Cache-Control", "no-store")
    if request.secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
