"""``/api/v1/categories`` (with list sources) and ``/api/v1/check`` (the same decision as
``esafety check``, including live overrides)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from admin_api.context import state_of
from admin_api.roles import POLICY_READERS, requires
from admin_api.routes.http_input import optional_time, query_params, required_text, text

routes = web.RouteTableDef()


def _imported(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


@routes.get("/api/v1/categories")
@requires(POLICY_READERS)
async def list_categories(request: web.Request) -> web.Response:
    state = state_of(request)
    query_params(request, ())
    store = state.settings.instance.list_store
    sources = await asyncio.to_thread(store.sources)
    base = await asyncio.to_thread(state.policy.base)
    per_list: dict[str, list[dict[str, Any]]] = {}
    for manifest in sources:
        for item in manifest.get("lists", []):
            per_list.setdefault(item.get("name", ""), []).append({
                "source": manifest.get("source"), "file": item.get("file"),
                "entries": item.get("entries", 0),
                "imported_at": _imported(manifest.get("imported_at"))})
    rows = []
    for category in base.categories.values():
        lists: list[dict[str, Any]] = [{"list": name, "sources": per_list.get(name, [])}
                                       for name in category.lists]
        rows.append({
            "id": category.id, "title": category.title, "description": category.description,
            "kind": category.kind.value, "severity": category.severity.value,
            "uksic": category.uksic, "safeguarding_alert": category.safeguarding_alert,
            "overridable": category.overridable, "illegal": category.illegal,
            "curated_entries": len(category.entries),
            "list_entries": sum(s["entries"] for item in lists for s in item["sources"]),
            "lists": lists})
    return web.json_response({
        "snapshot_version": base.snapshot_version,
        "policy_version": await state.store.policy.version(),
        "sources": [{"source": m.get("source"), "origin": m.get("origin"),
                     "imported_at": _imported(m.get("imported_at")),
                     "entries": sum(i.get("entries", 0) for i in m.get("lists", []))}
                    for m in sources],
        "categories": rows})


@routes.get("/api/v1/check")
@requires(POLICY_READERS)
async def check(request: web.Request) -> web.Response:
    state = state_of(request)
    query = query_params(request, ("url", "user", "group", "at"))
    url = required_text(query, "url", max_length=4000)
    user = text(query, "user", max_length=64)
    group = text(query, "group", max_length=41)
    at_ts = optional_time(query, "at", state.tz)
    at = datetime.fromtimestamp(at_ts, UTC) if at_ts is not None else None
    decision = await state.policy.decide(url, user=user, group=group, at=at)
    return web.json_response({"url": url, **decision.to_dict(),
                              "explanation": decision.explain()})
