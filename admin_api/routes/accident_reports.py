"""``/api/v1/accident-reports``: accidental-hit reports ("I reached this by accident").

No-blame: anyone may tell the centre what happened, in their own words, and the report is
linked to the logged hit (by its block reference) so the incident log shows both. Managers,
the DSL and admins list, filter and mark reports reviewed; others see their own.

A learner may attach only their own hit: one logged for the same user, or an unowned hit (a
device identified only by its network) from the address the report is filed from, logged
within :data:`ATTACH_WINDOW_SECONDS` of the report. Any other reference is refused with the
same 404 as a reference that does not exist, so the answer reveals nothing about the hit.
A hit that is logged after the report (the proxies write in batches) is attached when a
reviewer opens the report, under the same rule.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from admin_api.context import AdminState, state_of
from admin_api.errors import ApiError, bad_input, not_found
from admin_api.roles import ANYONE_SIGNED_IN, SAFEGUARDING, current_user, requires, user_filter
from admin_api.routes import audit_trail
from admin_api.routes.http_input import choice, hit_reference, json_body, required_text, text
from admin_api.routes.paging import list_query, page_response
from store.accident_reports import OPEN, REVIEWED, AccidentReport
from store.records import HitRecord, UserRecord

routes = web.RouteTableDef()
ID = "{id:[0-9]{1,18}}"
ATTACH_WINDOW_SECONDS = 3600.0
"""How far apart an unowned hit and the report filed from its address may be."""
NOT_YOURS = ("There is no block with that reference for you. Give the reference shown on your "
             "own block page, or leave it out and describe what happened.")
THANKS = ("Thank you for telling us. Reaching a blocked site by accident happens, and you are "
          "not in trouble: reports like yours help us keep the filter right.")


async def _hit(state: AdminState, hit_id: str) -> HitRecord | None:
    return await state.store.hits.find(hit_id)


def belongs_to_reporter(hit: HitRecord, user: str, address: str, at: float) -> bool:
    """May ``user``, reporting from ``address`` at time ``at``, attach this hit?"""
    if hit.user:
        return hit.user == user
    return (bool(address) and hit.client_ip == address
            and abs(at - hit.ts) <= ATTACH_WINDOW_SECONDS)


def _visible(user: UserRecord, report: AccidentReport) -> bool:
    return user.role in SAFEGUARDING or report.user == user.name


@routes.post("/api/v1/accident-reports")
@requires(ANYONE_SIGNED_IN)
async def file_accident_report(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    body = await json_body(request, ("hit_id", "url", "what_happened"))
    what_happened = required_text(body, "what_happened", max_length=2000)
    hit_id = hit_reference(body)
    url = text(body, "url", max_length=2000)
    if hit_id is None and url is None:
        raise bad_input("give the block reference (hit_id) or the address (url)", "hit_id")
    address = request.remote or ""
    now = time.time()
    hit: dict[str, Any] | None = None
    if hit_id is not None:
        record = await _hit(state, hit_id)
        if record is not None:
            if user.role not in SAFEGUARDING and not belongs_to_reporter(record, user.name,
                                                                         address, now):
                raise ApiError(404, "not_found", NOT_YOURS)
            hit = record.to_dict()
    report = await state.store.accident_reports.create(
        user=user.name, group=user.group, what_happened=what_happened,
        hit_id=hit_id, url=url, hit=hit, reporter_address=address, now=now)
    await audit_trail.record(request, "report.file", report.id, after={"hit_id": hit_id})
    return web.json_response({"id": report.id, "report": report.public_dict(),
                              "message": THANKS}, status=201)


@routes.get("/api/v1/accident-reports")
@requires(ANYONE_SIGNED_IN)
async def list_accident_reports(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    listing = list_query(request, ("status", "user", "group"))
    status = choice(listing.query, "status", (OPEN, REVIEWED))
    wanted_user = text(listing.query, "user", max_length=64)
    group = text(listing.query, "group", max_length=41)
    wanted_user = user_filter(user, wanted_user, SAFEGUARDING, "reports")
    return await page_response(state.store.accident_reports.records, listing,
                               equal={"status": status, "user": wanted_user, "group": group},
                               shown=AccidentReport.public_dict)


async def _report_or_404(request: web.Request) -> AccidentReport:
    state = state_of(request)
    report = await state.store.accident_reports.get(request.match_info["id"])
    if report is None or not _visible(current_user(request), report):
        raise not_found("report")
    return report


@routes.get(f"/api/v1/accident-reports/{ID}")
@requires(ANYONE_SIGNED_IN)
async def show_accident_report(request: web.Request) -> web.Response:
    state = state_of(request)
    report = await _report_or_404(request)
    out = report.public_dict()
    if out["hit"] is None and report.hit_id and current_user(request).role in SAFEGUARDING:
        record = await _hit(state, report.hit_id)  # logged after the report was made
        if record is not None and belongs_to_reporter(record, report.user,
                                                      report.reporter_address,
                                                      report.created_at):
            out["hit"] = record.to_dict()
    return web.json_response({"report": out})


@routes.post(f"/api/v1/accident-reports/{ID}/review")
@requires(SAFEGUARDING)
async def review_accident_report(request: web.Request) -> web.Response:
    state = state_of(request)
    report = await _report_or_404(request)
    body = await json_body(request, ("note",))
    note = text(body, "note", max_length=2000) or ""
    if report.status == REVIEWED:
        raise ApiError(409, "already_reviewed", "This report is already marked reviewed.")
    updated = await state.store.accident_reports.mark_reviewed(
        report, current_user(request).name, note)
    await audit_trail.record(request, "report.review", report.id, before=report.public_dict(),
                             after=updated.public_dict())
    return web.json_response({"report": updated.public_dict()})

