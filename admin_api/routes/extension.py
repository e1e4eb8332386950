"""``/api/v1/extension/*``: what the browser extension needs from the backend.

* ``GET /rules?since=VERSION``: the signed-in user's off-network rule set (see
  :mod:`admin_api.extension_rules`), or only what changed since ``VERSION``;
* ``GET /check?url=...``: the core's decision for the signed-in user, for hosts the rules do
  not cover and to explain a refused HTTPS tunnel (``recent=1`` adds the user's hit for that
  host, waiting briefly for the proxy to log it);
* ``POST /hits``: off-network blocks, written exactly once per batch id, each with the
  navigation token the install minted with its hit key (see :mod:`admin_api.extension_hits`);
* ``POST /devices``: register this install at sign-in: a refresh token (so the sign-in
  survives a browser restart), the hit key and the public probe key;
* ``DELETE /devices/current``: sign this install out (its refresh token stops working);
* ``POST /session``: a new bearer token for a registered install (public: the refresh token
  and the device id are the credentials);
* ``GET /unsigned-rules``: the strictest profile's rules, for a browser nobody has signed in
  to (public: it names nobody and holds only what the filter blocks for everyone).

The signed-in routes serve only the caller: the user and group always come from the bearer
token, never from the request.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from functools import partial
from typing import Any

from aiohttp import web

from admin_api.context import TOKEN, AdminState, state_of
from admin_api.errors import ApiError, bad_input
from admin_api.extension_hits import (
    batch_id_of,
    device_id_of,
    reported_hits,
    to_hit_record,
    unsigned_hits,
)
from admin_api.extension_rules import (
    CategoryHostsCache,
    RulesetHistory,
    build_ruleset,
    delta_payload,
)
from admin_api.roles import ANYONE_SIGNED_IN, current_user, requires
from admin_api.routes.http_input import boolean, json_body, query_params, required_text, text
from categories.urlnorm import URLError, canonical_url
from store.accounts import TOKEN_TTL_SECONDS, token_digest
from store.extension_devices import DEVICE_ID
from store.extension_devices import PUBLIC_KEY as DEVICE_PUBLIC_KEY
from store.probe_key import load_or_create_probe_key, public_probe_key
from store.records import HitRecord, UserRecord

routes = web.RouteTableDef()
CHECK_CACHE_SECONDS = 60
RECENT_HIT_SECONDS = 120
RECENT_HIT_WAIT_SECONDS = 3.0
_RECENT_SCAN = 2000
VERSION = re.compile(r"[0-9a-f]{20}")
_HOSTS = CategoryHostsCache()
_HISTORY = RulesetHistory()
SESSION_TTL_SECONDS = 12 * 3600
OFFNETWORK_UNSIGNED = ("block_prohibited", "block_all")
"""What the extension does off the centre network when nobody valid is signed in:
``block_prohibited`` (default) blocks what the strictest profile blocks; ``block_all`` also
sends every other page load to the sign-in page."""


UNSIGNED_CACHE_SECONDS = 30
"""The public unsigned-rules answer is built at most this often per policy and ``since``:
nobody can make the server rebuild a 200,000-domain set on every request."""
_UNSIGNED: weakref.WeakKeyDictionary[
    Any, dict[tuple[str, str | None], tuple[float, dict[str, Any]]]] = weakref.WeakKeyDictionary()
"""Per loaded base policy: (policy version, since) -> (good until, body)."""


def offnetwork_unsigned(state: AdminState) -> str:
    """The config's ``extension.offnetwork_unsigned`` (validated there)."""
    value = state.settings.config.offnetwork_unsigned
    return value if value in OFFNETWORK_UNSIGNED else "block_prohibited"


