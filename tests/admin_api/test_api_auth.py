"""Sign-in, sessions, CSRF, rate limiting, errors and security headers of the admin API."""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie

import aiohttp

from store.login_limits import LoginLimits
from tests.harness.api import PASSWORD, Api, ApiFactory

LOGIN = "/api/v1/auth/login"


async def _login(api: Api, name: str, password: str = PASSWORD) -> tuple[int, dict[str, object],
                                                                          SimpleCookie]:
    async with api.client.post(LOGIN, json={"username": name, "password": password}) as resp:
        cookies: SimpleCookie = SimpleCookie()
        for header in resp.headers.getall("Set-Cookie", []):
            cookies.load(header)
        return resp.status, await resp.json(), cookies


async def test_login_returns_token_user_and_strict_cookies(api: Api) -> None:
    await api.user("it1", "it_support")
    status, body, cookies = await _login(api, "it1")
    assert status == 200
    assert body["user"] == {**body["user"], "name": "it1", "role": "it_support"}  # type: ignore[dict-item]
    assert "password_hash" not in body["user"]  # type: ignore[operator]
    session = cookies["esafety_session"]
    assert session.value == body["token"]
    assert session["httponly"] and session["samesite"] == "Strict" and session["path"] == "/"
    assert not session["secure"]  # served over plain http in tests; Secure over https
    csrf = cookies["esafety_csrf"]
    assert not csrf["httponly"] and csrf["samesite"] == "Strict"
    status, me = await api.call("GET", "/api/v1/auth/me", str(body["token"]))
    assert status == 200 and me["user"]["name"] == "it1" and me["via"] == "bearer"


async def test_each_login_gets_a_new_token_and_ends_the_old_cookie_session(api: Api) -> None:
    await api.user("m1", "manager")
    _, first, _ = await _login(api, "m1")
    # the browser still holds the first session cookie when it signs in again
    api.client.session.cookie_jar.update_cookies({"esafety_session": str(first["token"])})
    _, second, _ = await _login(api, "m1")
    assert first["token"] != second["token"]
    api.client.session.cookie_jar.clear()
    status, _ = await api.call("GET", "/api/v1/auth/me", str(first["token"]))
    assert status == 401
    status, _ = await api.call("GET", "/api/v1/auth/me", str(second["token"]))
    assert status == 200


async def test_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    await api.user("l1", "learner")
    status_a, body_a, _ = await _login(api, "l1", "wrong password")
    status_b, body_b, _ = await _login(api, "nobody", "wrong password")
    assert status_a == status_b == 401
    assert body_a == body_b == {"error": {"code": "invalid_credentials",
                                          "message": "The user name or password is wrong."}}


async def test_cookie_writes_need_the_csrf_header_and_bearer_writes_do_not(api: Api) -> None:
    await api.user("l1", "learner")
    status, body, cookies = await _login(api, "l1")
    assert status == 200
    request = {"url": "https://dns.google/", "reason": "revision quiz"}  # blocked: DoH
    # the client's cookie jar now carries the session cookie
    async with api.client.post("/api/v1/unblock-requests", json=request) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "csrf_failed"
    async with api.client.post("/api/v1/unblock-requests", json=request,
                               headers={"X-CSRF-Token": "0" * 64}) as resp:
        assert resp.status == 403
    csrf = cookies["esafety_csrf"].value
    async with api.client.post("/api/v1/unblock-requests", json=request,
                               headers={"X-CSRF-Token": csrf}) as resp:
        assert resp.status == 201
    async with api.client.get("/api/v1/unblock-requests") as resp:  # reads need no header
        assert resp.status == 200
    api.client.session.cookie_jar.clear()
    status, _ = await api.call("POST", "/api/v1/unblock-requests", str(body["token"]),
                               json={**request, "url": "https://cloudflare-dns.com/"})
    assert status == 201


async def test_logout_revokes_the_token_and_clears_cookies(api: Api) -> None:
    await api.user("s1", "staff")
    _, body, _ = await _login(api, "s1")
    api.client.session.cookie_jar.clear()
    token = str(body["token"])
    status, out = await api.call("POST", "/api/v1/auth/logout", token)
    assert status == 200 and out == {"signed_out": True}
    status, _ = await api.call("GET", "/api/v1/auth/me", token)
    assert status == 401


