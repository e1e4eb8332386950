"""``/api/v1/audit``: read the append-only audit log (managers and admins).

There is deliberately no route that changes or deletes audit entries.
"""

from __future__ import annotations

import re

from aiohttp import web

from admin_api.context import state_of
from admin_api.roles import AUDIT_READERS, requires
from admin_api.routes.http_input import page_limit, query_params, text, time_range

routes = web.RouteTableDef()
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_ACTION = re.compile(r"[a-z_]{1,30}\.[a-z_]{1,30}")


@routes.get("/api/v1/audit")
@requires(AUDIT_READERS)
async def read_audit(request: web.Request) -> web.Response:
    state = state_of(request)
    query = query_params(request, ("from", "to", "actor", "action", "cursor", "limit"))
    start, end = time_range(query, state.tz)
    actor = text(query, "actor", max_length=64)
    action = text(query, "action", max_length=61, pattern=_ACTION, what="like unblock.approve")
    cursor = text(query, "cursor", max_length=41, pattern=_STREAM_ID, what="a returned cursor")
    entries, next_cursor = await state.store.audit.read(
        start_ms=int(start * 1000) if start is not None else None,
        end_ms=int(end * 1000) - 1 if end is not None else None, actor=actor, action=action,
        cursor=cursor, limit=page_limit(query))
    return web.json_response({"items": [e.to_dict() for e in entries],
                              "next_cursor": next_cursor})
