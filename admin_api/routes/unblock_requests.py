"""``/api/v1/unblock-requests``: ask for a blocked site; IT approves (an override) or denies.

Anyone signed in may file a request; learners and staff see only their own, with the outcome
and IT's note. IT support and admins decide. Approval writes an :class:`Override` for the
requester (scope ``user``), their group, or everyone, optionally until ``expires_at``; the
proxies apply it within a second. Sites on illegal lists can never be approved.

An approval never widens silently:

* a request for an address that is not blocked for the requester is answered 409
  ``not_blocked`` with the reason, and nothing is filed (so it can never become an override);
  approving a request whose address is no longer blocked is refused the same way;
* the request's detail carries ``approval``: what approving opens. When that is more than the
  entry that blocked the request (a host override opens every listed path and subdomain under
  the host), approving needs ``confirm_wider: true``; without it the answer is 409
  ``confirm_wider`` with the same message, naming what it would open.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from admin_api.context import AdminState, state_of
from admin_api.errors import ApiError, bad_input, not_found
from admin_api.override_rules import (
    apply_override,
    approval_scope,
    target_of,
    unblock_target,
)
from admin_api.roles import (
    ANYONE_SIGNED_IN,
    APPROVERS,
    HIT_READERS,
    current_user,
    requires,
    user_filter,
)
from admin_api.routes import audit_trail
from admin_api.routes.http_input import (
    boolean,
    choice,
    hit_reference,
    json_body,
    optional_time,
    required_text,
    text,
)
from admin_api.routes.paging import list_query, page_response
from categories.decision import Decision, Rule
from categories.overrides import Override, OverrideScope
from categories.urlnorm import URLError, canonical_url
from store.records import HitRecord, UserRecord, hit_id_day
from store.unblock_requests import APPROVED, DENIED, OPEN, STATUSES, UnblockRequest

routes = web.RouteTableDef()
UNBLOCK_READERS = HIT_READERS
"""Roles that see everyone's requests (others see their own)."""
ID = "{id:[0-9]{1,18}}"
HIT_WAIT_SECONDS, HIT_WAIT_TRIES = 0.2, 15
"""How long a request waits for the hit it names to be logged (a proxy writes every 0.2 s)."""


def _visible(user: UserRecord, unblock: UnblockRequest) -> bool:
    return user.role in UNBLOCK_READERS or unblock.user == user.name


async def _unblock_request_or_404(request: web.Request) -> UnblockRequest:
    state = state_of(request)
    found = await state.store.unblock_requests.get(request.match_info["id"])
    if found is None or not _visible(current_user(request), found):
        raise not_found("unblock request")
    return found


def _same_address(hit: HitRecord, url: str) -> bool:
    """Is the logged hit for this address (or for its whole host, when the proxy saw only the
    host)?"""
    try:
        asked = canonical_url(url)
        if hit.host != asked.host:
            return False
        return not hit.path or canonical_url(f"http://{hit.host}{hit.path}").path == asked.path
    except URLError:
        return False


async def _blocked_for(state: AdminState, url: str, user: str, group: str,
                       hit_id: str | None) -> tuple[bool, Decision]:
    """Is ``url`` blocked for this user now? The admin's own decision (with the live
    overrides) answers; where no rule of its own covers the address (an admin installed
    without the proxies' lists), a block the proxy logged for this very user and address
    counts as well."""
    decision = await state.policy.decide(url, user=user, group=group)
    if decision.blocked or not hit_id or decision.rule is not Rule.DEFAULT:
        return decision.blocked, decision
    record = None
    for _ in range(HIT_WAIT_TRIES if hit_id_day(hit_id) else 0):  # the proxies write in batches
        record = await state.store.hits.find(hit_id)
        if record is not None:
            break
        await asyncio.sleep(HIT_WAIT_SECONDS)
    logged = (record is not None and record.action == "block" and record.user == user
              and _same_address(record, url))
    return logged, decision


