"""The quarterly report's alerts, unblock requests and reports come from the store's
per-quarter figures, in the centre's calendar: the same numbers the records give, without
reading the records."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from admin_api.reports.quarterly import Quarter, render
from store.keys import Keys
from store.redis_store import Store
from store.unblock_requests import APPROVED, DENIED, OPEN, UnblockRequest

TZ = ZoneInfo("Europe/London")


async def test_quarter_figures_follow_the_centres_calendar(redis: aioredis.Redis,
                                                           keys: Keys) -> None:
    store = Store(redis, keys, tz=TZ)
    records = store.unblock_requests.records
    # 00:30 on 1 April in London (BST) is still 31 March in UTC: in the centre's Q2; 00:30
    # on 1 July is still 30 June in UTC: in its Q3
    inside = [datetime(2026, 4, 1, 0, 30, tzinfo=TZ).timestamp(),
              datetime(2026, 4, 2, 9, tzinfo=TZ).timestamp(),
              datetime(2026, 6, 30, 22, tzinfo=TZ).timestamp()]
    outside = [datetime(2026, 3, 31, 23, 59, tzinfo=TZ).timestamp(),
               datetime(2026, 7, 1, 0, 30, tzinfo=TZ).timestamp()]
    outcomes = [(APPROVED, 600.0, "user"), (DENIED, 3600.0, None), (OPEN, None, None)]
    for at, (status, after, scope) in zip(inside, outcomes, strict=True):
        request = UnblockRequest(id=await records.new_id(), user="l1", group="learner",
                                 url="http://a.example/", target="a.example", reasons=["x"],
                                 hit_id=None, status=status, created_at=at, updated_at=at,
                                 decided_at=at + after if after else None, scope=scope)
        await records.put(request)
    for at in outside:
        await records.put(UnblockRequest(id=await records.new_id(), user="l1", group="learner",
                                         url="http://a.example/", target="a.example",
                                         reasons=["x"], hit_id=None, status=OPEN,
                                         created_at=at, updated_at=at))
    html = await render(store, Quarter.parse("2026Q2"), TZ, "Centre One", {})
    assert ("3 requests were made. Median turnaround 35 minutes; 90% were decided within "
            "1.0 hours") in html
    for outcome, count in (("Approved", 1), ("Declined", 1), ("Pending", 1),
                           ("Approved, since expired", 0)):
        assert f'<th scope="row">{outcome}</th><td class="num">{count}</td>' in html
    assert '<th scope="row">For the person who asked</th><td class="num">1</td>' in html
    # an approval that later expires moves between outcomes, not out of the quarter
    approved = next(r for r in [await records.get(str(i)) for i in range(1, 4)]
                    if r is not None and r.status == APPROVED)
    await records.put(replace(approved, status="expired"))
    html = await render(store, Quarter.parse("2026Q2"), TZ, "Centre One", {})
    assert '<th scope="row">Approved, since expired</th><td class="num">1</td>' in html
    assert '<th scope="row">Approved</th><td class="num">0</td>' in html
