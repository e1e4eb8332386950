"""Filtered, cursor-paged lists of indexed records: how the alerts, accident reports and
unblock requests list routes read their query and answer a page.

A list route names its query parameters; this module reads the common ones (``from``, ``to``,
``limit``, ``cursor``) and answers ``{"items": [...], "next_cursor": ...}`` from one indexed
read (:meth:`store.indexed_collection.IndexedCollection.page`): the cost follows the page,
not the number of records stored. ``next_cursor`` is opaque; it is null on the last page.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from admin_api.context import state_of
from admin_api.errors import bad_input
from admin_api.routes.http_input import page_limit, query_params, text, time_range
from store.indexed_collection import IndexedCollection, PageCursor, StoredRecord

R = TypeVar("R", bound=StoredRecord)
PAGING = ("from", "to", "limit", "cursor")


@dataclass(frozen=True)
class ListQuery:
    query: Mapping[str, str]
    """Every query parameter (for the route's own filters)."""
    start: float | None
    end: float | None
    limit: int
    cursor: PageCursor | None


def page_cursor(query: Mapping[str, str]) -> PageCursor | None:
    value = text(query, "cursor", max_length=60)
    if value is None:
        return None
    try:
        return PageCursor.parse(value)
    except ValueError as exc:
        raise bad_input("cursor is not one this server returned", "cursor") from exc


def list_query(request: web.Request, filters: Collection[str]) -> ListQuery:
    """The query of a list request: the route's ``filters`` plus the period and paging ones
    (unknown or repeated parameters are refused)."""
    query = query_params(request, (*filters, *PAGING))
    start, end = time_range(query, state_of(request).tz)
    return ListQuery(query, start, end, page_limit(query), page_cursor(query))


async def page_response(records: IndexedCollection[R], listing: ListQuery, *,
                        equal: Mapping[str, str | None], shown: Callable[[R], dict[str, Any]],
                        keep: Callable[[R], bool] | None = None,
                        period_is_creation: bool = True) -> web.Response:
    """One page of ``records`` matching ``equal`` (and ``keep``), newest first. The period
    (``from``/``to``) bounds the creation time unless ``period_is_creation`` is false (the
    route's ``keep`` then applies it)."""
    page = await records.page(
        equal=equal, keep=keep, cursor=listing.cursor, limit=listing.limit,
        created_from=listing.start if period_is_creation else None,
        created_before=listing.end if period_is_creation else None)
    return web.json_response({"items": [shown(r) for r in page.items],
                              "next_cursor": str(page.next_cursor) if page.next_cursor else None})
