"""The list routes page through their index with an opaque cursor (``admin_api.routes.paging``):
every record once, newest first, filters applied, and a cursor this server never made refused."""

from __future__ import annotations

from typing import Any

from tests.harness.api import Api, import_list


async def _walk(api: Api, token: str, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        status, body = await api.call("GET", path + (f"&cursor={cursor}" if cursor else ""), token)
        assert status == 200, body
        assert len(body["items"]) <= 3
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_unblock_requests_page_with_a_cursor(api: Api) -> None:
    it = await api.user("it1", "it_support")
    learners = [await api.user(f"l{i}", "learner") for i in range(2)]
    sites = [f"casino{i}.example" for i in range(4)]
    import_list(api, "gambling", sites)
    filed = []
    for site in sites:
        for token in learners:
            status, body = await api.call("POST", "/api/v1/unblock-requests", token,
                                          json={"url": site, "reason": "project"})
            assert status == 201, body
            filed.append(body["id"])
    newest_first = list(reversed(filed))
    assert [r["id"] for r in await _walk(api, it, "/api/v1/unblock-requests?limit=3")] \
        == newest_first
    mine = await _walk(api, it, "/api/v1/unblock-requests?limit=3&user=l1&status=open")
    assert [r["id"] for r in mine] == newest_first[0::2] and {r["user"] for r in mine} == {"l1"}
    site = await _walk(api, it, "/api/v1/unblock-requests?limit=3&site=casino2.example")
    assert {r["target"] for r in site} == {"casino2.example"} and len(site) == 2
    own = await _walk(api, learners[0], "/api/v1/unblock-requests?limit=3")
    assert {r["user"] for r in own} == {"l0"} and len(own) == 4
    for cursor in ("abc", "7", "1_1234567890", "nan_0"):
        status, body = await api.call("GET", f"/api/v1/unblock-requests?cursor={cursor}", it)
        assert status == 400 and body["error"]["field"] == "cursor", body
