"""``/api/v1/alerts``: safeguarding alerts for the DSL (managers and admins may read them).

An alert's page shows the user's recent blocked hits as context; acknowledging records who
handled it, when, and a note, and closes the group so the next hit opens a new alert.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from admin_api.context import state_of
from admin_api.errors import ApiError, not_found
from admin_api.log_store import HitQuery
from admin_api.roles import ALERT_HANDLERS, SAFEGUARDING, current_user, requires
from admin_api.routes import audit_trail
from admin_api.routes.http_input import choice, json_body, required_text, text
from admin_api.routes.paging import list_query, page_response
from store.alerts import ACKNOWLEDGED, OPEN, Alert

routes = web.RouteTableDef()
ID = "{id:[0-9]{1,18}}"
CONTEXT_HITS = 20


@routes.get("/api/v1/alerts")
@requires(SAFEGUARDING)
async def list_alerts(request: web.Request) -> web.Response:
    state = state_of(request)
    listing = list_query(request, ("status", "category", "user"))
    status = choice(listing.query, "status", (OPEN, ACKNOWLEDGED))
    category = text(listing.query, "category", max_length=41)
    user = text(listing.query, "user", max_length=64)
    start, end = listing.start, listing.end

    def in_period(alert: Alert) -> bool:  # seen at any time in the period
        return ((start is None or alert.last_seen >= start)
                and (end is None or alert.first_seen < end))

    return await page_response(state.store.alerts.records, listing,
                               equal={"status": status, "category": category, "user": user},
                               shown=Alert.to_dict, period_is_creation=False,
                               keep=in_period if start is not None or end is not None else None)


async def _alert_or_404(request: web.Request) -> Alert:
    state = state_of(request)
    alert = await state.store.alerts.get(request.match_info["id"])
    if alert is None:
        raise not_found("alert")
    return alert


@routes.get(f"/api/v1/alerts/{ID}")
@requires(SAFEGUARDING)
async def show_alert(request: web.Request) -> web.Response:
    state = state_of(request)
    alert = await _alert_or_404(request)
    recent: list[dict[str, object]] = []
    if alert.user:
        recent, _ = await asyncio.to_thread(
            state.log_store.page, HitQuery(user=alert.user, action="block"), None, CONTEXT_HITS)
    return web.json_response({"alert": alert.to_dict(), "recent_blocked_hits": recent})


@routes.post(f"/api/v1/alerts/{ID}/acknowledge")
@requires(ALERT_HANDLERS)
async def acknowledge_alert(request: web.Request) -> web.Response:
    state = state_of(request)
    alert = await _alert_or_404(request)
    body = await json_body(request, ("note",))
    note = required_text(body, "note", max_length=2000)
    if alert.status == ACKNOWLEDGED:
        raise ApiError(409, "already_acknowledged", "This alert is already acknowledged.")
    updated = await state.store.alerts.acknowledge(alert, current_user(request).name, note)
    await audit_trail.record(request, "alert.acknowledge", alert.id, before=alert.to_dict(),
                             after=updated.to_dict())
    return web.json_response({"alert": updated.to_dict()})
