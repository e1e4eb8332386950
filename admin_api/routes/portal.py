"""``/portal``: the Wi-Fi sign-in page, for devices with no browser extension and no Kerberos
(bring-your-own phones and laptops) on a network marked ``auth: portal``.

The proxy sends an unidentified device there (a 302 for plain HTTP and the operating systems'
captive-portal probes, a 403 naming it for CONNECT). Signing in binds the device's address to
the account for ``identity.portal.session_hours`` (:mod:`store.address_bindings`), which every
proxy honours within a second; signing out (or a disabled account, or revoked tokens) removes
it.

The device's address. Reached directly (a PAC file sends the admin service DIRECT), the TCP
peer is the device. Reached through the proxy, the peer is the proxy, which sends the device's
address in ``X-Forwarded-For`` (it removes whatever the client sent first). That header is
believed only from this server's own addresses (loopback, its detected address, the proxy's
public host) and ``identity.portal.trusted_proxies``; from anyone else it is ignored, so no
device can bind another's address. A request from a trusted proxy without the header (an
``https://`` admin address, tunnelled untouched) cannot tell which device it is, and signing in
is refused with a message saying so.

CSRF: the form is used before anyone is signed in, so it carries a double-submit token: a
random value in a ``SameSite=Strict``, ``HttpOnly`` cookie and the same value in a hidden
field, compared in constant time; a post without them is answered 400 and changes nothing.
Password guesses count against the sign-in limits (:mod:`store.login_limits`) per user name
and device address, exactly as the admin sign-in. Sign-ins, failures and sign-outs are
audited.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from admin_api.context import state_of
from admin_api.routes import audit_trail
from admin_api.web.content_security import PAGE_CSP
from deployment.config import Config
from deployment.public_address import detected_public_host, proxy_public_address
from store.address_bindings import AddressBinding, BindingError, normal_address

routes = web.RouteTableDef()

CSRF_COOKIE = "esafety_portal_csrf"
CSRF_FIELD = "csrf"
PORTAL_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
              "frame-ancestors 'none'; base-uri 'none'")
"""The admin UI's stylesheet, and forms posting back here; no script at all."""
FORWARDED_HEADER = "X-Forwarded-For"
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
RETURN_MAX = 2000
UNKNOWN_DEVICE = ("This page was reached through a proxy that did not say which device you "
                  "are on, so you cannot sign in here. Open http://neverssl.com or any other "
                  "http:// address to be brought back to this page, or ask IT support.")

_PAGE = """<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title} – {centre}</title>
<link rel="stylesheet" href="/static/css/admin.css">
</head>
<body>
<a class="skip-link" href="#main">Skip to main content</a>
<header class="site-header">
  <div class="site-header__inner">
    <span class="site-name">esafety</span>
    <span class="site-tagline">Wi-Fi at {centre}</span>
  </div>
</header>
<main id="main" tabindex="-1">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""

_SIGN_IN = """{notice}<p class="lead">Sign in with your centre user name and password to use
the internet on this device.</p>
<form class="form form--narrow" method="post" action="/portal/sign-in" novalidate>
<input type="hidden" name="{csrf_field}" value="{csrf}">
<input type="hidden" name="return" value="{return_url}">
<div class="field">
<label for="portal-username">User name</label>
<input class="input" id="portal-username" name="username" type="text" autocomplete="username"
 autocapitalize="none" spellcheck="false" maxlength="64" required value="{username}">
</div>
<div class="field">
<label for="portal-password">Password</label>
<input class="input" id="portal-password" name="password" type="password"
 autocomplete="current-password" maxlength="1024" required>
