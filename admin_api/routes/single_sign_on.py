"""``/auth/oidc``: signing in to the admin UI through the centre's OpenID Connect provider.

``/auth/oidc/start`` sends the browser to the provider (authorization code, PKCE S256, a
``state`` and a ``nonce``). What the return needs (the PKCE verifier, the nonce, where to go
next) is kept in Redis for ten minutes by the state's digest, together with the digest of a
random value in an HttpOnly cookie of this browser: ``/auth/oidc/callback`` takes the record
once and goes on only when the state is known, unused and came back to the browser that left.
It exchanges the code at the provider's token endpoint, checks the ID token
(:mod:`admin_api.oidc_client`), maps the person to a role (``identity.oidc.roles``; nobody
mapped gets no access, never a default role), writes their account (marked SSO: no password)
and starts the same session as the password sign-in. Every outcome is in the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from html import escape
from urllib.parse import urlencode

from aiohttp import web

from admin_api import oidc_client
from admin_api.context import AdminState, state_of
from admin_api.oidc_client import SingleSignOnError
from admin_api.routes import audit_trail
from admin_api.routes.portal import device_address, safe_return
from admin_api.sessions import SESSION_COOKIE, set_session_cookies
from admin_api.web.content_security import UI_PAGE
from deployment.config import OidcSettings
from deployment.public_address import admin_public_url
from store.accounts import SSO_ATTEMPT_SECONDS, TOKEN_TTL_SECONDS
from store.records import UserRecord, natural_group

routes = web.RouteTableDef()
log = logging.getLogger("esafety.admin.single_sign_on")

START_PATH = "/auth/oidc/start"
CALLBACK_PATH = "/auth/oidc/callback"
END_SESSION_PATH = "/auth/oidc/end-session"
BROWSER_COOKIE = "esafety_sso"
"""Binds a sign-in under way to the browser that started it (SameSite=Lax: it must come back
on the provider's redirect, a top-level navigation from another site)."""


def _settings(state: AdminState) -> OidcSettings | None:
    return state.settings.config.identity.oidc


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _safe_next(value: str) -> str:
    """Only a path inside this UI is followed after signing in."""
    if value.startswith("/") and not value.startswith("//") and not value.startswith("/api/") \
            and "\\" not in value and len(value) <= 300:
        return value
    return "/"


def _redirect_uri(state: AdminState) -> str:
    return admin_public_url(state.settings.config) + CALLBACK_PATH


def _page(request: web.Request, status: int, title: str, message: str, *,
          refresh_to: str | None = None) -> web.Response:
    request[UI_PAGE] = True  # the UI's stylesheet, nothing else
    refresh = (f'<meta http-equiv="refresh" content="0;url={escape(refresh_to)}">'
               if refresh_to else "")
    follow = (f'<p><a href="{escape(refresh_to)}">Continue</a></p>' if refresh_to else
              '<p><a href="/sign-in">Back to sign-in</a></p>')
    body = f"""<!DOCTYPE html>
<html lang="en-GB">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>{escape(title)} – esafety</title>
<link rel="icon" href="/static/esafety-icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/css/admin.css"></head>
<body>
<main id="main" class="view">
<h1>{escape(title)}</h1>
<p>{escape(message)}</p>
{follow}
</main>
</body>
</html>
"""
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def _not_configured(request: web.Request) -> web.Response:
    return _page(request, 404, "Single sign-on is not set up",
                 "This centre signs in with esafety user names and passwords only.")


@routes.get("/api/v1/auth/single-sign-on")
async def single_sign_on_status(request: web.Request) -> web.Response:
    """Whether the sign-in page offers single sign-on, and with which provider. Public, so it
    never reaches out to the provider: whether the provider signs out too is known from the
    discovery document an earlier sign-in read."""
    settings = _settings(state_of(request))
    if settings is None:
        return web.json_response({"enabled": False})
    metadata = oidc_client.cached_metadata(settings)
    end_session = END_SESSION_PATH if metadata and metadata.end_session_endpoint else None
    return web.json_response({"enabled": True, "provider": oidc_client.provider_name(settings),
                              "start": START_PATH, "end_session": end_session})


@routes.get(START_PATH)
async def single_sign_on_start(request: web.Request) -> web.Response:
    """Send the browser to the provider to sign in."""
    state = state_of(request)
    settings = _settings(state)
    if settings is None:
        return _not_configured(request)
    try:
        metadata = await oidc_client.provider_metadata(settings)
    except SingleSignOnError as exc:
        log.warning("single sign-on start failed: %s", exc.message)
        return _page(request, exc.status, "Single sign-on is not available", exc.message)
    sign_in_state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = oidc_client.new_code_verifier()
    browser = secrets.token_urlsafe(32)
    attempt = {"browser": _digest(browser), "verifier": verifier, "nonce": nonce,
               "next": _safe_next(request.query.get("next", "/"))}
    if request.query.get("for") == "portal":
        # The Wi-Fi portal: the sign-in binds this device's address, and nothing else.
        address = device_address(request)
        if address is None:
            return _page(request, 400, "This device cannot be identified",
                         "Open the sign-in page on the device itself, through the centre's "
                         "network.")
        back = safe_return(request.query.get("return"))
        attempt |= {"purpose": "portal", "address": address,
                    "next": "/portal" + (f"?{urlencode({'return': back})}" if back else "")}
    await state.store.accounts.remember_sso_attempt(sign_in_state, attempt)
    location = oidc_client.authorization_url(
        settings, metadata, redirect_uri=_redirect_uri(state), state=sign_in_state,
        nonce=nonce, code_verifier=verifier)
    response = web.Response(status=302, headers={"Location": location,
                                                 "Cache-Control": "no-store"})
    response.set_cookie(BROWSER_COOKIE, browser, max_age=SSO_ATTEMPT_SECONDS,
                        path="/auth/oidc/", httponly=True, samesite="Lax",
                        secure=request.secure)
    return response


async def _refuse(request: web.Request, status: int, title: str, message: str, *,
                  target: str, reason: str) -> web.Response:
    await audit_trail.record(request, "auth.sso_refused", target, actor=target,
                             after={"reason": reason})
    response = _page(request, status, title, message)
    response.del_cookie(BROWSER_COOKIE, path="/auth/oidc/")
    return response


@routes.get(CALLBACK_PATH)
async def single_sign_on_callback(request: web.Request) -> web.Response:
    """Where the provider sends the browser back: finish the sign-in, or say why not."""
    state = state_of(request)
    settings = _settings(state)
    if settings is None:
        return _not_configured(request)
    attempt = await state.store.accounts.take_sso_attempt(request.query.get("state", ""))
    browser = request.cookies.get(BROWSER_COOKIE, "")
    if attempt is None or not browser or not hmac.compare_digest(
            _digest(browser).encode(), attempt.get("browser", "").encode()):
        return await _refuse(request, 400, "This sign-in cannot be finished",
                             "The sign-in link is not valid here: it is wrong, was already "
                             "used, has expired, or was started in another browser. Start "
                             "again from the sign-in page.",
                             target="", reason="state not valid for this browser")
    if "error" in request.query:
        error = request.query.get("error", "")[:100]
        described = request.query.get("error_description", "")[:300]
        return await _refuse(request, 400, "The sign-in provider did not sign you in",
                             f"It said: {error}{' (' + described + ')' if described else ''}.",
                             target="", reason=f"provider error: {error}")
    code = request.query.get("code", "")
    if not code or len(code) > 2000:
        return await _refuse(request, 400, "This sign-in cannot be finished",
                             "The sign-in provider sent no code.", target="",
                             reason="no code")
    secret = ""
    if settings.client_secret_env:
        environ = state.settings.environ if state.settings.environ is not None else os.environ
        secret = environ.get(settings.client_secret_env, "")
        if not secret:
            log.error("identity.oidc.client_secret_env names %s, which is not set",
                      settings.client_secret_env)
            return await _refuse(request, 500, "Single sign-on is not set up right",
                                 "The client secret is missing on the server. Ask IT support.",
                                 target="", reason="client secret not set")
    try:
        metadata = await oidc_client.provider_metadata(settings)
        id_token = await oidc_client.exchange_code(
            settings, metadata, secret, code=code, redirect_uri=_redirect_uri(state),
            code_verifier=attempt["verifier"])
        person = await oidc_client.verified_person(settings, metadata, id_token,
                                                   attempt["nonce"])
    except SingleSignOnError as exc:
        log.warning("single sign-on refused: %s", exc.message)
        return await _refuse(request, exc.status, "This sign-in cannot be finished",
                             exc.message, target="", reason=exc.message)
    who = person.email or person.preferred_name or person.subject
    if attempt.get("purpose") == "portal":
        return await _portal_sign_in(request, settings, person, attempt, metadata.issuer)
    role = oidc_client.role_for(settings, person)
    if role is None:
        return await _refuse(request, 403, "No access to esafety",
                             f"You signed in as {who}, but esafety has no role for you. Ask "
                             "the centre's IT support to add you if you need access.",
                             target=who, reason="no role maps this person")
    name = oidc_client.account_name(person)
    existing = await state.store.accounts.get(name)
    if existing is not None and existing.sso_subject != person.subject:
        reason = ("a local account has this name" if not existing.sso
                  else "another single sign-on person has this name")
        return await _refuse(request, 403, "No access to esafety",
                             f"The esafety account {name} belongs to someone else ({reason}). "
                             "Ask the centre's IT support.", target=name, reason=reason)
    if existing is not None and existing.disabled:
        return await _refuse(request, 403, "No access to esafety",
                             f"The esafety account {name} is disabled. Ask the centre's IT "
                             "support.", target=name, reason="account disabled")
    user = UserRecord(name=name, role=role,
                      group=oidc_client.group_for(settings, person, natural_group(role)),
                      password_hash="",
                      created_at=existing.created_at if existing else time.time(),
                      display_name=person.display_name, sso_subject=person.subject)
    await state.store.accounts.save(user)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # session fixation: whatever session the browser had is ended
        await state.store.accounts.revoke_token(previous)
    token = await state.store.accounts.issue_token(user.name)
    before = None if existing is None else {"role": existing.role, "group": existing.group}
    await audit_trail.record(request, "auth.sso_login", user.name, actor=user.name,
                             before=before, after={"role": user.role, "group": user.group,
                                                   "provider": metadata.issuer})
    # A page, not a redirect: the session cookie is SameSite=Strict, and a redirect chain that
    # began at the provider's site would not carry it to the next page.
    response = _page(request, 200, "Signed in", f"You are signed in as {user.name}.",
                     refresh_to=attempt.get("next", "/"))
    set_session_cookies(response, request, token, TOKEN_TTL_SECONDS)
    response.del_cookie(BROWSER_COOKIE, path="/auth/oidc/")
    return response


async def _portal_sign_in(request: web.Request, settings: OidcSettings,
                          person: oidc_client.SignedInPerson, attempt: dict[str, str],
                          issuer: str) -> web.Response:
    """Single sign-on at the Wi-Fi portal: bind the device's address to the person (no admin
    session). Their group is their esafety account's (one the directory sync or an earlier
    single sign-on made), else ``identity.oidc.groups``, else the network's."""
    state = state_of(request)
    who = person.email or person.preferred_name or person.subject
    address = device_address(request)
    if address is None or address != attempt.get("address"):
        return await _refuse(request, 400, "This sign-in cannot be finished",
                             "The sign-in was started on another device or network address. "
                             "Start again on this device.", target=who,
                             reason="portal sign-in finished from another address")
    name = oidc_client.account_name(person)
    existing = await state.store.accounts.get(name)
    if existing is not None and (existing.disabled or (
            existing.password_hash and existing.sso_subject != person.subject)):
        # Disabled, or a local password account of the same name that this person has never
        # been linked to: never sign in as it.
        return await _refuse(request, 403, "You cannot sign in here",
                             f"The esafety account {name} cannot be used from this sign-in. "
                             "Ask the centre's IT support.", target=name,
                             reason="account disabled or local")
    group = existing.group if existing is not None and existing.group else \
        oidc_client.group_for(settings, person, "")
    config = state.settings.config
    binding = await state.store.address_bindings.bind(
        address, name, "portal", config.identity.portal.session_hours * 3600, group=group)
    await audit_trail.record(request, "portal.sign_in", name, actor=name,
                             after={"address": address, "expires_at": binding.expires_at,
                                    "provider": issuer})
    response = _page(request, 200, "Signed in", f"This device is signed in as {name}.",
                     refresh_to=attempt.get("next", "/portal"))
    response.del_cookie(BROWSER_COOKIE, path="/auth/oidc/")
    return response


@routes.get(END_SESSION_PATH)
async def single_sign_on_end_session(request: web.Request) -> web.Response:
    """Sign out of the provider too (after signing out of esafety), where it offers that."""
    state = state_of(request)
    settings = _settings(state)
    if settings is None:
        return _not_configured(request)
    try:
        metadata = await oidc_client.provider_metadata(settings)
    except SingleSignOnError as exc:
        return _page(request, exc.status, "Single sign-on is not available", exc.message)
    if metadata.end_session_endpoint is None:
        return _page(request, 404, "Nothing more to sign out of",
                     "The sign-in provider does not offer signing out from here.")
    query = urlencode({"client_id": settings.client_id, "post_logout_redirect_uri":
                       admin_public_url(state.settings.config) + "/sign-in?signed_out=1"})
    separator = "&" if "?" in metadata.end_session_endpoint else "?"
    return web.Response(status=302, headers={
        "Location": metadata.end_session_endpoint + separator + query,
        "Cache-Control": "no-store"})
