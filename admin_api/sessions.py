"""Who is calling: bearer tokens and browser sessions, with CSRF protection for the latter.

A token from ``POST /auth/login`` works two ways:

* ``Authorization: Bearer <token>`` (scripts, the browser extension, the proxy's 407): no
  cookies involved, so no CSRF exposure;
* the ``esafety_session`` cookie (the web UI): HttpOnly, SameSite=Strict, Secure when served
  over https. Every cookie-authenticated write (POST, PUT, PATCH, DELETE) must also send
  ``X-CSRF-Token`` equal to the ``esafety_csrf`` cookie (readable by the page, not HttpOnly).
  That value is derived from the session token, so another site can neither read nor forge
  it, and it changes with every login.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from admin_api.context import AUTH_VIA, TOKEN, USER, state_of
from admin_api.errors import ApiError, Handler

SESSION_COOKIE = "esafety_session"
CSRF_COOKIE = "esafety_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_EXEMPT = frozenset({"/api/v1/auth/login", "/portal/sign-in", "/portal/sign-out"})
"""Signing in needs no session; it ends any session the browser had (see routes_auth). The
Wi-Fi sign-in page's forms carry their own double-submit token (see routes.portal)."""


def csrf_token_for(session_token: str) -> str:
    return hashlib.sha256(b"esafety-csrf\0" + session_token.encode()).hexdigest()


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@web.middleware
async def authentication_middleware(request: web.Request, handler: Handler
                                    ) -> web.StreamResponse:
    state = state_of(request)
    token = bearer_token(request)
    via = "bearer"
    if token is None:
        token = request.cookies.get(SESSION_COOKIE) or None
        via = "cookie"
    if token is not None:
        user = await state.store.accounts.user_for_token(token)
        if user is not None:
            request[USER] = user
            request[AUTH_VIA] = via
            request[TOKEN] = token
            if (via == "cookie" and request.method not in SAFE_METHODS
                    and request.path not in CSRF_EXEMPT):
                sent = request.headers.get(CSRF_HEADER, "")
                if not hmac.compare_digest(sent.encode(), csrf_token_for(token).encode()):
                    raise ApiError(403, "csrf_failed", "This request needs the X-CSRF-Token "
                                   "header (the value of the esafety_csrf cookie).")
    return await handler(request)


def set_session_cookies(response: web.StreamResponse, request: web.Request, token: str,
                        max_age: int) -> None:
    secure = request.secure
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf_token_for(token), max_age=max_age, path="/",
                        httponly=False, samesite="Strict", secure=secure)


def clear_session_cookies(response: web.StreamResponse) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.del_cookie(name, path="/")
