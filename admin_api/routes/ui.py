"""The admin web UI: one HTML shell for every page, and the UI's static files.

Every page path (``/dashboard``, ``/unblock-requests/12``, ``/report?hit_id=...``) answers
with the same shell; ES modules under ``admin_api/web/static/js`` render the page in the browser
from the JSON API, with the session cookie and the ``X-CSRF-Token`` header on writes. The
shell holds no data, so these routes are public: the API's role checks decide what anyone
sees, and the page itself tells a signed-in user when their role cannot use it.

Third-party browser code (Chart.js) is copied into ``static/vendor/`` by ``make ui-vendor``
from the npm packages locked in ``admin_api/web/ui_packages/``; it is not committed.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from aiohttp import web

from admin_api.errors import not_found
from admin_api.web.content_security import UI_PAGE

routes = web.RouteTableDef()
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = PACKAGE_DIR / "static"
SHELL_FILE = PACKAGE_DIR / "templates" / "admin_ui.html"
PAGES = ("sign-in", "my-requests", "class-sessions", "report", "request-review",
         "unblock-requests", "overrides", "categories", "check", "dashboard", "access-log",
         "quarterly", "alerts", "users", "audit")
"""First path segments of the UI's pages; a numeric second segment names one item."""
PAGE_PATTERN = "(?:" + "|".join(PAGES) + ")(?:/[0-9]{1,18})?"
STATIC_PATTERN = r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+){0,3}\.(?:js|css|svg|map|md)"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".map": "application/json", ".md": "text/plain"}


@functools.cache
def _shell_html() -> str:
    return SHELL_FILE.read_text(encoding="utf-8")


async def page_shell(request: web.Request) -> web.Response:
    """The UI shell (every page of the UI is drawn from it in the browser)."""
    request[UI_PAGE] = True
    html = await asyncio.to_thread(_shell_html)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


@routes.get("/")
async def ui_home(request: web.Request) -> web.Response:
    return await page_shell(request)


@routes.get(f"/{{page:{PAGE_PATTERN}}}")
async def ui_page(request: web.Request) -> web.Response:
    return await page_shell(request)


@routes.get(f"/static/{{path:{STATIC_PATTERN}}}")
async def ui_static(request: web.Request) -> web.FileResponse:
    relative = request.match_info["path"]
    file = (STATIC_DIR / relative).resolve()
    if STATIC_DIR not in file.parents or ".." in relative.split("/"):
        raise not_found("file")
    if not await asyncio.to_thread(file.is_file):
        raise not_found("file")
    return web.FileResponse(file, headers={
        "Content-Type": CONTENT_TYPES[file.suffix], "Cache-Control": "no-cache"})