</div>
<button class="button" type="submit">Sign in</button>
</form>
{single_sign_on}<p class="hint">Your browsing on this network is filtered and logged under your name, as the
centre's e-safety policy explains. You stay signed in on this device for {hours} or until you
sign out.</p>
"""

_SIGNED_IN = """<div class="notice notice--success" role="status">
<p data-field="signed-in-as">Signed in as <strong>{user}</strong> on this device until
{until}.</p>
</div>
{continue_link}
<form method="post" action="/portal/sign-out">
<input type="hidden" name="{csrf_field}" value="{csrf}">
<button class="button button--secondary" type="submit">Sign out</button>
</form>
<p class="hint">Sign out before you hand this device to someone else: until then, its
browsing is logged under your name.</p>
"""

_NOTICE = """<div class="notice notice--error" role="alert" id="portal-problem">
<p>{message}</p>
</div>
"""


def _own_networks(config: Config) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Addresses whose ``X-Forwarded-For`` is believed: loopback, this server's detected
    address, the proxy's public host (when it is an address) and the configured proxies."""
    found: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(LOOPBACK)
    hosts = [detected_public_host(), proxy_public_address(config).rsplit(":", 1)[0]]
    for host in hosts:
        try:
            found.append(ipaddress.ip_network(host.strip("[]")))
        except ValueError:
            continue  # a name: list the proxy's addresses in identity.portal.trusted_proxies
    found.extend(config.identity.portal.trusted_proxies)
    return found


def _is_trusted_proxy(config: Config, peer: str) -> bool:
    try:
        address = ipaddress.ip_address(normal_address(peer))
    except BindingError:
        return False
    return any(address in network for network in _own_networks(config))


def device_address(request: web.Request) -> str | None:
    """The address of the device signing in, or None when it cannot be told (see the module
    docstring): the peer, or from a trusted proxy the address it forwarded."""
    peer = request.remote or ""
    if not _is_trusted_proxy(state_of(request).settings.config, peer):
        try:
            return normal_address(peer)
        except BindingError:
            return None
    forwarded = request.headers.getall(FORWARDED_HEADER, [])
    if not forwarded:
        return None
    # The proxy replaces whatever the client sent with one address; the last one is its own.
    try:
        return normal_address(forwarded[-1].split(",")[-1].strip())
    except BindingError:
        return None


def safe_return(value: str | None) -> str:
    """The address to go back to after signing in: an absolute http(s) URL, else nothing
    (it is only ever shown as a link, never redirected to)."""
    if not value or len(value) > RETURN_MAX or any(ord(c) < 0x20 for c in value):
        return ""
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.hostname else ""


def _hours(config: Config) -> str:
    hours = config.identity.portal.session_hours
    return f"{hours:g} hour" + ("" if hours == 1 else "s")


def _page(request: web.Request, title: str, body: str, status: int = 200,
          csrf: str | None = None) -> web.Response:
    config = state_of(request).settings.config
    response = web.Response(
        text=_PAGE.format(title=escape(title), centre=escape(config.centre_name), body=body),
        status=status, content_type="text/html", charset="utf-8")
    request[PAGE_CSP] = PORTAL_CSP
    if csrf is not None:
        response.set_cookie(CSRF_COOKIE, csrf, path="/portal", httponly=True,
                            samesite="Strict", secure=request.secure)
    return response


def _csrf_of(request: web.Request) -> str:
    """The browser's double-submit token, or a new one."""
    current = request.cookies.get(CSRF_COOKIE, "")
    return current if len(current) == 43 else secrets.token_urlsafe(32)


def _sign_in_page(request: web.Request, return_url: str, *, problem: str = "",
                  username: str = "", status: int = 200) -> web.Response:
    config = state_of(request).settings.config
    csrf = _csrf_of(request)
    body = _SIGN_IN.format(
        notice=_NOTICE.format(message=escape(problem)) if problem else "",
        csrf_field=CSRF_FIELD, csrf=escape(csrf), return_url=escape(return_url),
        username=escape(username), hours=escape(_hours(config)),
        single_sign_on=_single_sign_on_link(config, return_url))
    return _page(request, "Sign in to use the internet", body, status, csrf)


def _single_sign_on_link(config: Config, return_url: str) -> str:
    """"Sign in with <provider>", where single sign-on is configured (``identity.oidc``)."""
    if config.identity.oidc is None:
        return ""
    query = urlencode({"for": "portal", "return": return_url} if return_url
                      else {"for": "portal"})
    name = config.identity.oidc.name or "your organisation's account"
    return (f'<p><a class="button button--secondary" href="/auth/oidc/start?{escape(query)}" '
            f'data-field="single-sign-on">Sign in with {escape(name)}</a></p>\n')


