"""``/api/v1/hits`` and ``/api/v1/hits.csv``: the access log, from the SQLite log store.

Learners and staff see only their own hits. IT support, managers, the DSL and admins see
everyone's; only managers, the DSL and admins may export (see :mod:`admin_api.roles`), and
every export is audited. ``pseudonymise=true`` replaces user names, client addresses and
device ids with a keyed HMAC (see :mod:`admin_api.pseudonymiser`): a device id (a MAC
address, an install id, a host name) is personal data, so it goes wherever the name goes and
nowhere else.

Each hit says how the person was identified (``identified_by``: ``auth``, ``portal``,
``radius``, ``kerberos``, ``network``, ``unidentified``) and on which ``device`` where known;
the list can be filtered by ``device``. The list also gives each named user's
``display_name`` (from their account), so the access log reads "Sam Learner".
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from admin_api.context import AdminState, state_of
from admin_api.errors import bad_input
from admin_api.log_store import CursorError, HitQuery
from admin_api.roles import ANYONE_SIGNED_IN, EXPORTERS, HIT_READERS, current_user, requires, user_filter
from admin_api.routes import audit_trail
from admin_api.routes.http_input import (
    boolean,
    choice,
    page_limit,
    query_params,
    text,
    time_range,
)
from categories.urlnorm import URLError, canonical_host
from store.records import HitRecord

routes = web.RouteTableDef()
FILTERS = ("from", "to", "user", "group", "site", "host", "category", "action", "q", "device")
_NAME = re.compile(r"[A-Za-z0-9_.@:-]{1,64}")
_DEVICE = re.compile(r"[A-Za-z0-9_.:@/$-]{1,255}")
"""A device id: a MAC address, an install id, a host name or Kerberos principal."""
CSV_COLUMNS = [name for name in HitRecord.field_names() if name != "ts"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def hit_query(state: AdminState, request: web.Request, query: Mapping[str, str]) -> HitQuery:
    """The filters of a hits request; learners and staff are held to their own hits."""
    user = current_user(request)
    start, end = time_range(query, state.tz)
    wanted_user = text(query, "user", max_length=64, pattern=_NAME, what="a user name")
    wanted_user = user_filter(user, wanted_user, HIT_READERS, "hits")
    host = text(query, "host", max_length=253)
    if host is not None:
        try:
            host = canonical_host(host)
        except URLError as exc:
            raise bad_input(f"host is not a host name: {exc}", "host") from exc
    q = text(query, "q", max_length=200)
    return HitQuery(start_ts=start, end_ts=end, user=wanted_user,
                    group=text(query, "group", max_length=41, pattern=_NAME, what="a group name"),
                    site=text(query, "site", max_length=41, pattern=_NAME, what="a site id"),
                    host=host,
                    category=text(query, "category", max_length=41, pattern=_NAME,
                                  what="a category id"),
                    action=choice(query, "action", ("allow", "block")),
                    text=q.lower() if q else None,
                    device=text(query, "device", max_length=255, pattern=_DEVICE,
                                what="a device id (a MAC address, an install id or a host)"))


async def _with_display_names(state: AdminState, items: list[dict[str, Any]]) -> None:
    """Give each hit its user's display name (read once per user on the page)."""
    names: dict[str, str] = {}
    for name in {item["user"] for item in items if item["user"]}:
        record = await state.store.accounts.get(name)
        names[name] = record.display_name if record is not None else ""
    for item in items:
        item["display_name"] = names.get(item["user"], "")


@routes.get("/api/v1/hits")
@requires(ANYONE_SIGNED_IN)
async def list_hits(request: web.Request) -> web.Response:
    state = state_of(request)
    query = query_params(request, (*FILTERS, "cursor", "limit"))
    selection = hit_query(state, request, query)
    limit = page_limit(query)
    cursor = text(query, "cursor", max_length=100)
    try:
        items, next_cursor = await asyncio.to_thread(state.log_store.page, selection, cursor,
                                                     limit)
    except CursorError as exc:
        raise bad_input(str(exc), "cursor") from exc
    await _with_display_names(state, items)
    return web.json_response({"items": items, "next_cursor": next_cursor})


def _cell(value: Any) -> str:
    out = "1" if value is True else "0" if value is False else str(value)
    return "'" + out if out.startswith(_FORMULA_START) else out


@routes.get("/api/v1/hits.csv")
@requires(EXPORTERS)
async def export_hits(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = query_params(request, (*FILTERS, "pseudonymise"))
    selection = hit_query(state, request, query)
    pseudonymise = boolean(query, "pseudonymise")
    await audit_trail.record(request, "hits.export", "hits.csv",
                             after={"filters": dict(query), "pseudonymise": pseudonymise})
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="esafety-hits.csv"'})
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["time", *CSV_COLUMNS])
    chunks = state.log_store.iterate(selection)
    tz = state.tz
    pseudonymiser = state.pseudonymiser
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            break
        for hit in chunk:
            if pseudonymise:
                hit["user"] = pseudonymiser.user(hit["user"])
                hit["client_ip"] = pseudonymiser.address(hit["client_ip"])
                hit["device"] = pseudonymiser.device(hit["device"])
            when = datetime.fromtimestamp(hit["ts"], tz).isoformat(timespec="seconds")
            writer.writerow([when, *(_cell(hit.get(c, "")) for c in CSV_COLUMNS)])
        await response.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response
