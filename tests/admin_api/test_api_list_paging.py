"""The list routes page through their index with an opaque cursor (``admin_api.routes.paging``):
every record once, newest first, filters applied, and a cursor this server never made refused."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from store.keys import Keys
from tests.harness.api import Api, ApiFactory, import_list


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


async def test_records_written_before_the_indexes_are_listed_after_the_admin_starts(
        make_api: ApiFactory, redis: aioredis.Redis, keys: Keys) -> None:
    """Records as the previous release stored them (JSON plus the creation index, nothing
    else) are indexed when the admin starts, and list, filter and count as new ones do."""
    now = time.time()
    for n, (user, status) in enumerate([("l1", "open"), ("l2", "denied"), ("l1", "open")], 1):
        record = {"id": str(n), "user": user, "group": "learner", "url": f"http://s{n}.example/",
                  "target": f"s{n}.example", "reasons": ["coursework"], "hit_id": None,
                  "status": status, "created_at": now - 100 + n, "updated_at": now - 100 + n,
                  "request_count": 1, "decided_at": None, "decided_by": None, "note": "",
                  "scope": None, "expires_at": None, "override_id": None, "hit_ids": [],
                  "turnaround_seconds": None}
        await redis.set(keys.unblock(str(n)), json.dumps(record))
        await redis.zadd(keys.unblock_index, {str(n): record["created_at"]})
    await redis.set(keys.sequence("unblock"), "3")
    api = await make_api()
    it = await api.user("it1", "it_support")
    status, body = await api.call("GET", "/api/v1/unblock-requests?status=open&user=l1", it)
    assert status == 200 and [r["id"] for r in body["items"]] == ["3", "1"]
    status, text = await api.call("GET", "/metrics")
    assert "esafety_unblock_requests_open 2" in text
