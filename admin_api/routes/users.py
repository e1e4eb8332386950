"""``/api/v1/users``: user accounts (admin only)."""

from __future__ import annotations

import re
import secrets
from dataclasses import replace

from aiohttp import web

from admin_api.context import state_of
from admin_api.directory_groups import MANAGED_BY
from admin_api.errors import ApiError, bad_input
from admin_api.roles import USER_ADMINS, requires
from admin_api.routes import audit_trail
from admin_api.routes.http_input import (
    choice,
    json_body,
    offset_cursor,
    page_limit,
    page_of,
    query_params,
    required_text,
    text,
)
from store.accounts import MIN_PASSWORD_LENGTH, USER_NAME, AccountError
from store.records import ROLES, UserRecord, natural_group

routes = web.RouteTableDef()
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"
_GROUP = re.compile(r"[a-z][a-z0-9_-]{0,40}")


def generated_password() -> str:
    return secrets.token_urlsafe(12)


async def _user_or_404(request: web.Request) -> UserRecord:
    state = state_of(request)
    user = await state.store.accounts.get(request.match_info["name"])
    if user is None:
        raise ApiError(404, "not_found", "There is no user with that name.")
    return user


@routes.get("/api/v1/users")
@requires(USER_ADMINS)
async def list_users(request: web.Request) -> web.Response:
    state = state_of(request)
    query = query_params(request, ("role", "group", "limit", "cursor"))
    role = choice(query, "role", ROLES)
    group = text(query, "group", max_length=41)
    limit, offset = page_limit(query), offset_cursor(query)
    users = [user.public() for user in await state.store.accounts.all()
             if (not role or user.role == role) and (not group or user.group == group)]
    page, next_cursor = page_of(users, offset, limit)
    return web.json_response({"items": page, "next_cursor": next_cursor})


@routes.post("/api/v1/users")
@requires(USER_ADMINS)
async def add_user(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await json_body(request, ("name", "role", "group", "password", "display_name"))
    name = required_text(body, "name", max_length=64)
    if not USER_NAME.match(name):
        raise bad_input("name must be 1-64 letters, digits, and . _ @ -", "name")
    role = choice(body, "role", ROLES, default="learner") or "learner"
    group = text(body, "group", max_length=41) or natural_group(role)
    if not _GROUP.fullmatch(group) or group not in state.settings.config.profiles:
        raise bad_input(f"group must be one of: {', '.join(state.settings.config.profiles)}",
                        "group")
    display_name = text(body, "display_name", max_length=100) or ""
    password = body.get("password")
    generated = password is None
    if generated:
        password = generated_password()
    if not isinstance(password, str) or not MIN_PASSWORD_LENGTH <= len(password) <= 1024:
        raise bad_input(f"password must be {MIN_PASSWORD_LENGTH} to 1024 characters", "password")
    if await state.store.accounts.get(name) is not None:
        raise ApiError(409, "exists", "A user with that name already exists.")
    try:
        user = await state.store.accounts.create(name, role, group, password, display_name)
    except AccountError as exc:
        raise bad_input(str(exc)) from exc
    await audit_trail.record(request, "user.create", name, after=user.public())
    out: dict[str, object] = {"user": user.public()}
    if generated:
        out["password"] = password  # shown once, never stored in clear
    return web.json_response(out, status=201)


@routes.get(f"/api/v1/users/{{name:{NAME_PATTERN}}}")
@requires(USER_ADMINS)
async def show_user(request: web.Request) -> web.Response:
    return web.json_response({"user": (await _user_or_404(request)).public()})


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    state = state_of(request)
    user = await _user_or_404(request)
    if not disabled and user.disabled and user.disabled_by == MANAGED_BY:
        # A leaver: the next sync would disable them again, and until then they would have
        # access the directory took away.
        raise ApiError(409, "directory_leaver",
                       f"{user.name} left the directory's mapped groups, so the directory "
                       "sync disabled them. Add them back to a mapped group in the directory; "
                       "the next sync enables them.")
    updated = replace(user, disabled=disabled)
    await state.store.accounts.save(updated)
    revoked = await state.store.accounts.revoke_all_tokens(user.name) if disabled else 0
    # A disabled account's Wi-Fi sign-ins (portal, RADIUS) end too.
    unbound = await state.store.address_bindings.unbind_user(user.name) if disabled else 0
    await audit_trail.record(request, "user.disable" if disabled else "user.enable", user.name,
                             before=user.public(), after=updated.public())
    return web.json_response({"user": updated.public(), "revoked_tokens": revoked,
                              "ended_sign_ins": unbound})


@routes.post(f"/api/v1/users/{{name:{NAME_PATTERN}}}/disable")
@requires(USER_ADMINS)
async def disable_user(request: web.Request) -> web.Response:
    return await _set_disabled(request, True)


@routes.post(f"/api/v1/users/{{name:{NAME_PATTERN}}}/enable")
@requires(USER_ADMINS)
async def enable_user(request: web.Request) -> web.Response:
    return await _set_disabled(request, False)


@routes.post(f"/api/v1/users/{{name:{NAME_PATTERN}}}/revoke-tokens")
@requires(USER_ADMINS)
async def revoke_user_tokens(request: web.Request) -> web.Response:
    state = state_of(request)
    user = await _user_or_404(request)
    count = await state.store.accounts.revoke_all_tokens(user.name)
    unbound = await state.store.address_bindings.unbind_user(user.name)
    await audit_trail.record(request, "user.revoke_tokens", user.name,
                             after={"revoked": count, "ended_sign_ins": unbound})
    return web.json_response({"revoked": count, "ended_sign_ins": unbound})
