"""Web security across the whole admin app, generated from its router so no route is missed:
CSRF on every cookie-authenticated write, an audit log nobody can edit, planted session
cookies, security headers on the UI, IDOR on every id route, and retention of raw hits."""

from __future__ import annotations

import time

from admin_api.workers.housekeeping import apply_retention
from store.hits import HitWriter
from store.records import ROLES, day_of
from tests.harness.api import PASSWORD, TZ, Api, hit

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(api: Api) -> list[tuple[str, str]]:
    return [(r.method, r.resource.canonical)  # type: ignore[union-attr]
            for r in api.client.server.app.router.routes()  # type: ignore[union-attr]
            if r.method != "HEAD"]


def _concrete(path: str) -> str:
    return (path.replace("{id}", "1").replace("{name}", "someone")
            .replace("{page}", "dashboard").replace("{path}", "css/admin.css"))


async def _cookie_session(api: Api, name: str) -> str:
    """Sign in through the login route, so the client holds the session cookies."""
    status, body = await api.call("POST", "/api/v1/auth/login",
                                  json={"username": name, "password": PASSWORD})
    assert status == 200, body
    return str(body["token"])


async def test_every_cookie_authenticated_write_needs_the_csrf_token(
        api: Api, security_figures: dict[str, str]) -> None:
    await api.user("admin1", "admin")
    await _cookie_session(api, "admin1")
    writes = [(m, p) for m, p in _routes(api)
              if m in WRITE_METHODS and p not in ("/api/v1/auth/login",)]
    assert len(writes) >= 15
    for method, path in writes:
        status, body = await api.call(method, _concrete(path), json={})
        if path.startswith("/portal/"):
            # The Wi-Fi portal's forms carry their own double-submit token (a plain form
            # cannot send the header): without it the post is refused and binds nothing.
            assert status == 400 and "This form has expired" in str(body), (method, path, body)
            continue
        assert status == 403 and body["error"]["code"] == "csrf_failed", (method, path, body)
    # With the token from the readable cookie, the same session is allowed to write.
    csrf = api.client.session.cookie_jar.filter_cookies(
        api.client.make_url("/"))["esafety_csrf"].value
    status, _ = await api.call("POST", "/api/v1/unblock-requests", json={
        "url": "https://dns.google/", "reason": "csrf check"}, headers={"X-CSRF-Token": csrf})
    assert status == 201
    security_figures["web: cookie writes refused without CSRF token"] = f"{len(writes)} routes"


async def test_the_audit_log_cannot_be_edited_through_the_api(
        api: Api, security_figures: dict[str, str]) -> None:
    token = await api.user("admin1", "admin")
    status, before = await api.call("GET", "/api/v1/audit", token)
    assert status == 200
    tried = 0
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/api/v1/audit", "/api/v1/audit/1", "/api/v1/audit/0-0",
                     "/api/v1/audit/entries"):
            status, _ = await api.call(method, path, token, json={"actor": "nobody"})
            tried += 1
            assert status in (404, 405), (method, path, status)
    status, after = await api.call("GET", "/api/v1/audit", token)
    assert after["items"] == before["items"]
    security_figures["web: audit log edit attempts refused"] = str(tried)


async def test_a_planted_session_cookie_is_not_a_session(api: Api) -> None:
    await api.user("learner1", "learner")
    api.client.session.cookie_jar.update_cookies({"esafety_session": "attacker-chosen-value"})
    status, _ = await api.call("GET", "/api/v1/auth/me")
    assert status == 401
    token = await _cookie_session(api, "learner1")
    assert token != "attacker-chosen-value"
    cookie = api.client.session.cookie_jar.filter_cookies(
        api.client.make_url("/"))["esafety_session"].value
    assert cookie == token  # login replaced the planted value with a fresh session
    status, _ = await api.call("POST", "/api/v1/auth/logout", headers={
        "X-CSRF-Token": api.client.session.cookie_jar.filter_cookies(
            api.client.make_url("/"))["esafety_csrf"].value})
    assert status == 200
    status, _ = await api.call("GET", "/api/v1/auth/me", headers={
        "Authorization": f"Bearer {token}"})
    assert status == 401  # the token is dead after logout


