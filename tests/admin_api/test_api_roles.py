"""The role matrix, tried for every route in the app's router, and own-data-only rules."""

from __future__ import annotations

import re

from admin_api import roles
from admin_api.roles import allowed_roles
from store.accounts import issue_token
from store.records import ROLES
from tests.harness.api import Api, hit

EXPECTED = {
    # (method, path): roles admitted; None = public
    ("GET", "/healthz"): None, ("GET", "/readyz"): None, ("GET", "/metrics"): None,
    ("GET", "/api/v1/openapi.json"): None, ("POST", "/api/v1/auth/login"): None,
    ("GET", "/"): None, ("GET", "/{page}"): None, ("GET", "/static/{path}"): None,  # web UI
    ("GET", "/proxy.pac"): None, ("GET", "/wpad.dat"): None,
    ("GET", "/api/v1/auth/single-sign-on"): None,  # the sign-in page asks before sign-in
    ("GET", "/api/v1/hits.csv"): {"manager", "dsl", "admin"},
    ("POST", "/api/v1/unblock-requests/{id}/approve"): {"it_support", "admin"},
    ("POST", "/api/v1/unblock-requests/{id}/deny"): {"it_support", "admin"},
    ("GET", "/api/v1/overrides"): {"it_support", "admin"},
    ("POST", "/api/v1/overrides"): {"it_support", "admin"},
    ("DELETE", "/api/v1/overrides/{id}"): {"it_support", "admin"},
    ("GET", "/api/v1/audit"): {"manager", "admin"},
    # class sessions: staff with rooms open them; managers see every one and the hours
    ("GET", "/api/v1/class-sessions"): {"staff", "it_support", "manager", "dsl", "admin"},
    ("POST", "/api/v1/class-sessions"): {"staff", "it_support", "manager", "dsl", "admin"},
    ("GET", "/api/v1/class-sessions/rooms"): {"staff", "it_support", "manager", "dsl",
                                              "admin"},
    ("POST", "/api/v1/class-sessions/{id}/end"): {"staff", "it_support", "manager", "dsl",
                                                  "admin"},
    ("GET", "/api/v1/class-sessions/hours"): {"manager", "dsl", "admin"},
    ("GET", "/api/v1/alerts"): {"manager", "dsl", "admin"},
    ("GET", "/api/v1/alerts/{id}"): {"manager", "dsl", "admin"},
    ("POST", "/api/v1/alerts/{id}/acknowledge"): {"dsl", "admin"},
    ("POST", "/api/v1/accident-reports/{id}/review"): {"manager", "dsl", "admin"},
    ("GET", "/api/v1/reports/quarterly"): {"manager", "dsl", "admin"},
    ("GET", "/api/v1/reports/summary"): {"it_support", "manager", "dsl", "admin"},
    ("GET", "/api/v1/categories"): {"it_support", "manager", "dsl", "admin"},
    ("GET", "/api/v1/check"): {"it_support", "manager", "dsl", "admin"},
    # first-run set-up: the first admin is made with the one-time token, not a role
    ("GET", "/api/v1/setup"): None, ("POST", "/api/v1/setup/admin"): None,
    ("GET", "/api/v1/lists/status"): None,
    ("PUT", "/api/v1/setup/settings"): {"admin"},
    ("POST", "/api/v1/setup/lists/download"): {"admin"},
    ("POST", "/api/v1/setup/lists/upload"): {"admin"},
    ("GET", "/api/v1/setup/lists/job"): {"admin"},
}
USER_ROUTES = re.compile(r"^/api/v1/users")
EVERYONE = set(ROLES)
ADMIN_API_ROUTES = re.compile(r"^/(healthz|readyz|metrics|api/v1/(?!extension/))")
"""The routes whose roles this file pins down (the UI and extension routes have their own
tests); the matrix below still tries every route against what its handler declares."""


def _expected(method: str, path: str) -> set[str] | None:
    if (method, path) in EXPECTED:
        found = EXPECTED[(method, path)]
        return None if found is None else set(found)
    if USER_ROUTES.match(path):
        return {"admin"}
    return EVERYONE