def _signed_in_page(request: web.Request, binding: AddressBinding,
                    return_url: str) -> web.Response:
    tz = state_of(request).tz
    until = datetime.fromtimestamp(binding.expires_at, tz)
    link = (f'<p><a class="button" href="{escape(return_url)}" data-field="continue">'
            f'Continue to {escape(return_url)}</a></p>' if return_url else
            "<p>You can now use the internet on this device.</p>")
    csrf = _csrf_of(request)
    body = _SIGNED_IN.format(user=escape(binding.user),
                             until=escape(f"{until:%H:%M} on {until:%A %d %B}"),
                             continue_link=link, csrf_field=CSRF_FIELD, csrf=escape(csrf))
    return _page(request, "You are signed in", body, csrf=csrf)


def _problem_page(request: web.Request, message: str, status: int) -> web.Response:
    return _sign_in_page(request, "", problem=message, status=status)


async def _portal_binding(request: web.Request, address: str) -> AddressBinding | None:
    binding = await state_of(request).store.address_bindings.get(address)
    return binding if binding is not None and binding.source == "portal" else None


def _csrf_ok(request: web.Request, form: dict[str, str]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type not in ("application/x-www-form-urlencoded",
                                    "multipart/form-data"):
        return {}
    data = await request.post()
    return {key: value for key, value in data.items() if isinstance(value, str)}


@routes.get("/portal")
async def portal_page(request: web.Request) -> web.Response:
    return_url = safe_return(request.query.get("return"))
    address = device_address(request)
    if address is None:
        return _problem_page(request, UNKNOWN_DEVICE, 400)
    binding = await _portal_binding(request, address)
    if binding is not None:
        return _signed_in_page(request, binding, return_url)
    return _sign_in_page(request, return_url)


@routes.post("/portal/sign-in")
async def portal_sign_in(request: web.Request) -> web.Response:
    state = state_of(request)
    config = state.settings.config
    form = await _form(request)
    return_url = safe_return(form.get("return"))
    username = form.get("username", "").strip()[:64]
    password = form.get("password", "")
    if not _csrf_ok(request, form):
        return _sign_in_page(request, return_url, username=username, status=400, problem=(
            "This form has expired. Please enter your user name and password again."))
    address = device_address(request)
    if address is None:
        return _problem_page(request, UNKNOWN_DEVICE, 400)
    if not username or not password or len(password) > 1024:
        return _sign_in_page(request, return_url, username=username, status=400,
                             problem="Enter your user name and password.")
    # Counted per user name and device before the password is checked (shared with the admin
    # sign-in and the proxy's), so guessing from one device locks out only that device.
    wait = await state.store.sign_in_limits.reserve_attempt(username, address)
    if wait is not None:
        response = _sign_in_page(
            request, return_url, username=username, status=429, problem=(
                "Too many wrong passwords for this name from this device. Try again in "
                f"{wait // 60 + 1} minutes, or ask IT support."))
        response.headers["Retry-After"] = str(wait)
        return response
    user = await state.store.accounts.verify_password(username, password)
    if user is None:
        await audit_trail.record(request, "portal.sign_in_failed", username, actor=username,
                                 after={"address": address})
        return _sign_in_page(request, return_url, username=username, status=401,
                             problem="The user name or password is wrong.")
    await state.store.sign_in_limits.record_success(username, address)
    binding = await state.store.address_bindings.bind(
        address, user.name, "portal", config.identity.portal.session_hours * 3600,
        group=user.group)
    await audit_trail.record(request, "portal.sign_in", user.name, actor=user.name,
                             after={"address": address, "expires_at": binding.expires_at})
    target = "/portal" + (f"?return={quote(return_url, safe='')}" if return_url else "")
    raise web.HTTPSeeOther(target)


@routes.post("/portal/sign-out")
async def portal_sign_out(request: web.Request) -> web.Response:
    state = state_of(request)
    form = await _form(request)
    if not _csrf_ok(request, form):
        return _problem_page(request, "This form has expired. Open the page again to sign "
                             "out.", 400)
    address = device_address(request)
    if address is None:
        return _problem_page(request, UNKNOWN_DEVICE, 400)
    binding = await _portal_binding(request, address)
    if binding is not None and await state.store.address_bindings.unbind(
            address, user=binding.user, source="portal"):
        await audit_trail.record(request, "portal.sign_out", binding.user,
                                 actor=binding.user, before={"address": address})
    raise web.HTTPSeeOther("/portal")
