"""The Content Security Policy of the admin web UI's pages.

The UI is an HTML shell that loads ES modules and stylesheets from ``/static/`` on the same
origin; it has no inline script or style and no third-party origin. So its policy allows
scripts, styles, images and ``fetch`` from 'self' only, and nothing else. Only responses
marked with :data:`UI_PAGE` (the shell, see :mod:`admin_api.routes.ui`) get it; every other
HTML response keeps the stricter report policy of :mod:`admin_api.security_headers`.
"""

from __future__ import annotations

from aiohttp import web

UI_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
          "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
UI_PAGE = web.RequestKey("ui_page", bool)
"""Set on requests answered with the UI shell."""
PAGE_CSP = web.RequestKey("page_csp", str)
"""A page's own policy, for a server-rendered page that needs one (the Wi-Fi sign-in page
posts a form: see :mod:`admin_api.routes.portal`)."""
