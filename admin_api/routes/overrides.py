"""``/api/v1/overrides``: local allow and block rules (IT support and admins)."""

from __future__ import annotations

import json
import time

from aiohttp import web

from admin_api.context import state_of
from admin_api.errors import bad_input, not_found
from admin_api.override_rules import apply_override, target_of
from admin_api.roles import APPROVERS, current_user, requires
from admin_api.routes import audit_trail
from admin_api.routes.http_input import choice, json_body, optional_time, query_params, required_text, text
from categories.overrides import Override, OverrideScope

routes = web.RouteTableDef()
OVERRIDE_ID = "{id:[A-Za-z0-9_.-]{1,64}}"


@routes.get("/api/v1/overrides")
@requires(APPROVERS)
async def list_overrides(request: web.Request) -> web.Response:
    state = state_of(request)
    query_params(request, ())
    raw = await state.store.policy.stored()
    now = time.time()
    items, damaged = [], []
    for override_id, value in sorted(raw.items()):
        try:
            override = Override.from_dict(json.loads(value))
        except (ValueError, KeyError, TypeError):
            damaged.append(override_id)
            continue
        expired = override.expires_at is not None and override.expires_at <= now
        items.append({**override.to_dict(), "expired": expired})
    return web.json_response({"items": items, "damaged": damaged})


@routes.post("/api/v1/overrides")
@requires(APPROVERS)
async def add_override(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await json_body(request, ("target", "action", "scope", "subject", "expires_at",
                                     "note"))
    target = target_of(required_text(body, "target", max_length=2000), "target")
    action = choice(body, "action", ("allow", "block"), default="allow") or "allow"
    scope = OverrideScope(choice(body, "scope", [s.value for s in OverrideScope])
                          or "everyone")
    subject = text(body, "subject", max_length=64)
    if scope is OverrideScope.EVERYONE:
        if subject is not None:
            raise bad_input("subject must be empty for scope everyone", "subject")
    elif subject is None:
        raise bad_input(f"subject (the {scope.value} name) is required for scope {scope.value}",
                        "subject")
    expires_at = optional_time(body, "expires_at", state.tz)
    now = time.time()
    if expires_at is not None and expires_at <= now:
        raise bad_input("expires_at must be in the future", "expires_at")
    note = text(body, "note", max_length=1000) or ""
    override = Override(id=await state.store.policy.new_override_id(), target=target,
                        action=action, scope=scope, subject=subject, expires_at=expires_at,
                        created_by=current_user(request).name, created_at=now, note=note)
    version = await apply_override(state, override)
    await audit_trail.record(request, "override.create", override.id, after=override.to_dict())
    return web.json_response({"override": override.to_dict(), "policy_version": version},
                             status=201)


@routes.delete(f"/api/v1/overrides/{OVERRIDE_ID}")
@requires(APPROVERS)
async def remove_override(request: web.Request) -> web.Response:
    state = state_of(request)
    override_id = request.match_info["id"]
    before = await state.store.policy.stored_one(override_id)
    if before is None:
        raise not_found("override")
    version = await state.store.policy.delete_override(override_id)
    try:
        previous = json.loads(before)
    except ValueError:
        previous = before
    await audit_trail.record(request, "override.delete", override_id, before=previous)
    return web.json_response({"deleted": override_id, "policy_version": version})
