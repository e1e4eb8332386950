"""``/api/v1/extension/*``: what the browser extension needs from the backend.

* ``GET /rules?since=VERSION``: the signed-in user's off-network rule set (see
  :mod:`admin_api.extension_rules`), or only what changed since ``VERSION``;
* ``GET /check?url=...``: the core's decision for the signed-in user, for hosts the rules do
  not cover and to explain a refused HTTPS tunnel (``recent=1`` adds the user's hit for that
  host, waiting briefly for the proxy to log it);
* ``POST /hits``: off-network blocks, written exactly once per batch id (see
  :mod:`admin_api.extension_hits`).

Everyone signed in may use them, and only ever for themselves: the user and group always
come from the bearer token, never from the request.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import web

from admin_api.context import AdminState, state_of
from admin_api.errors import bad_input
from admin_api.extension_hits import batch_id_of, reported_hits, to_hit_record
from admin_api.extension_rules import (
    CategoryHostsCache,
    RulesetHistory,
    build_ruleset,
    delta_payload,
)
from admin_api.request_input import boolean, json_body, query_params, required_text, text
from admin_api.roles import ANYONE_SIGNED_IN, current_user, requires
from categories.urlnorm import URLError, canonical_url
from store.hits import HitWriter, hit_from_entry
from store.records import HitRecord, UserRecord

routes = web.RouteTableDef()
CHECK_CACHE_SECONDS = 60
RECENT_HIT_SECONDS = 120
RECENT_HIT_WAIT_SECONDS = 3.0
_RECENT_SCAN = 2000
VERSION = re.compile(r"[0-9a-f]{20}")
_HOSTS = CategoryHostsCache()
_HISTORY = RulesetHistory()


@routes.get("/api/v1/extension/rules")
@requires(ANYONE_SIGNED_IN)
async def extension_rules(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    query = query_params(request, ("since",))
    since = text(query, "since", max_length=20, pattern=VERSION,
                 what="a version this server returned")
    policy = await state.policy.current(state.redis, state.keys)
    base = await asyncio.to_thread(state.policy.base)
    hosts = await asyncio.to_thread(_HOSTS.get, base)
    group = user.group or state.settings.config.unidentified_group
    ruleset = await asyncio.to_thread(build_ruleset, policy, hosts, user=user.name, group=group)
    body = await asyncio.to_thread(delta_payload, ruleset, since, _HISTORY)
    response = web.json_response(body, headers={"Cache-Control": "no-store"})
    response.enable_compression()
    return response


async def _recent_hit(state: AdminState, user: UserRecord, host: str) -> HitRecord | None:
    """The user's latest block for ``host`` in the last two minutes, from the hit stream."""
    since = time.time() - RECENT_HIT_SECONDS
    entries = await state.redis.xrevrange(state.keys.hits, count=_RECENT_SCAN)
    for _stream_id, fields in entries or []:
        hit = hit_from_entry(dict(fields or {}))
        if hit.ts < since:
            return None
        if hit.user == user.name and hit.host == host and hit.action == "block":
            return hit
    return None


@routes.get("/api/v1/extension/check")
@requires(ANYONE_SIGNED_IN)
async def extension_check(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    query = query_params(request, ("url", "recent"))
    url = required_text(query, "url", max_length=2000)
    if not url.startswith(("http://", "https://")):
        raise bad_input("url must start with http:// or https://", "url")
    try:
        canonical = canonical_url(url)
    except URLError as exc:
        raise bad_input(f"url cannot be read: {exc}", "url") from exc
    want_recent = boolean(query, "recent")
    decision = await state.policy.decide(state.redis, state.keys, url, user=user.name,
                                         group=user.group)
    body: dict[str, Any] = {
        "url": url, "host": canonical.host, "action": decision.action.value,
        "blocked": decision.blocked, "rule": decision.rule.value,
        "category": decision.category or "", "category_title": decision.category_title or "",
        "reason": decision.reason, "cache_seconds": CHECK_CACHE_SECONDS, "hit": None}
    if want_recent:
        deadline = time.monotonic() + RECENT_HIT_WAIT_SECONDS
        while True:
            hit = await _recent_hit(state, user, canonical.host)
            if hit is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if hit is not None:
            body["hit"] = {"id": hit.id, "ts": hit.ts, "category": hit.category,
                           "site": hit.site}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


@routes.post("/api/v1/extension/hits")
@requires(ANYONE_SIGNED_IN)
async def extension_hits(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    body = await json_body(request, ("batch_id", "hits"))
    batch_id = batch_id_of(body)
    hits = reported_hits(body)
    policy = await state.policy.current(state.redis, state.keys)
    records = [to_hit_record(hit, user, policy, state.tz) for hit in hits]
    config = state.settings.config
    writer = HitWriter(state.redis, state.keys, hits_days=config.retention_hits_days,
                       counters_days=config.retention_counters_days)
    # The marker is per user, so nobody can use up another user's batch ids.
    written = await writer.write_batch(f"ext-{user.name}-{batch_id}", records)
    return web.json_response({"batch_id": batch_id, "written": written,
                              "duplicate": written == 0,
                              "hit_ids": [hit.id for hit in hits]})
