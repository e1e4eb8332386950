"""``/api/v1/auth``: sign in, sign out, who am I, revoke my sessions."""

from __future__ import annotations

from aiohttp import web

from admin_api.context import AUTH_VIA, TOKEN, state_of
from admin_api.errors import ApiError
from admin_api.roles import ANYONE_SIGNED_IN, current_user, requires
from admin_api.routes import audit_trail
from admin_api.routes.http_input import json_body, required_text
from admin_api.sessions import SESSION_COOKIE, clear_session_cookies, set_session_cookies
from store.accounts import TOKEN_TTL_SECONDS

routes = web.RouteTableDef()


@routes.post("/api/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await json_body(request, ("username", "password"))
    username = required_text(body, "username", max_length=64)
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise ApiError(400, "invalid_input", "password is required", field="password")
    if len(password) > 1024:
        raise ApiError(400, "invalid_input", "password is too long", field="password")
    ip = request.remote or "unknown"
    # Counted per user name and address before the password is checked (shared with the
    # proxy's sign-in), so a learner guessing from their laptop locks only that laptop out.
    wait = await state.store.sign_in_limits.reserve_attempt(username, ip)
    if wait is not None:
        raise ApiError(429, "too_many_attempts", "Too many failed sign-ins. Try again in "
                       f"{wait // 60 + 1} minutes, or ask IT support.",
                       headers={"Retry-After": str(wait)})
    user = await state.store.accounts.verify_password(username, password)
    if user is None:
        await audit_trail.record(request, "auth.login_failed", username, actor=username)
        raise ApiError(401, "invalid_credentials", "The user name or password is wrong.")
    await state.store.sign_in_limits.record_success(username, ip)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # session fixation: whatever session the browser had is ended
        await state.store.accounts.revoke_token(previous)
    token = await state.store.accounts.issue_token(user.name)
    await audit_trail.record(request, "auth.login", user.name, actor=user.name)
    response = web.json_response({"token": token, "user": user.public(),
                                  "expires_in": TOKEN_TTL_SECONDS})
    set_session_cookies(response, request, token, TOKEN_TTL_SECONDS)
    return response


@routes.post("/api/v1/auth/logout")
@requires(ANYONE_SIGNED_IN)
async def logout(request: web.Request) -> web.Response:
    state = state_of(request)
    await state.store.accounts.revoke_token(request[TOKEN])
    await audit_trail.record(request, "auth.logout", current_user(request).name)
    response = web.json_response({"signed_out": True})
    clear_session_cookies(response)
    return response


@routes.get("/api/v1/auth/me")
@requires(ANYONE_SIGNED_IN)
async def me(request: web.Request) -> web.Response:
    return web.json_response({"user": current_user(request).public(),
                              "via": request[AUTH_VIA]})


@routes.post("/api/v1/auth/revoke-tokens")
@requires(ANYONE_SIGNED_IN)
async def revoke_my_tokens(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    count = await state.store.accounts.revoke_all_tokens(user.name)
    # "Sign me out everywhere" also ends the devices signed in at the Wi-Fi portal.
    unbound = await state.store.address_bindings.unbind_user(user.name)
    await audit_trail.record(request, "auth.revoke_tokens", user.name,
                             after={"revoked": count, "ended_sign_ins": unbound})
    response = web.json_response({"revoked": count, "ended_sign_ins": unbound})
    clear_session_cookies(response)
    return response