async def test_revoking_a_users_tokens_ends_all_their_sessions(api: Api) -> None:
    admin = await api.user("root", "admin")
    first = await api.user("l1", "learner")
    _, body, _ = await _login(api, "l1")
    api.client.session.cookie_jar.clear()
    status, out = await api.call("POST", "/api/v1/users/l1/revoke-tokens", admin)
    assert status == 200 and out["revoked"] == 2
    for token in (first, str(body["token"])):
        status, _ = await api.call("GET", "/api/v1/auth/me", token)
        assert status == 401


async def test_disabled_users_cannot_sign_in(api: Api) -> None:
    admin = await api.user("root", "admin")
    await api.user("l1", "learner")
    status, _ = await api.call("POST", "/api/v1/users/l1/disable", admin)
    assert status == 200
    status, _, _ = await _login(api, "l1")
    assert status == 401


async def _login_from(api: Api, address: str, name: str, password: str = PASSWORD
                      ) -> tuple[int, dict[str, str]]:
    """Sign in from another loopback address (a real socket bound to ``address``)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session, session.post(
            api.client.make_url(LOGIN), json={"username": name, "password": password}) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def test_login_is_locked_per_user_and_address_even_with_the_right_password(
        api: Api) -> None:
    await api.user("dsl1", "dsl")
    for _ in range(5):
        status, _, _ = await _login(api, "dsl1", "not the password")
        assert status == 401
    async with api.client.post(LOGIN, json={"username": "dsl1", "password": PASSWORD}) as resp:
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) > 0
        assert (await resp.json())["error"]["code"] == "too_many_attempts"
    # The learner who guessed locked only their own laptop: the DSL at another desk signs in.
    status, _ = await _login_from(api, "127.0.0.5", "dsl1")
    assert status == 200
    # ...and the lock at the guessing address stays (the other desk's success is its own pair).
    status, _, _ = await _login(api, "dsl1")
    assert status == 429
    await api.user("l2", "learner")  # another user from the same address is unaffected
    status, _, _ = await _login(api, "l2")
    assert status == 200


async def test_login_back_off_doubles_after_each_further_failure(make_api: ApiFactory) -> None:
    api = await make_api(login_limits=LoginLimits(per_pair=2, base_lock_seconds=1,
                                                  max_lock_seconds=4))
    await api.user("it1", "it_support")
    waits = []
    for round_ in range(4):
        while True:
            status, _, _ = await _login(api, "it1", "guess")
            if status == 429:
                break
            assert status == 401
        async with api.client.post(LOGIN, json={"username": "it1",
                                                "password": PASSWORD}) as resp:
            assert resp.status == 429, round_
            waits.append(int(resp.headers["Retry-After"]))
        await asyncio.sleep(waits[-1] + 0.2)
    assert waits == [1, 2, 4, 4]  # doubling, capped
    # A right password after the wait is accepted and forgets the failures.
    status, _, _ = await _login(api, "it1")
    assert status == 200
    status, _, _ = await _login(api, "it1", "guess")
    assert status == 401  # one failure again, not the old count: no lock
    status, _, _ = await _login(api, "it1")
    assert status == 200


async def test_a_success_clears_the_pairs_failures(api: Api) -> None:
    await api.user("s1", "staff")
    for _ in range(2):
        for _ in range(4):
            status, _, _ = await _login(api, "s1", "typo in it")
            assert status == 401
        status, _, _ = await _login(api, "s1")
        assert status == 200  # eight failures in all, but never five in a row


async def test_parallel_guesses_cannot_slip_past_the_limit(api: Api) -> None:
    await api.user("m1", "manager")
    statuses = await asyncio.gather(*(_login(api, "m1", f"guess {i}") for i in range(12)))
    assert sorted(s for s, _, _ in statuses) == [401] * 5 + [429] * 7
    status, _, _ = await _login(api, "m1")
    assert status == 429


async def test_login_is_rate_limited_per_address(make_api: ApiFactory) -> None:
    api = await make_api(login_limits=LoginLimits(per_pair=100, per_ip=3))
    await api.user("l1", "learner")
    for name in ("a", "b", "c"):
        status, _, _ = await _login(api, name, "guessing")
        assert status == 401
    async with api.client.post(LOGIN, json={"username": "l1", "password": PASSWORD}) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    status, _ = await _login_from(api, "127.0.0.5", "l1")  # spraying locks the sprayer only
    assert status == 200


async def test_errors_are_json_with_the_right_status(api: Api) -> None:
    admin = await api.user("root", "admin")
    cases = [
        ("GET", "/no/such/route", None, 404, "not_found"),
        ("GET", "/api/v1/alerts/999", None, 404, "not_found"),
        ("GET", "/api/v1/unblock-requests/12345", None, 404, "not_found"),
        ("GET", "/api/v1/users/nobody", None, 404, "not_found"),
        ("DELETE", "/api/v1/overrides/nothing-here", None, 404, "not_found"),
        ("PUT", "/api/v1/hits", None, 405, "method_not_allowed"),
        ("GET", "/api/v1/hits?from=yesterday", None, 400, "invalid_input"),
        ("GET", "/api/v1/hits?to=2026-13-45", None, 400, "invalid_input"),
        ("GET", "/api/v1/hits?from=2026-11-23&to=2026-11-01", None, 400, "invalid_input"),
        ("GET", "/api/v1/hits?limit=0", None, 400, "invalid_input"),
        ("GET", "/api/v1/hits?cursor=%%%", None, 400, "invalid_input"),
        ("GET", "/api/v1/hits?colour=red", None, 400, "invalid_input"),
        ("GET", "/api/v1/reports/summary?group_by=colour", None, 400, "invalid_input"),
        ("GET", "/api/v1/reports/quarterly?quarter=2026Q5", None, 400, "invalid_input"),
        ("GET", "/api/v1/audit?cursor=abc", None, 400, "invalid_input"),
        ("POST", "/api/v1/unblock-requests", b"{not json", 400, "bad_json"),
        ("POST", "/api/v1/unblock-requests", b"[1, 2]", 400, "bad_json"),
        ("POST", "/api/v1/unblock-requests", b'{"url": "x.example"}', 400, "invalid_input"),
        ("POST", "/api/v1/unblock-requests", b'{"url": 5, "reason": "r"}', 400, "invalid_input"),
        ("POST", "/api/v1/unblock-requests", b'{"url": "a b c", "reason": "r"}', 400,
         "invalid_input"),
        ("POST", "/api/v1/unblock-requests",
         b'{"url": "x.example", "reason": "r", "hit_id": "nope"}', 400, "invalid_input"),
        ("POST", "/api/v1/unblock-requests", b'{"url": "x.example", "reason": "r", "x": 1}',
         400, "invalid_input"),
        ("POST", "/api/v1/unblock-requests/1/approve", b'{"scope": "planet"}', 404,
         "not_found"),
        ("POST", "/api/v1/users", b'{"name": "bad name!"}', 400, "invalid_input"),
        ("POST", "/api/v1/overrides", b'{"target": "x.example", "scope": "user"}', 400,
         "invalid_input"),
        ("POST", "/api/v1/overrides",
         b'{"target": "x.example", "expires_at": "2001-01-01T00:00:00Z"}', 400,
         "invalid_input"),
    ]
    for method, path, data, status, code in cases:
        got, body = await api.call(method, path, admin, data=data,
                                   headers={"Content-Type": "application/json"} if data else {})
        assert (got, body["error"]["code"]) == (status, code), (method, path, body)
        assert set(body["error"]) <= {"code", "message", "field"}
        assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    status, body = await api.call("GET", "/api/v1/hits")
    assert status == 401 and body["error"]["code"] == "unauthorised"


async def test_oversized_bodies_are_refused(api: Api) -> None:
    learner = await api.user("l1", "learner")
    status, body = await api.call("POST", "/api/v1/accident-reports", learner,
                                  data=b'{"what_happened": "' + b"x" * 300_000 + b'"}',
                                  headers={"Content-Type": "application/json"})
    assert status == 413 and body["error"]["code"] == "body_too_large"


async def test_bodies_must_be_json(api: Api) -> None:
    learner = await api.user("l1", "learner")
    status, body = await api.call("POST", "/api/v1/accident-reports", learner,
                                  data=b"what_happened=oops", headers={
                                      "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"


async def test_security_headers_on_every_kind_of_response(api: Api) -> None:
    manager = await api.user("m1", "manager")
    for path, token in (("/healthz", None), ("/no/such", None), ("/api/v1/hits", None),
                        ("/api/v1/hits.csv", manager),
                        ("/api/v1/reports/quarterly?quarter=2026Q1", manager)):
        headers = api.auth(token) if token else {}
        async with api.client.get(path, headers=headers) as resp:
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"], path
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert resp.headers["X-Frame-Options"] == "DENY"
            await resp.read()


async def test_lone_surrogates_are_refused_not_stored(api: Api) -> None:
    learner = await api.user("l1", "learner")
    status, body = await api.call("POST", "/api/v1/accident-reports", learner,
                                  data=b'{"what_happened": "x", "url": "\\udbb3p"}',
                                  headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "bad_json"
    status, _ = await api.call("GET", "/api/v1/accident-reports", learner)
    assert status == 200
