"""The Store's workflow records on a real Redis: indexes kept with every write, cursor pages
whose cost follows the page, quarterly figures without loading records, and records written
by an older release (no indexes) made readable and indexed once."""

from __future__ import annotations

import json
import statistics
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from categories.overrides import Override, OverrideScope
from store import indexed_collection
from store.indexed_collection import INDEXED_MARK, PageCursor, quarter_of
from store.keys import Keys
from store.records import HitRecord
from store.redis_store import Store
from store.unblock_requests import APPROVED, DENIED, OPEN, UnblockRequest

TZ = ZoneInfo("Europe/London")
T0 = 1_780_000_000.0  # 2026-05-28, in 2026Q2


class CountingRedis(aioredis.Redis):
    """A client that remembers every command it sends (pipelines aside)."""

    commands: list[tuple[Any, ...]]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(args)
        return await super().execute_command(*args, **options)


@pytest.fixture
async def counting(redis_url: str, redis: aioredis.Redis) -> AsyncIterator[CountingRedis]:
    client = CountingRedis.from_url(redis_url, decode_responses=True)
    client.commands = []
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def store(counting: CountingRedis, keys: Keys) -> Store:
    return Store(counting, keys, tz=TZ)


async def _request(store: Store, user: str, target: str, at: float) -> UnblockRequest:
    records = store.unblock_requests.records
    request = UnblockRequest(id=await records.new_id(), user=user, group="learner",
                             url=f"http://{target}/", target=target, reasons=["project"],
                             hit_id=None, status=OPEN, created_at=at, updated_at=at)
    return await records.put(request)


async def _members(redis: aioredis.Redis, key: str) -> set[str]:
    return set(await redis.zrange(key, 0, -1))


async def test_indexes_follow_create_merge_and_status_change(store: Store, keys: Keys,
                                                             redis: aioredis.Redis) -> None:
    requests = store.unblock_requests
    first, merged = await requests.create_or_merge(user="ada", group="learner",
                                                   url="http://games.example/", target="games.example",
                                                   reason="project", hit_id=None)
    assert not merged
    again, merged = await requests.create_or_merge(user="ada", group="learner",
                                                   url="http://games.example/x",
                                                   target="games.example", reason="still",
                                                   hit_id=None)
    assert merged and again.id == first.id and again.request_count == 2
    other, _ = await requests.create_or_merge(user="bob", group="learner",
                                              url="http://games.example/", target="games.example",
                                              reason="me too", hit_id=None)
    index = requests.records.index_key
    assert await _members(redis, index("status", OPEN)) == {first.id, other.id}
    assert await _members(redis, index("user", "ada")) == {first.id}
    assert await _members(redis, index("target", "games.example")) == {first.id, other.id}
    assert await _members(redis, keys.unblock_index) == {first.id, other.id}
    quarter = quarter_of(first.created_at, TZ)
    assert await requests.records.figures(quarter) == {"total": 2, "status:open": 2}

    decided = replace(again, status=APPROVED, decided_at=again.created_at + 90,
                      decided_by="it1", scope="user")
    await requests.save_decision(decided)
    assert await _members(redis, index("status", OPEN)) == {other.id}
    assert await _members(redis, index("status", APPROVED)) == {first.id}
    assert await redis.get(keys.unblock_open("ada", "games.example")) is None
    assert await redis.get(keys.unblock_open("bob", "games.example")) == other.id
    assert await requests.records.figures(quarter) == {
        "total": 2, "status:open": 1, "status:approved": 1, "scope:user": 1}
    assert (await requests.records.durations(quarter)).median == pytest.approx(90, abs=0.01)
    assert await requests.count_open() == 1
    assert [r.id for r in await requests.for_target("games.example")] == [other.id, first.id]

    # writing the same state again changes no count
    await requests.save_decision(decided)
    assert (await requests.records.figures(quarter))["status:approved"] == 1


async def test_alert_grouping_keeps_the_figures(store: Store, keys: Keys) -> None:
    def hit(n: int) -> HitRecord:
        return HitRecord(id=f"20260528-AAAAAAA{n}", ts=T0 + n, user="ada", group="learner",
                         client_ip="10.0.0.5", site="main", host=f"h{n}.example",
                         path="/", action="block", category="extremism", rule="category",
                         source="ut1/extremism/domains", severity="critical", alert=True,
                         decrypted=False, method="GET")

    alerts = store.alerts
    alert, new = await alerts.record_hit(hit(1), 900)
    assert new
    for n in (2, 3, 3):  # the repeated hit is counted once
        alert, new = await alerts.record_hit(hit(n), 900)
        assert not new
    assert alert.count == 3
    quarter = quarter_of(alert.created_at, TZ)
    assert await alerts.records.figures(quarter) == {
        "total": 1, "status:open": 1, "category:extremism": 1, "hits:extremism": 3}
    assert await alerts.count_open() == 1
    await alerts.acknowledge(alert, "dsl1", "spoke to them")
    figures = await alerts.records.figures(quarter)
    assert figures["status:acknowledged"] == 1 and figures["acknowledged:extremism"] == 1
    assert "status:open" not in figures and await alerts.count_open() == 0
    assert (await alerts.records.durations(quarter)).count == 1
    page = await alerts.records.page(equal={"status": "acknowledged", "category": "extremism"})
    assert [a.id for a in page.items] == [alert.id] and page.next_cursor is None