@routes.post("/api/v1/unblock-requests")
@requires(ANYONE_SIGNED_IN)
async def file_unblock_request(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    body = await json_body(request, ("url", "reason", "hit_id"))
    url = required_text(body, "url", max_length=2000)
    reason = required_text(body, "reason", max_length=1000)
    hit_id = hit_reference(body)
    target_of(url)  # a clear 400 for an address that is not one
    blocked, now_decided = await _blocked_for(state, url, user.name, user.group, hit_id)
    if not blocked:
        raise ApiError(409, "not_blocked",
                       f"{url[:200]} is not blocked for you, so there is nothing to ask IT "
                       f"support to open. ({now_decided.reason}) If another page is blocked, "
                       "ask about that page's address.", field="url")
    target = await unblock_target(state, url, user.name, user.group)
    logged = await state.store.hits.find(hit_id) if hit_id else None
    filed, merged = await state.store.unblock_requests.create_or_merge(
        user=user.name, group=user.group, url=url, target=target,
        reason=reason, hit_id=hit_id,
        site=logged.site if logged is not None and logged.user == user.name else "")
    await audit_trail.record(request, "unblock.merge" if merged else "unblock.file", filed.id,
                             after={"target": target, "hit_id": hit_id})
    return web.json_response({"id": filed.id, "merged": merged, "request": filed.to_dict()},
                             status=200 if merged else 201)


@routes.get("/api/v1/unblock-requests")
@requires(ANYONE_SIGNED_IN)
async def list_unblock_requests(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    listing = list_query(request, ("status", "user", "site"))
    status = choice(listing.query, "status", STATUSES)
    wanted_user = text(listing.query, "user", max_length=64)
    site = text(listing.query, "site", max_length=2000)
    target = target_of(site, "site") if site else None
    wanted_user = user_filter(user, wanted_user, UNBLOCK_READERS, "requests")
    return await page_response(state.store.unblock_requests.records, listing,
                               equal={"status": status, "user": wanted_user, "target": target},
                               shown=UnblockRequest.to_dict)


async def _details_for_it(state: AdminState, found: UnblockRequest) -> dict[str, Any]:
    decision = await state.policy.decide(found.url, user=found.user, group=found.group)
    earlier = [{"id": r.id, "user": r.user, "status": r.status, "created_at": r.created_at,
                "decided_by": r.decided_by, "note": r.note, "scope": r.scope}
               for r in await state.store.unblock_requests.for_target(found.target)
               if r.id != found.id]
    hit = None
    if found.hit_id:
        record = await state.store.hits.find(found.hit_id)
        hit = record.to_dict() if record is not None else None
    scope = await approval_scope(state, found.target, found.url, found.user, found.group)
    return {"decision": {**decision.to_dict(), "explanation": decision.explain()},
            "approval": scope.to_dict(), "earlier_requests": earlier, "hit": hit}


@routes.get(f"/api/v1/unblock-requests/{ID}")
@requires(ANYONE_SIGNED_IN)
async def show_unblock_request(request: web.Request) -> web.Response:
    state = state_of(request)
    found = await _unblock_request_or_404(request)
    out: dict[str, Any] = {"request": found.to_dict()}
    if current_user(request).role in UNBLOCK_READERS:
        out.update(await _details_for_it(state, found))
    return web.json_response(out)


def _open_or_conflict(found: UnblockRequest) -> None:
    if found.status != OPEN:
        raise ApiError(409, "already_decided", f"This request is already {found.status}.")


@routes.post(f"/api/v1/unblock-requests/{ID}/approve")
@requires(APPROVERS)
async def approve_unblock_request(request: web.Request) -> web.Response:
    state = state_of(request)
    approver = current_user(request)
    found = await _unblock_request_or_404(request)
    body = await json_body(request, ("scope", "expires_at", "note", "confirm_wider"))
    scope = OverrideScope(choice(body, "scope", [s.value for s in OverrideScope]) or "user")
    expires_at = optional_time(body, "expires_at", state.tz)
    now = time.time()
    if expires_at is not None and expires_at <= now:
        raise bad_input("expires_at must be in the future", "expires_at")
    note = text(body, "note", max_length=1000) or ""
    confirm_wider = boolean(body, "confirm_wider")
    _open_or_conflict(found)
    blocked, still = await _blocked_for(state, found.url, found.user, found.group,
                                        found.hit_id)
    if not blocked:
        raise ApiError(409, "not_blocked",
                       f"{found.url[:200]} is no longer blocked for {found.user} "
                       f"({still.reason}), so approving would only open more than was asked "
                       "for. Deny the request with a note to close it.")
    opens = await approval_scope(state, found.target, found.url, found.user, found.group)
    if opens.wider and not confirm_wider:
        raise ApiError(409, "confirm_wider", f"{opens.message} To approve all of it, confirm "
                       "(confirm_wider: true).", field="confirm_wider")
    subject = {OverrideScope.USER: found.user, OverrideScope.GROUP: found.group,
               OverrideScope.EVERYONE: None}[scope]
    override = Override(id=f"req-{found.id}", target=found.target, action="allow", scope=scope,
                        subject=subject, expires_at=expires_at, created_by=approver.name,
                        created_at=now, note=note, request_id=found.id)
    version = await apply_override(state, override)
    decided = replace(found, status=APPROVED, decided_at=now, decided_by=approver.name,
                      note=note, scope=scope.value, expires_at=expires_at,
                      override_id=override.id, updated_at=now)
    await state.store.unblock_requests.save_decision(decided)
    await audit_trail.record(request, "unblock.approve", found.id, before=found.to_dict(),
                             after={"request": decided.to_dict(), "override": override.to_dict(),
                                    "opens": opens.message})
    return web.json_response({"request": decided.to_dict(), "override": override.to_dict(),
                              "opens": opens.to_dict(), "policy_version": version})


@routes.post(f"/api/v1/unblock-requests/{ID}/deny")
@requires(APPROVERS)
async def deny_unblock_request(request: web.Request) -> web.Response:
    state = state_of(request)
    approver = current_user(request)
    found = await _unblock_request_or_404(request)
    body = await json_body(request, ("note",))
    note = required_text(body, "note", max_length=1000)
    _open_or_conflict(found)
    now = time.time()
    decided = replace(found, status=DENIED, decided_at=now, decided_by=approver.name, note=note,
                      updated_at=now)
    await state.store.unblock_requests.save_decision(decided)
    await audit_trail.record(request, "unblock.deny", found.id, before=found.to_dict(),
                             after=decided.to_dict())
    return web.json_response({"request": decided.to_dict()})