@routes.get("/api/v1/extension/rules")
@requires(ANYONE_SIGNED_IN)
async def extension_rules(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    query = query_params(request, ("since",))
    since = text(query, "since", max_length=20, pattern=VERSION,
                 what="a version this server returned")
    policy = await state.policy.current()
    base = await asyncio.to_thread(state.policy.base)
    hosts = await asyncio.to_thread(_HOSTS.get, base)
    group = user.group or state.settings.config.unidentified_group
    ruleset = await asyncio.to_thread(partial(build_ruleset, policy, hosts.hosts, user=user.name,
                                              group=group, prefixes=hosts.prefixes))
    body = await asyncio.to_thread(delta_payload, ruleset, since, _HISTORY)
    body["signed_in"] = True
    response = web.json_response(body, headers={"Cache-Control": "no-store"})
    response.enable_compression()
    return response


@routes.get("/api/v1/extension/unsigned-rules")
async def extension_unsigned_rules(request: web.Request) -> web.Response:
    state = state_of(request)
    query = query_params(request, ("since",))
    since = text(query, "since", max_length=20, pattern=VERSION,
                 what="a version this server returned")
    base = await asyncio.to_thread(state.policy.base)
    version = str(await state.store.policy.version())
    answers = _UNSIGNED.setdefault(base, {})
    cached = answers.get((version, since))
    if cached is not None and cached[0] > time.monotonic():
        body = cached[1]
    else:
        policy = await state.policy.current()
        hosts = await asyncio.to_thread(_HOSTS.get, base)
        group = state.settings.config.unidentified_group
        ruleset = await asyncio.to_thread(partial(build_ruleset, policy, hosts.hosts, user="",
                                                  group=group, prefixes=hosts.prefixes))
        body = await asyncio.to_thread(delta_payload, ruleset, since, _HISTORY)
        if len(answers) > 64:
            answers.clear()
        answers[(version, since)] = (time.monotonic() + UNSIGNED_CACHE_SECONDS, body)
    body = dict(body)
    body["signed_in"] = False
    body["offnetwork_unsigned"] = offnetwork_unsigned(state)
    body["probe_key"] = await asyncio.to_thread(_probe_key, state)
    response = web.json_response(body, headers={"Cache-Control": "no-store"})
    response.enable_compression()
    return response


def _probe_key(state: AdminState) -> str:
    """The public probe key, hex (never the private one the proxy signs with)."""
    try:
        return public_probe_key(load_or_create_probe_key(state.settings.data_dir)).hex()
    except (OSError, ValueError):
        return ""  # the extension then treats every network as off-network (fails closed)


@routes.post("/api/v1/extension/devices")
@requires(ANYONE_SIGNED_IN)
async def extension_register_device(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    body = await json_body(request, ("device_id", "public_key", "managed_device_id"))
    device_id = device_id_of(body)
    managed = body.get("managed_device_id", "")
    if not isinstance(managed, str) or (managed and not DEVICE_ID.fullmatch(managed)):
        raise bad_input("managed_device_id must be the ChromeOS device id (16-64 letters, "
                        "digits, - or _)", "managed_device_id")
    public_key = body.get("public_key")
    if not isinstance(public_key, str) or not DEVICE_PUBLIC_KEY.fullmatch(public_key):
        raise bad_input("public_key must be this install's P-256 key (130 hex characters)",
                        "public_key")
    try:
        grant = await state.store.devices.register(user.name, device_id, public_key, managed)
    except ValueError as exc:
        raise bad_input(f"public_key cannot be used: {exc}", "public_key") from exc
    # The token this install signed in with names it to the proxy (the device in its hits).
    await state.store.devices.bind_token(managed or grant.device_id,
                                         token_digest(request[TOKEN]), TOKEN_TTL_SECONDS)
    probe_key = await asyncio.to_thread(_probe_key, state)
    return web.json_response({
        "device_id": grant.device_id, "refresh_token": grant.refresh_token,
        "hit_key": grant.hit_key.hex(), "probe_key": probe_key,
        "centre": state.settings.config.centre_id,
        "offnetwork_unsigned": offnetwork_unsigned(state)},
        status=201, headers={"Cache-Control": "no-store"})


@routes.delete("/api/v1/extension/devices/current")
@requires(ANYONE_SIGNED_IN)
async def extension_forget_device(request: web.Request) -> web.Response:
    state = state_of(request)
    device_id = request.headers.get("X-Esafety-Device", "")
    if await state.store.devices.user_of(device_id) != current_user(request).name:
        raise ApiError(404, "not_found", "This install is not signed in as you.")
    await state.store.devices.revoke(device_id)
    await state.store.accounts.revoke_token(request[TOKEN])
    return web.json_response({"signed_out": True})


@routes.post("/api/v1/extension/session")
async def extension_session(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await json_body(request, ("device_id", "refresh_token", "ts", "sig"))
    device_id = device_id_of(body)
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not 1 <= len(refresh) <= 200:
        raise bad_input("refresh_token must be the token this server gave out", "refresh_token")
    ts, sig = body.get("ts"), body.get("sig")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise bad_input("ts must be the proof's time in epoch seconds", "ts")
    if not isinstance(sig, str) or len(sig) > 200:
        raise bad_input("sig must be the install's signature", "sig")
    name = await state.store.devices.user_for_refresh(device_id, refresh, ts, sig)
    user = await state.store.accounts.get(name) if name else None
    if user is None or user.disabled:
        if name:
            await state.store.devices.revoke(device_id)
        raise ApiError(401, "unauthorised", "This browser's sign-in has ended; sign in again.")
    token = await state.store.accounts.issue_token(user.name, ttl=SESSION_TTL_SECONDS)
    await state.store.devices.bind_token(await state.store.devices.shown_device(device_id),
                                         token_digest(token), SESSION_TTL_SECONDS)
    return web.json_response({
        "token": token, "expires_in": SESSION_TTL_SECONDS,
        "user": {"name": user.name, "role": user.role, "group": user.group,
                 "display_name": user.display_name}},
        headers={"Cache-Control": "no-store"})


async def _recent_hit(state: AdminState, user: UserRecord, host: str) -> HitRecord | None:
    """The user's latest block for ``host`` in the last two minutes, from the hit stream."""
    since = time.time() - RECENT_HIT_SECONDS
    for hit in await state.store.hits.newest(_RECENT_SCAN):
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
    decision = await state.policy.decide(url, user=user.name, group=user.group)
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
    body = await json_body(request, ("batch_id", "device_id", "hits"))
    batch_id = batch_id_of(body)
    device_id = device_id_of(body)
    hits = reported_hits(body)
    hit_key = await state.store.devices.hit_key_for(device_id, user.name)
    if hit_key is None:
        raise ApiError(403, "unknown_device", "This install is not signed in as you; hits are "
                       "accepted only from the install that blocked them.")
    forged = unsigned_hits(hits, hit_key)
    if forged:
        raise bad_input(f"hit {forged[0]} has no valid navigation token from this install",
                        "hits")
    policy = await state.policy.current()
    records = [to_hit_record(hit, user, policy, state.tz) for hit in hits]
    config = state.settings.config
    writer = state.store.hits.writer(hits_days=config.retention_hits_days,
                                     counters_days=config.retention_counters_days)
    # The marker is per user, so nobody can use up another user's batch ids.
    written = await writer.write_batch(f"ext-{user.name}-{batch_id}", records)
    return web.json_response({"batch_id": batch_id, "written": written,
                              "duplicate": written == 0,
                              "hit_ids": [hit.id for hit in hits]})