async def test_ui_pages_and_api_answers_carry_the_security_headers(api: Api) -> None:
    for path in ("/", "/sign-in", "/dashboard", "/api/v1/openapi.json", "/healthz",
                 "/api/v1/does-not-exist"):
        async with api.client.get(path) as response:
            csp = response.headers.get("Content-Security-Policy", "")
            assert "frame-ancestors 'none'" in csp, (path, csp)
            assert "'unsafe-inline'" not in csp.split("script-src", 1)[-1].split(";")[0], path
            assert response.headers.get("X-Content-Type-Options") == "nosniff", path
            assert response.headers.get("Referrer-Policy"), path


async def test_ids_of_other_peoples_records_are_not_reachable(
        api: Api, security_figures: dict[str, str]) -> None:
    owner = await api.user("owner", "learner")
    other = await api.user("other", "learner")
    blocked = hit("owner")
    await api.write_hits([blocked])
    _, request = await api.call("POST", "/api/v1/unblock-requests", owner,
                                json={"url": "https://dns.google/", "reason": "mine"})  # blocked: DoH
    _, report = await api.call("POST", "/api/v1/accident-reports", owner,
                               json={"hit_id": blocked.id, "what_happened": "an advert"})
    attempts = [
        ("GET", f"/api/v1/unblock-requests/{request['id']}"),
        ("POST", f"/api/v1/unblock-requests/{request['id']}/approve"),
        ("POST", f"/api/v1/unblock-requests/{request['id']}/deny"),
        ("GET", f"/api/v1/accident-reports/{report['id']}"),
        ("POST", f"/api/v1/accident-reports/{report['id']}/review"),
        ("GET", "/api/v1/hits?user=owner"),
        ("GET", f"/api/v1/hits?q={blocked.id}"),
        ("GET", "/api/v1/alerts/1"),
        ("GET", "/api/v1/users/owner"),
    ]
    for method, path in attempts:
        status, body = await api.call(method, path, other, json={} if method == "POST" else None)
        leaked = status == 200 and ("owner" in str(body) or blocked.id in str(body))
        assert not leaked and status in (200, 403, 404), (method, path, status, body)
    # The same attempts with a guessed id that does not exist look the same as forbidden ones.
    status, _ = await api.call("GET", "/api/v1/unblock-requests/999999", other)
    assert status == 404
    security_figures["web: IDOR attempts on other people's ids"] = f"{len(attempts)} refused"


async def test_retention_deletes_raw_hits_past_the_limit_and_keeps_counters(
        make_api: object, security_figures: dict[str, str]) -> None:
    api: Api = await make_api(retention_hits_days=30)  # type: ignore[operator]
    manager = await api.user("manager1", "manager")
    now = time.time()
    # Hits that arrived 40 and 31 days ago (their stream ids are that old too)...
    arrived_long_ago = [hit("learner4", ts=now - 40 * 86400), hit("learner5", ts=now - 31 * 86400)]
    for old_hit in arrived_long_ago:
        await api.redis.xadd(api.keys.hits, dict(zip(old_hit.field_names(),
                                                     old_hit.to_fields(), strict=True)),
                             id=f"{int(old_hit.ts * 1000)}-0")
    # ...and hits replayed late from a spool, whose own time is past the limit.
    old = [hit("learner1", ts=now - 40 * 86400), hit("learner2", ts=now - 31 * 86400)]
    recent = [hit("learner1", ts=now - 29 * 86400), hit("learner3", ts=now - 60)]
    writer = HitWriter(api.redis, api.keys, hits_days=30, counters_days=730)  # as the proxy
    await writer.write_batch("late-replay", [(day_of(h.ts, TZ), h) for h in old + recent])
    await api.state.feeder.catch_up()
    done = await apply_retention(api.state, now=now)
    assert done["stream"] == 2
    stored = [f["id"] for _i, f in await api.redis.xrange(api.keys.hits)]
    assert sorted(stored) == sorted(h.id for h in recent)
    status, page = await api.call("GET", "/api/v1/hits?from=2000-01-01", manager)
    assert status == 200
    assert sorted(h["id"] for h in page["items"]) == sorted(h.id for h in recent)
    # The daily counters behind the reports outlive the raw hits. They are kept per day in the
    # centre's time zone (the machine's own zone gave another day for an hour each night).
    days = {day_of(h.ts, TZ) for h in old}
    for day in days:
        assert await api.redis.exists(api.keys.day_counts(day))
    security_figures["privacy: retention"] = (
        f"{len(old)} hits past 30 days deleted from Redis and the log store, "
        f"{len(recent)} kept; counters kept")


def test_roles_are_the_six_the_policies_name() -> None:
    assert ROLES == ("learner", "staff", "it_support", "manager", "dsl", "admin")