def _routes(api: Api) -> list[tuple[str, str, object]]:
    out = []
    for route in api.client.server.app.router.routes():  # type: ignore[union-attr]
        if route.method == "HEAD":
            continue
        out.append((route.method, route.resource.canonical, route.handler))  # type: ignore[union-attr]
    return out


def _concrete(path: str) -> str:
    return path.replace("{id}", "1").replace("{name}", "someone")


async def test_every_route_declares_the_roles_the_policy_says(api: Api) -> None:
    routes = _routes(api)
    assert len(routes) >= 35
    for method, path, handler in routes:
        if not ADMIN_API_ROUTES.match(path):
            continue
        declared = allowed_roles(handler)
        assert (set(declared) if declared is not None else None) == _expected(method, path), \
            (method, path)


async def test_role_matrix_over_every_route(api: Api, security_figures: dict[str, str]) -> None:
    cells = 0
    for role in ROLES:
        await api.user(f"user-{role}", role)
    query = {"/api/v1/check": "?url=example.com", "/api/v1/reports/quarterly": "?quarter=2026Q1"}
    for method, path, handler in _routes(api):
        declared = allowed_roles(handler)
        expected = None if declared is None else set(declared)
        url = _concrete(path) + query.get(path, "")
        if expected is not None:
            status, body = await api.call(method, url)
            cells += 1
            assert status == 401, (method, path, body)
        for role in ROLES:
            # a fresh token per call: logout and revoke-tokens end the one they are given
            token = await issue_token(api.redis, api.keys, f"user-{role}")
            status, body = await api.call(method, url, token, json={} if method != "GET" else None)
            cells += 1
            if expected is None or role in expected:
                assert status not in (401, 403), (role, method, path, body)
                assert status < 500, (role, method, path, body)
            else:
                assert status == 403, (role, method, path, body)
                assert body["error"]["code"] == "forbidden"
    routes = len(_routes(api))
    security_figures["authorisation matrix"] = (
        f"{cells} cells checked ({routes} routes x {len(ROLES)} roles, plus anonymous on "
        "protected routes), 0 wrong")


async def test_a_learner_sees_only_their_own_hits(api: Api) -> None:
    learner = await api.user("l1", "learner")
    staff = await api.user("s1", "staff")
    it = await api.user("it1", "it_support")
    await api.write_hits([hit("l1"), hit("l2"), hit("s1", group="staff")])
    status, body = await api.call("GET", "/api/v1/hits", learner)
    assert status == 200 and {h["user"] for h in body["items"]} == {"l1"}
    status, body = await api.call("GET", "/api/v1/hits?user=l2", learner)
    assert status == 403
    status, body = await api.call("GET", "/api/v1/hits?group=staff", learner)
    assert status == 200 and body["items"] == []
    status, body = await api.call("GET", "/api/v1/hits", staff)
    assert {h["user"] for h in body["items"]} == {"s1"}
    status, body = await api.call("GET", "/api/v1/hits", it)
    assert {h["user"] for h in body["items"]} == {"l1", "l2", "s1"}


async def test_a_learner_cannot_see_or_decide_others_requests(api: Api) -> None:
    l1 = await api.user("l1", "learner")
    l2 = await api.user("l2", "learner")
    status, body = await api.call("POST", "/api/v1/unblock-requests", l1,
                                  json={"url": "https://dns.google/", "reason": "homework"})
    assert status == 201, body  # blocked for learners by the curated DNS-over-HTTPS entries
    request_id = body["id"]
    status, _ = await api.call("GET", f"/api/v1/unblock-requests/{request_id}", l2)
    assert status == 404
    status, body = await api.call("GET", "/api/v1/unblock-requests", l2)
    assert body["items"] == []
    status, _ = await api.call("GET", "/api/v1/unblock-requests?user=l1", l2)
    assert status == 403
    status, _ = await api.call("POST", f"/api/v1/unblock-requests/{request_id}/approve", l1,
                               json={"scope": "user"})
    assert status == 403
    status, body = await api.call("GET", f"/api/v1/unblock-requests/{request_id}", l1)
    assert status == 200 and "decision" not in body  # the explanation is for IT


def test_nobody_below_manager_can_export() -> None:
    assert roles.EXPORTERS == {"manager", "dsl", "admin"}
