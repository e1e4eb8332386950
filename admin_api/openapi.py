"""The OpenAPI 3.0 document served at ``/api/v1/openapi.json``.

Written by hand, one entry per route; ``tests/admin_api/test_api_openapi.py`` checks that every route in
the app's router is documented (with the roles its handler really admits, in ``x-roles``)
and that nothing documented is missing from the router.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin_api import roles
from admin_api.routes import (
    accident_reports as routes_accident_reports,
)
from admin_api.routes import (
    alerts as routes_alerts,
)
from admin_api.routes import (
    audit as routes_audit,
)
from admin_api.routes import (
    auth as routes_auth,
)
from admin_api.routes import (
    categories as routes_categories,
)
from admin_api.routes import (
    class_sessions as routes_class_sessions,
)
from admin_api.routes import (
    extension as routes_extension,
)
from admin_api.routes import (
    first_run as routes_first_run,
)
from admin_api.routes import (
    health as routes_health,
)
from admin_api.routes import (
    hits as routes_hits,
)
from admin_api.routes import (
    onboarding as routes_onboarding,
)
from admin_api.routes import (
    overrides as routes_overrides,
)
from admin_api.routes import (
    portal as routes_portal,
)
from admin_api.routes import (
    proxy_config as routes_proxy_config,
)
from admin_api.routes import (
    reports as routes_report_summaries,
)
from admin_api.routes import (
    single_sign_on as routes_single_sign_on,
)
from admin_api.routes import (
    ui as routes_ui,
)
from admin_api.routes import (
    unblock_requests as routes_unblock_requests,
)
from admin_api.routes import (
    users as routes_users,
)
from deployment import VERSION
from store.records import ROLES

JSON = "application/json"
_ERROR = {"$ref": "#/components/responses/Error"}


def _q(name: str, description: str, schema: dict[str, Any] | None = None,
       required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string", "maxLength": 64}}


def _path(name: str, pattern: str, max_length: int) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": f"^{pattern}$", "maxLength": max_length}}


ID = _path("id", "[0-9]{1,18}", 18)
USER_NAME = _path("name", "[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", 64)
OVERRIDE_ID = _path("id", "[A-Za-z0-9_.-]{1,64}", 64)
DATE_TIME = {"type": "string", "maxLength": 40,
             "description": "ISO 8601 date (2026-11-23) or date-time (2026-11-23T12:15:00Z); "
                            "without an offset, local time"}
FROM = _q("from", "start (inclusive)", DATE_TIME)
TO = _q("to", "end (a bare date includes that day)", DATE_TIME)
LIMIT = _q("limit", "page size", {"type": "string", "pattern": "^[0-9]{1,3}$"})
CURSOR = _q("cursor", "next_cursor from the previous page", {"type": "string", "maxLength": 100})
HIT_ID = {"type": "string", "pattern": "^[0-9]{8}-[0-9A-Za-z]{8}$",
          "description": "block reference shown on the block page"}
NOTE = {"type": "string", "maxLength": 1000}
HIT_FILTERS = [FROM, TO, _q("user", "user name"), _q("group", "filtering group"),
               _q("site", "centre or site id"), _q("host", "exact host", {"type": "string",
                                                                          "maxLength": 253}),
               _q("category", "category id"),
               _q("action", "allow or block", {"type": "string", "enum": ["allow", "block"]}),
               _q("q", "text in the host or path", {"type": "string", "maxLength": 200}),
               _q("device", "device id: a MAC address, an extension install id, a host",
                  {"type": "string", "pattern": "^[A-Za-z0-9_.:@/$-]{1,255}$",
                   "maxLength": 255})]


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": {
        "type": "object", "additionalProperties": False, "properties": properties,
        "required": required}}}}


def _op(handler: Any, summary: str, tag: str, *, parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, ok: int = 200, ok_type: str = JSON,
        description: str = "") -> dict[str, Any]:
    allowed = roles.allowed_roles(handler)
    operation: dict[str, Any] = {
        "summary": summary, "tags": [tag], "operationId": handler.__name__,
        "responses": {str(ok): {"description": "success",
                                "content": {ok_type: {"schema": {"type": "string"}
                                                      if ok_type != JSON else {"type": "object"}}}},
                      "default": _ERROR},
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    if allowed is None:
        operation["security"] = []
        operation["x-roles"] = ["public"]
    else:
        operation["x-roles"] = [r for r in ROLES if r in allowed]
    return operation


def build_document() -> dict[str, Any]:
    u, a, h = routes_unblock_requests, routes_auth, routes_hits
    ar = routes_accident_reports
    paths: dict[str, dict[str, Any]] = {
        "/healthz": {"get": _op(routes_health.healthz, "The process is up", "health")},
        "/readyz": {"get": _op(routes_health.readyz, "Ready (503 when Redis is unreachable); "
                                           "degraded, with the reasons, when not fully set "
                                           "up", "health")},
        "/metrics": {"get": _op(routes_health.metrics, "Prometheus metrics", "health",
                                ok_type="text/plain")},
        "/proxy.pac": {"get": _op(routes_proxy_config.proxy_pac, "Proxy auto-configuration",
                                  "proxy", ok_type="application/x-ns-proxy-autoconfig")},
        "/wpad.dat": {"get": _op(routes_proxy_config.wpad_dat, "Proxy auto-configuration "
                                 "(WPAD name)", "proxy",
                                 ok_type="application/x-ns-proxy-autoconfig")},
        "/onboarding": {"get": _op(routes_onboarding.onboarding_page, "Set up a device: the "
                                   "centre's certificate, its fingerprints, and how to trust "
                                   "it and use the proxy", "proxy", ok_type="text/html")},
        f"/onboarding/{routes_onboarding.PEM_NAME}": {"get": _op(
            routes_onboarding.onboarding_certificate_pem, "The centre's CA certificate (PEM)",
            "proxy", ok_type=routes_onboarding.PEM_TYPE)},
        f"/onboarding/{routes_onboarding.DER_NAME}": {"get": _op(
            routes_onboarding.onboarding_certificate_der, "The centre's CA certificate (DER)",
            "proxy", ok_type=routes_onboarding.DER_TYPE)},
        "/portal": {"get": _op(routes_portal.portal_page, "The Wi-Fi sign-in page (networks "
                               "with auth: portal): sign in, or who is signed in on this "
                               "device", "portal", ok_type="text/html",
                               parameters=[_q("return", "the address the device asked for",
                                              {"type": "string", "maxLength": 2000})])},
        "/portal/sign-in": {"post": _op(
            routes_portal.portal_sign_in, "Sign this device in (form: username, password, "
            "csrf, return); 303 to /portal", "portal", ok=303, ok_type="text/html")},
        "/portal/sign-out": {"post": _op(
            routes_portal.portal_sign_out, "Sign this device out (form: csrf); 303 to /portal",
            "portal", ok=303, ok_type="text/html")},
        "/api/v1/openapi.json": {"get": _op(openapi_document, "This document", "health")},
        "/": {"get": _op(routes_ui.ui_home, "The admin web UI (sign in, then the pages your "
                         "role may use)", "ui", ok_type="text/html")},
        "/{page}": {"get": _op(routes_ui.ui_page, "A page of the admin web UI (the same HTML "
                               "shell; the page is drawn from the JSON API)", "ui",
                               ok_type="text/html", parameters=[
                                   _path("page", routes_ui.PAGE_PATTERN, 40)])},
        "/static/{path}": {"get": _op(routes_ui.ui_static, "The web UI's scripts, styles and "
                                      "images", "ui", ok_type="text/plain", parameters=[
                                          _path("path", routes_ui.STATIC_PATTERN, 200)])},
        "/api/v1/auth/login": {"post": _op(a.login, "Sign in: a bearer token and a session "
                                           "cookie", "auth", body=_body(
            {"username": {"type": "string", "maxLength": 64},
             "password": {"type": "string", "maxLength": 1024}}, ["username", "password"]))},
        "/api/v1/auth/logout": {"post": _op(a.logout, "End this session", "auth")},
        "/api/v1/auth/me": {"get": _op(a.me, "The signed-in user", "auth")},
        "/api/v1/auth/revoke-tokens": {"post": _op(a.revoke_my_tokens,
                                                   "End all my sessions", "auth")},
        "/api/v1/auth/single-sign-on": {"get": _op(
            routes_single_sign_on.single_sign_on_status, "Whether the sign-in page offers "
            "single sign-on (OpenID Connect), and the provider's name", "auth")},
        routes_single_sign_on.START_PATH: {"get": _op(
            routes_single_sign_on.single_sign_on_start, "Single sign-on: to the provider "
            "(authorization code with PKCE)", "auth", ok=302, ok_type="text/html",
            parameters=[_q("next", "the UI path to open after signing in",
                           {"type": "string", "maxLength": 300})])},
        routes_single_sign_on.CALLBACK_PATH: {"get": _op(
            routes_single_sign_on.single_sign_on_callback, "Single sign-on: the provider's "
            "answer; signs in (a session cookie) or says why not", "auth",
            ok_type="text/html", parameters=[
                _q("state", "the state sent to the provider",
                   {"type": "string", "maxLength": 200}),
                _q("code", "the provider's authorization code",
                   {"type": "string", "maxLength": 2000}),
                _q("error", "the provider's error code", {"type": "string", "maxLength": 100}),
                _q("error_description", "the provider's error text",
                   {"type": "string", "maxLength": 300})])},
        routes_single_sign_on.END_SESSION_PATH: {"get": _op(
            routes_single_sign_on.single_sign_on_end_session, "Sign out of the single sign-on "
            "provider too", "auth", ok=302, ok_type="text/html")},
        "/api/v1/users": {
            "get": _op(routes_users.list_users, "List users", "users", parameters=[
                _q("role", "role", {"type": "string", "enum": list(ROLES)}),
                _q("group", "group"), LIMIT, CURSOR]),
            "post": _op(routes_users.add_user, "Create a user (a password is generated and "
                        "returned once when none is given)", "users", ok=201, body=_body(
                {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"},
                 "role": {"type": "string", "enum": list(ROLES)},
                 "group": {"type": "string", "maxLength": 41},
                 "password": {"type": "string", "minLength": 8, "maxLength": 1024},
                 "display_name": {"type": "string", "maxLength": 100}}, ["name"]))},
        "/api/v1/users/{name}": {"get": _op(routes_users.show_user, "One user", "users",
                                            parameters=[USER_NAME])},
        "/api/v1/users/{name}/disable": {"post": _op(
            routes_users.disable_user, "Disable a user and end their sessions", "users",
            parameters=[USER_NAME])},
        "/api/v1/users/{name}/enable": {"post": _op(routes_users.enable_user, "Enable a user",
                                                    "users", parameters=[USER_NAME])},
        "/api/v1/users/{name}/revoke-tokens": {"post": _op(
            routes_users.revoke_user_tokens, "End all of a user's sessions", "users",
            parameters=[USER_NAME])},
        "/api/v1/unblock-requests": {
            "post": _op(u.file_unblock_request, "Ask for a blocked site (201; 200 when merged "
                        "into your open request for the same site; 409 not_blocked, and "
                        "nothing filed, when the address is not blocked for you)",
                        "unblock-requests",
                        ok=201,
                        body=_body({"url": {"type": "string", "maxLength": 2000},
                                    "reason": {"type": "string", "maxLength": 1000},
                                    "hit_id": HIT_ID}, ["url", "reason"])),
            "get": _op(u.list_unblock_requests, "List unblock requests (learners and staff: "
                       "their own)", "unblock-requests", parameters=[
                           _q("status", "status", {"type": "string",
                                                   "enum": ["open", "approved", "denied",
                                                            "expired"]}),
                           _q("user", "requester"), _q("site", "site or URL",
                                                       {"type": "string", "maxLength": 2000}),
                           FROM, TO, LIMIT, CURSOR])},
        "/api/v1/unblock-requests/{id}": {"get": _op(
            u.show_unblock_request, "One unblock request; for IT also the decision explained, "
            "what approving it opens (approval), the logged hit and earlier requests for the "
            "same site",
            "unblock-requests", parameters=[ID])},
        "/api/v1/unblock-requests/{id}/approve": {"post": _op(
            u.approve_unblock_request, "Approve: writes an allow override (applied by every "
            "proxy within a second); refused (409) for sites on illegal lists, for an address "
            "no longer blocked (not_blocked), and, without confirm_wider, when it would open "
            "more listed entries than the one that blocked the request (confirm_wider)",
            "unblock-requests",
            parameters=[ID], body=_body({"scope": {"type": "string",
                                                   "enum": ["user", "group", "everyone"]},
                                         "expires_at": DATE_TIME, "note": NOTE,
                                         "confirm_wider": {"type": "boolean"}}, []))},
        "/api/v1/unblock-requests/{id}/deny": {"post": _op(
            u.deny_unblock_request, "Deny, with a note the requester sees", "unblock-requests",
            parameters=[ID], body=_body({"note": NOTE}, ["note"]))},
        "/api/v1/overrides": {
            "get": _op(routes_overrides.list_overrides, "List overrides", "overrides"),
            "post": _op(routes_overrides.add_override, "Add an allow or block override",
                        "overrides", ok=201, body=_body({
                            "target": {"type": "string", "maxLength": 2000},
                            "action": {"type": "string", "enum": ["allow", "block"]},
                            "scope": {"type": "string", "enum": ["user", "group", "everyone"]},
                            "subject": {"type": "string", "maxLength": 64},
                            "expires_at": DATE_TIME, "note": NOTE}, ["target"]))},
        "/api/v1/overrides/{id}": {"delete": _op(routes_overrides.remove_override,
                                                 "Delete an override", "overrides",
                                                 parameters=[OVERRIDE_ID])},
        "/api/v1/class-sessions": {
            "get": _op(routes_class_sessions.list_sessions, "Class sessions that started in "
                       "from..to (default: the last 7 days) and every open one, newest first; "
                       "staff see their own, managers every one", "class-sessions",
                       parameters=[FROM, TO, _q("mine", "1: only the caller's own",
                                                {"type": "string", "enum": ["1", "0"]})]),
            "post": _op(routes_class_sessions.open_session, "Open a group, a named network or "
                        "named learners for a lesson (optionally only some sites); never opens "
                        "a prohibited category", "class-sessions", ok=201, body=_body({
                            "target": {"type": "string",
                                       "enum": ["group", "network", "learners"]},
                            "names": {"type": "array", "minItems": 1, "maxItems": 50,
                                      "items": {"type": "string", "minLength": 1,
                                                "maxLength": 64}},
                            "minutes": {"type": "integer", "minimum": 1, "maximum": 720},
                            "sites": {"type": "array", "maxItems": 20,
                                      "items": {"type": "string", "minLength": 1,
                                                "maxLength": 253}},
                            "note": {"type": "string", "maxLength": 500}},
                            ["target", "names", "minutes"]))},
        "/api/v1/class-sessions/rooms": {"get": _op(
            routes_class_sessions.session_rooms, "The groups and named networks the caller may "
            "open, with their access windows, and the longest session", "class-sessions")},
        "/api/v1/class-sessions/hours": {"get": _op(
            routes_class_sessions.session_hours, "Hours opened by class sessions per group in "
            "from..to (default: the last 30 days)", "class-sessions", parameters=[FROM, TO])},
        "/api/v1/class-sessions/{id}/end": {"post": _op(
            routes_class_sessions.end_session, "End a class session now (staff: their own)",
            "class-sessions", parameters=[OVERRIDE_ID])},
        "/api/v1/accident-reports": {
            "post": _op(ar.file_accident_report, "Report reaching a blocked site "
                        "by accident (no blame); hit_id must be the reporter's own hit (same "
                        "user, or an unowned hit from the same address within the hour), "
                        "else 404", "accident-reports", ok=201, body=_body({
                            "hit_id": HIT_ID, "url": {"type": "string", "maxLength": 2000},
                            "what_happened": {"type": "string", "maxLength": 2000}},
                            ["what_happened"])),
            "get": _op(ar.list_accident_reports, "List accidental-hit reports "
                       "(others: their own)", "accident-reports", parameters=[
                           _q("status", "status", {"type": "string",
                                                   "enum": ["open", "reviewed"]}),
                           _q("user", "reporter"), _q("group", "group"), FROM, TO, LIMIT,
                           CURSOR])},
        "/api/v1/accident-reports/{id}": {"get": _op(
            ar.show_accident_report, "One report with the logged hit", "accident-reports",
            parameters=[ID])},
        "/api/v1/accident-reports/{id}/review": {"post": _op(
            ar.review_accident_report, "Mark a report reviewed", "accident-reports",
            parameters=[ID], body=_body({"note": {"type": "string", "maxLength": 2000}}, []))},
        "/api/v1/reports/summary": {"get": _op(
            routes_report_summaries.summary_report, "Blocks and allows from the daily counters",
            "summary", parameters=[
                _q("from", "first day", {"type": "string", "format": "date"}),
                _q("to", "last day", {"type": "string", "format": "date"}),
                _q("group_by", "grouping", {"type": "string",
                                            "enum": ["day", "week", "category", "site",
                                                     "group"]})])},
        "/api/v1/reports/quarterly": {"get": _op(
            routes_report_summaries.quarterly, "Printable quarterly e-safety report (HTML with SVG "
            "charts)", "summary", ok_type="text/html", parameters=[
                _q("quarter", "like 2026Q3", {"type": "string", "pattern": "^[0-9]{4}Q[1-4]$"},
                   required=True),
                _q("site", "one site's figures only (its id, as hits carry it)",
                   {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,40}$"})])},
        "/api/v1/hits": {"get": _op(h.list_hits, "The access log, newest first (learners and "
                                    "staff: their own)", "hits",
                                    parameters=[*HIT_FILTERS, LIMIT, CURSOR])},
        "/api/v1/hits.csv": {"get": _op(
            h.export_hits, "Export the selection as CSV (manager, DSL, admin; audited)", "hits",
            ok_type="text/csv", parameters=[*HIT_FILTERS, _q(
                "pseudonymise", "replace user names, addresses and devices with a keyed HMAC",
                {"type": "string", "enum": ["true", "false"]})])},
        "/api/v1/alerts": {"get": _op(routes_alerts.list_alerts, "Safeguarding alerts",
                                      "alerts", parameters=[
                                          _q("status", "status",
                                             {"type": "string", "enum": ["open", "acknowledged"]}),
                                          _q("category", "category"), _q("user", "user"),
                                          FROM, TO, LIMIT, CURSOR])},
        "/api/v1/alerts/{id}": {"get": _op(routes_alerts.show_alert, "One alert with the "
                                           "user's recent blocked hits", "alerts",
                                           parameters=[ID])},
        "/api/v1/alerts/{id}/acknowledge": {"post": _op(
            routes_alerts.acknowledge_alert, "Acknowledge with a note", "alerts",
            parameters=[ID], body=_body({"note": {"type": "string", "maxLength": 2000}},
                                        ["note"]))},
        "/api/v1/audit": {"get": _op(routes_audit.read_audit, "The audit log, newest first",
                                     "audit", parameters=[
                                         FROM, TO, _q("actor", "who"),
                                         _q("action", "like unblock.approve"), LIMIT,
                                         _q("cursor", "next_cursor",
                                            {"type": "string", "maxLength": 41})])},
        "/api/v1/categories": {"get": _op(routes_categories.list_categories,
                                          "Categories with list sources and entry counts",
                                          "policy")},
        "/api/v1/check": {"get": _op(routes_categories.check, "Explain the decision for a URL",
                                     "policy", parameters=[
                                         _q("url", "URL or host", {"type": "string",
                                                                   "maxLength": 4000}, True),
                                         _q("user", "user"), _q("group", "group"),
                                         _q("at", "time to decide at", DATE_TIME)])},
        "/api/v1/extension/rules": {"get": _op(
            routes_extension.extension_rules, "The signed-in user's off-network host rules "
            "for the browser extension: one rule per category (split when huge); with since, "
            "only the rules changed since that version (or unchanged: true)", "extension",
            parameters=[_q("since", "version from an earlier answer",
                           {"type": "string", "pattern": "^[0-9a-f]{20}$"})])},
        "/api/v1/extension/check": {"get": _op(
            routes_extension.extension_check, "The decision for the signed-in user; recent=true "
            "adds their block of that host in the last two minutes (for refused HTTPS)",
            "extension", parameters=[
                _q("url", "http(s) address", {"type": "string", "maxLength": 2000}, True),
                _q("recent", "include the latest hit", {"type": "string",
                                                        "enum": ["true", "false"]})])},
        "/api/v1/extension/hits": {"post": _op(
            routes_extension.extension_hits, "Log off-network blocks (site off-network); a "
            "batch id is written once, so a resend is not doubled", "extension", body=_body(
                {"batch_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"},
                 "hits": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
                     "type": "object", "additionalProperties": False,
                     "required": ["id", "ts", "url"],
                     "properties": {"id": HIT_ID, "ts": {"type": "number"},
                                    "url": {"type": "string", "maxLength": 2000},
                                    "category": {"type": "string", "maxLength": 41},
                                    "nav_token": {"type": "string",
                                                  "pattern": "^[0-9a-f]{64}$"}}}},
                 "device_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"}},
                ["batch_id", "device_id", "hits"]))},
        "/api/v1/extension/unsigned-rules": {"get": _op(
            routes_extension.extension_unsigned_rules, "The strictest profile's off-network "
            "rules, for a browser nobody is signed in to (no sign-in needed), with the "
            "offnetwork_unsigned setting", "extension",
            parameters=[_q("since", "version from an earlier answer",
                           {"type": "string", "pattern": "^[0-9a-f]{20}$"})])},
        "/api/v1/extension/devices": {"post": _op(
            routes_extension.extension_register_device, "Register this extension install "
            "after sign-in: a refresh token, the hit key and the probe key", "extension",
            ok=201, body=_body({"device_id": {"type": "string",
                                              "pattern": "^[A-Za-z0-9_-]{16,64}$"},
                                "public_key": {"type": "string",
                                               "pattern": "^04[0-9a-f]{128}$"},
                                "managed_device_id": {"type": "string",
                                                      "pattern": "^([A-Za-z0-9_-]{16,64})?$"}},
                               ["device_id", "public_key"]))},
        "/api/v1/extension/devices/current": {"delete": _op(
            routes_extension.extension_forget_device, "Sign this install out (the "
            "X-Esafety-Device header names it); its refresh token stops working",
            "extension")},
        "/setup": {"get": _op(routes_first_run.setup_page, "The set-up page: with the one-time "
                              "token while no admin exists (403 page otherwise), then the UI's "
                              "page", "setup", ok_type="text/html",
                              parameters=[_q("token", "the one-time set-up token",
                                             {"type": "string", "maxLength": 200})])},
        "/api/v1/setup": {"get": _op(
            routes_first_run.setup_status, "Whether set-up is needed (and the token valid); "
            "an admin also gets the current settings", "setup",
            parameters=[_q("token", "the one-time set-up token",
                           {"type": "string", "maxLength": 200})])},
        "/api/v1/setup/admin": {"post": _op(
            routes_first_run.create_first_admin, "Create the first admin with the one-time "
            "token (consumed) and sign them in", "setup", ok=201,
            body=_body({"token": {"type": "string", "maxLength": 200},
                        "username": {"type": "string", "maxLength": 64},
                        "password": {"type": "string", "minLength": 8, "maxLength": 1024},
                        "display_name": {"type": "string", "maxLength": 100}},
                       ["token", "username", "password"]))},
        "/api/v1/setup/settings": {"put": _op(
            routes_first_run.save_settings, "Save the centre's name, public addresses, networks "
            "and proxy sign-in to settings.yaml (the services restart)", "setup",
            body=_body({"centre_name": {"type": "string", "maxLength": 80},
                        "admin_public_url": {"type": "string", "maxLength": 300},
                        "proxy_public_address": {"type": "string", "maxLength": 300},
                        "networks": {"type": "array", "maxItems": 200, "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["cidr", "group"],
                            "properties": {"cidr": {"type": "string", "maxLength": 50},
                                           "group": {"type": "string", "maxLength": 41},
                                           "site": {"type": "string", "maxLength": 41},
                                           "name": {"type": "string", "maxLength": 80},
                                           "auth": {"enum": ["required", "off", ""]},
                                           "managed": {"type": "boolean"}}}},
                        "proxy_auth_mode": {"enum": ["off", "required"]}}, []))},
        "/api/v1/setup/lists/download": {"post": _op(
            routes_first_run.download_lists, "Download a configured list source and import it "
            "(a background job: poll /api/v1/setup/lists/job)", "setup", ok=202,
            body=_body({"source": {"type": "string", "maxLength": 64}}, []))},
        "/api/v1/setup/lists/upload": {"post": _op(
            routes_first_run.upload_lists, "Upload a squidGuard list tarball (.tar.gz) and "
            "import it (a background job)", "setup", ok=202,
            body={"required": True, "content": {"application/octet-stream": {"schema": {
                "type": "string", "format": "binary"}}}})},
        "/api/v1/setup/lists/job": {"get": _op(
            routes_first_run.list_job, "The latest list download or upload: phase and bytes",
            "setup")},
        "/api/v1/lists/status": {"get": _op(
            routes_first_run.lists_status, "Whether block lists are loaded, and the categories "
            "without one", "setup")},
        "/api/v1/extension/session": {"post": _op(
            routes_extension.extension_session, "A new bearer token for a registered "
            "install, from its device id and refresh token (no sign-in needed)", "extension",
            body=_body({"device_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"},
                        "refresh_token": {"type": "string", "maxLength": 200},
                        "ts": {"type": "integer"},
                        "sig": {"type": "string", "maxLength": 200}},
                       ["device_id", "refresh_token", "ts", "sig"]))},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "esafety admin API", "version": VERSION,
                 "description": "Unblock requests, accidental-hit reports, access logs, "
                                "safeguarding alerts and reports. Errors are JSON "
                                '{"error": {"code", "message"}}; invalid input is 400. '
                                "Cookie-authenticated writes need X-CSRF-Token."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "esafety_session"},
            },
            "responses": {"Error": {"description": "an error", "content": {JSON: {"schema": {
                "type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                   "field": {"type": "string"}}}}}}}}},
        },
    }


_DOCUMENT: dict[str, Any] = {}


async def openapi_document(request: web.Request) -> web.Response:
    if not _DOCUMENT:
        _DOCUMENT.update(build_document())
    return web.json_response(_DOCUMENT)