async def test_pages_walk_every_record_once_with_a_cursor(store: Store) -> None:
    # 23 records, several with exactly the same creation time (the cursor's hard case)
    times = [T0 + (i // 4) for i in range(23)]
    made = [await _request(store, "ada" if i % 3 else "bob", f"s{i}.example", at)
            for i, at in enumerate(times)]
    expected = [r.id for r in sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)]

    async def walk(limit: int, **query: Any) -> list[str]:
        seen: list[str] = []
        cursor: PageCursor | None = None
        while True:
            page = await store.unblock_requests.records.page(cursor=cursor, limit=limit, **query)
            assert len(page.items) <= limit
            seen += [r.id for r in page.items]
            if page.next_cursor is None:
                return seen
            cursor = PageCursor.parse(str(page.next_cursor))

    for limit in (1, 4, 5, 22, 23, 50):
        assert await walk(limit) == expected
    ada = [i for i in expected if next(r for r in made if r.id == i).user == "ada"]
    assert await walk(3, equal={"user": "ada"}) == ada
    assert await walk(3, equal={"user": "ada", "status": OPEN}) == ada
    assert await walk(2, equal={"status": DENIED}) == []
    window = [r.id for r in made if T0 + 1 <= r.created_at < T0 + 3]
    assert sorted(await walk(3, created_from=T0 + 1, created_before=T0 + 3)) == sorted(window)


async def test_a_page_costs_the_same_over_many_records(store: Store, counting: CountingRedis,
                                                       redis: aioredis.Redis, keys: Keys) -> None:
    """No load-everything scan and no cap: a page reads one index range and its own records,
    however many are stored (600 here; the cost would be the same with millions)."""
    async def cost_of_first_page(limit: int, **query: Any) -> tuple[int, int, int]:
        counting.commands.clear()
        page = await store.unblock_requests.records.page(limit=limit, **query)
        assert len(page.items) == limit and page.next_cursor is not None
        read = sum(len(c) - 1 for c in counting.commands if c[0] == "MGET")
        return len(counting.commands), read, page.scanned

    await _bulk_old_records(redis, keys, 60)
    await store.build_indexes()
    small = await cost_of_first_page(10)
    small_open = await cost_of_first_page(10, equal={"status": OPEN})
    await _bulk_old_records(redis, keys, 600, first_id=1000)
    await redis.delete(keys.record_index_format("unblock"))
    await store.build_indexes()
    assert await cost_of_first_page(10) == small == (2, 11, 10)
    assert await cost_of_first_page(10, equal={"status": OPEN}) == small_open
    assert await store.unblock_requests.records.count() == 660


async def _bulk_old_records(redis: aioredis.Redis, keys: Keys, count: int, first_id: int = 1
                            ) -> list[dict[str, Any]]:
    """Records exactly as the previous release wrote them: JSON and the creation index only."""
    rows = []
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(first_id, first_id + count):
            data = {"id": str(n), "user": f"u{n % 7}", "group": "learner",
                    "url": f"http://s{n}.example/", "target": f"s{n}.example",
                    "reasons": ["why"], "hit_id": None, "status": "open" if n % 2 else "denied",
                    "created_at": T0 + n, "updated_at": T0 + n, "request_count": 1,
                    "decided_at": None if n % 2 else T0 + n + 60, "decided_by": None,
                    "note": "", "scope": None, "expires_at": None, "override_id": None,
                    "hit_ids": [], "turnaround_seconds": None if n % 2 else 60.0}
            pipe.set(keys.unblock(str(n)), json.dumps(data))
            pipe.zadd(keys.unblock_index, {str(n): data["created_at"]})
            rows.append(data)
        await pipe.execute()
    return rows


async def test_records_from_the_previous_release_are_read_and_indexed_once(
        store: Store, redis: aioredis.Redis, keys: Keys) -> None:
    rows = await _bulk_old_records(redis, keys, 9)
    records = store.unblock_requests.records
    old = await records.get("3")
    assert old is not None and old.user == "u3" and old.status == "open"
    # before the build, a write to an unindexed record counts it once, not twice
    await store.unblock_requests.save_decision(replace(old, status=DENIED, decided_at=T0 + 99))
    built = await store.build_indexes()
    assert built["unblock_requests"] == 8
    assert await store.build_indexes() == {"unblock_requests": 0, "accident_reports": 0,
                                           "alerts": 0}
    for row in rows:
        assert json.loads(await redis.get(keys.unblock(row["id"])))[INDEXED_MARK]
    quarter = quarter_of(T0, TZ)
    assert await records.figures(quarter) == {"total": 9, "status:open": 4, "status:denied": 5}
    page = await records.page(equal={"status": OPEN}, limit=50)
    assert [r.id for r in page.items] == ["9", "7", "5", "1"]
    assert (await records.durations(quarter)).count == 5


async def test_retention_takes_records_out_of_indexes_but_not_out_of_the_figures(
        store: Store, redis: aioredis.Redis) -> None:
    """The quarterly report still counts requests housekeeping has deleted."""
    made = [await _request(store, "ada", f"s{i}.example", T0 + i) for i in range(5)]
    records = store.unblock_requests.records
    assert await records.delete_older_than(T0 + 3) == 3
    assert await _members(redis, records.index_key("user", "ada")) == {r.id for r in made[3:]}
    assert await records.figures(quarter_of(T0, TZ)) == {"total": 5, "status:open": 5}
    assert await records.get(made[0].id) is None


async def test_durations_match_the_statistics_they_replace(store: Store) -> None:
    records = store.unblock_requests.records
    turnarounds = [5.0, 60.0, 61.0, 3600.0, 7.5, 90.0, 120.0, 30.0]
    for i, seconds in enumerate(turnarounds):
        request = await _request(store, "ada", f"s{i}.example", T0 + i)
        await records.put(replace(request, status=APPROVED, decided_at=request.created_at + seconds))
    figures = await records.durations(quarter_of(T0, TZ))
    ordered = sorted(turnarounds)
    assert figures.count == len(turnarounds)
    assert figures.median == pytest.approx(statistics.median(turnarounds), abs=0.01)
    assert figures.p90 == pytest.approx(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
                                        abs=0.01)


async def test_live_policy_reads_overrides_only_when_the_version_moves(
        store: Store, counting: CountingRedis) -> None:
    first = await store.policy.state()
    assert first.version == 0 and first.overrides == ()
    override = Override(id="ovr-1", target="games.example", action="allow",
                        scope=OverrideScope.EVERYONE, subject=None, expires_at=None,
                        created_by="it1", created_at=T0, note="")
    version = await store.policy.save_override(override)
    changed = await store.policy.state()
    assert changed.version == version == 1 and [o.id for o in changed.overrides] == ["ovr-1"]
    counting.commands.clear()
    assert await store.policy.state() is changed
    assert [c[0] for c in counting.commands] == ["GET"]
    await store.policy.delete_override("ovr-1")
    assert (await store.policy.state()).overrides == ()


@pytest.mark.parametrize("score", [T0, T0 + 0.123456, 5e-05, 1.5e17, 0.0, -3.25])
def test_cursors_round_trip(score: float) -> None:
    cursor = PageCursor(score, 7)
    assert PageCursor.parse(str(cursor)) == cursor


@pytest.mark.parametrize("text", ["", "12", "abc_1", "inf_0", "nan_0", "1_", "_1", "1_-1",
                                  "1_1234567890", "1.5_2_3", "١_٢", "1 _2"])
def test_cursors_this_server_never_made_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        PageCursor.parse(text)


async def test_changed_since_answers_none_until_the_policy_moves(store: Store) -> None:
    assert await store.policy.changed_since(0) is None
    version = await store.policy.bump_version()
    state = await store.policy.changed_since(0)
    assert state is not None and state.version == version
    assert await store.policy.changed_since(version) is None


async def test_the_build_reaches_every_record_across_chunks_of_equal_times(
        store: Store, redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexed_collection, "BUILD_CHUNK", 4)
    rows = await _bulk_old_records(redis, keys, 15)
    async with redis.pipeline(transaction=False) as pipe:
        for row in rows[:11]:  # 11 records created in the same instant, then 4 later ones
            pipe.set(keys.unblock(row["id"]), json.dumps({**row, "created_at": T0}))
            pipe.zadd(keys.unblock_index, {row["id"]: T0})
        await pipe.execute()
    assert (await store.build_indexes())["unblock_requests"] == 15
    for row in rows:
        assert json.loads(await redis.get(keys.unblock(row["id"])))[INDEXED_MARK]
