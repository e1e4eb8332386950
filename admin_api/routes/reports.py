"""``/api/v1/reports/summary`` (JSON) and ``/api/v1/reports/quarterly`` (printable HTML)."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timedelta

from aiohttp import web

from admin_api.context import state_of
from admin_api.errors import bad_input
from admin_api.reports import quarterly as quarterly_report
from admin_api.reports.summary import GROUP_BY, MAX_DAYS, summary
from admin_api.roles import QUARTERLY_READERS, SAFEGUARDING, requires
from admin_api.routes.http_input import choice, query_params, required_text

routes = web.RouteTableDef()
SUMMARY_READERS = SAFEGUARDING | {"it_support"}
SITE = re.compile(r"[a-z][a-z0-9_-]{0,40}")
"""A site id as the config spells one (``centre_id``)."""


def _day(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value).date()
    except ValueError as exc:
        raise bad_input(f"{name} {value[:40]!r} is not an ISO 8601 date like 2026-11-23",
                        name) from exc


@routes.get("/api/v1/reports/summary")
@requires(SUMMARY_READERS)
async def summary_report(request: web.Request) -> web.Response:
    state = state_of(request)
    query = query_params(request, ("from", "to", "group_by"))
    today = datetime.now(state.tz).date()
    end = _day(query.get("to"), "to") or today
    start = _day(query.get("from"), "from") or end - timedelta(days=29)
    if end < start:
        raise bad_input("to is before from", "to")
    if (end - start).days >= MAX_DAYS:
        raise bad_input(f"the period can be at most {MAX_DAYS} days", "from")
    group_by = choice(query, "group_by", GROUP_BY, default="day") or "day"
    return web.json_response(await summary(state.store.hits, start, end, group_by))


@routes.get("/api/v1/reports/quarterly")
@requires(QUARTERLY_READERS)
async def quarterly(request: web.Request) -> web.Response:
    """The quarter's report for the whole centre, or for one site (``?site=ID``)."""
    state = state_of(request)
    query = query_params(request, ("quarter", "site"))
    text = required_text(query, "quarter", max_length=6)
    try:
        quarter = quarterly_report.Quarter.parse(text)
    except ValueError as exc:
        raise bad_input(str(exc), "quarter") from exc
    site = query.get("site") or None
    if site is not None and SITE.fullmatch(site) is None:
        raise bad_input(f"site {site[:40]!r} is not a site id like main (lower-case "
                        "letters, digits, - and _)", "site")
    base = await asyncio.to_thread(state.policy.base)
    titles = {category.id: category.title for category in base.categories.values()}
    html = await quarterly_report.render(state.store, quarter, state.tz,
                                         state.settings.config.centre_name, titles, site)
    return web.Response(text=html, content_type="text/html", charset="utf-8")
