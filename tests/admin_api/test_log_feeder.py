"""The log feeder copies every hit in the stream into the log store exactly once, while it
reads the next batch ahead of the one it writes, even when it is cancelled or its store is
closed in the middle of a batch and it starts again (real Redis, real SQLite)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import admin_api.workers.log_feeder as log_feeder
from admin_api.log_store import LogStore, row_from_entry, row_from_hit
from admin_api.workers.log_feeder import LogFeeder
from store.hits import Hits, HitWriter, hit_from_entry
from store.keys import Keys
from store.records import HitRecord

HITS = 1200
SMALL_BATCH = 50
SMALL_TRANSACTION = 200


class SlowStore(LogStore):
    """A log store whose writes take a while, so a cancellation lands during one."""

    writing = 0
    """Calls in progress (in worker threads)."""

    def append_batches(self, batches: Iterable[tuple[Iterable[tuple[Any, ...]], str]]) -> int:
        def slowly() -> Iterator[tuple[Iterable[tuple[Any, ...]], str]]:
            for batch in batches:
                time.sleep(0.002)
                yield batch

        self.writing += 1
        try:
            return super().append_batches(slowly())
        finally:
            self.writing -= 1


def _hit(n: int, ts: float) -> HitRecord:
    return HitRecord(id=f"h-{n:08d}", ts=ts, user=f"learner{n % 40}", group="learner",
                     client_ip="10.0.0.9", site="main", host=f"casino{n % 90}.test",
                     path=f"/p/{n}", action="block", category="gambling", rule="category",
                     source="ut1/gambling/domains", severity="medium", alert=n % 7 == 0,
                     decrypted=False, method="GET", device=f"dev{n % 3}", identified_by="auth")


async def _fill_stream(redis: aioredis.Redis, keys: Keys, count: int) -> list[str]:
    """Write ``count`` hits as the proxies do; return the stream ids, oldest first."""
    writer = HitWriter(redis, keys, hits_days=90, counters_days=730)
    now = time.time()
    for start in range(0, count, 300):
        await writer.write_batch(uuid.uuid4().hex, [
            ("20261201", _hit(n, now + n / 1000)) for n in range(start, min(count, start + 300))])
    return [str(sid) for sid, _ in await redis.xrange(keys.hits)]


def _stored(path: Path) -> tuple[list[str], list[str], str]:
    """(stream ids of the rows, hit ids of the rows, saved position) of the database."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT sid, id FROM hits ORDER BY rowid").fetchall()
        saved = conn.execute(
            "SELECT value FROM feed_state WHERE name='last_stream_id'").fetchone()
    return [r[0] for r in rows], [r[1] for r in rows], str(saved[0]) if saved else "0-0"


def _assert_each_hit_once(path: Path, stream_ids: list[str]) -> None:
    sids, hit_ids, saved = _stored(path)
    assert len(sids) == len(set(sids)), f"{len(sids) - len(set(sids))} hits stored twice"
    assert sorted(hit_ids) == [f"h-{n:08d}" for n in range(len(stream_ids))]
    assert sids == stream_ids  # in stream order, none missing
    assert saved == stream_ids[-1]


async def test_cancelled_mid_batch_and_restarted_the_feeder_stores_every_hit_once(
        tmp_path: Path, redis: aioredis.Redis, keys: Keys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Many transactions of a few batches, each batch read while the one before is written.
    monkeypatch.setattr(log_feeder, "BATCH", SMALL_BATCH)
    monkeypatch.setattr(log_feeder, "TRANSACTION", SMALL_TRANSACTION)
    stream_ids = await _fill_stream(redis, keys, HITS)
    path = tmp_path / "hits.sqlite3"
    store = SlowStore(path).open()
    rng = random.Random(7)
    kept = LogFeeder(Hits(redis, keys), store)
    await kept.start()
    cancelled_during_write = 0
    try:
        for attempt in range(40):
            # Half the time a new feeder (a restart); half the time the same one again, whose
            # position may trail a batch its cancelled call's thread went on to commit.
            feeder = kept if attempt % 2 else LogFeeder(Hits(redis, keys), store)
            if feeder is not kept:
                await feeder.start()
            task = asyncio.create_task(feeder.catch_up())
            await asyncio.sleep(rng.uniform(0.001, 0.03))
            if task.done():  # everything stored already
                await task
                break
            cancelled_during_write += store.writing > 0
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                continue
            # The call was finishing as the cancellation came (seen under heavy load): it
            # returned, and what it stored is checked with the rest below.
            break
        assert cancelled_during_write > 5, "no cancellation landed while a batch was written"
        final = LogFeeder(Hits(redis, keys), store)
        await final.start()
        await final.catch_up()
    finally:
        await store.aclose()
    _assert_each_hit_once(path, stream_ids)


async def test_store_closed_mid_batch_then_reopened_the_feeder_stores_every_hit_once(
        tmp_path: Path, redis: aioredis.Redis, keys: Keys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_feeder, "BATCH", SMALL_BATCH)
    monkeypatch.setattr(log_feeder, "TRANSACTION", SMALL_TRANSACTION)
    stream_ids = await _fill_stream(redis, keys, HITS)
    path = tmp_path / "hits.sqlite3"
    rng = random.Random(11)
    stops = 0
    for _ in range(30):
        store = SlowStore(path).open()
        feeder = LogFeeder(Hits(redis, keys), store)
        await feeder.start()
        stop = asyncio.Event()
        task = asyncio.create_task(feeder.run(stop))
        await asyncio.sleep(rng.uniform(0.002, 0.02))
        stop.set()
        await store.aclose()  # the app stops: the feeder's write in flight finishes or fails
        await asyncio.wait_for(task, 10)  # run() returns on LogStoreClosed
        stops += 1
        if len(_stored(path)[0]) == HITS:
            break
    assert stops > 1, "the feeder stored everything before its store was ever closed"
    store = LogStore(path).open()
    try:
        feeder = LogFeeder(Hits(redis, keys), store)
        await feeder.start()
        await feeder.catch_up()
    finally:
        store.close()
    _assert_each_hit_once(path, stream_ids)


async def test_a_batch_handed_over_twice_is_stored_once(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "hits.sqlite3").open()
    try:
        rows = [row_from_hit(f"5-{n}", _hit(n, 1000.0 + n)) for n in range(4)]
        assert store.append(rows[:3], "5-2") == 3
        # The same batch again, then one that overlaps it: only the new row is stored.
        assert store.append(rows[:3], "5-2") == 0
        assert store.append(rows[1:], "5-3") == 1
        # An older position never moves the saved one back.
        assert store.append([], "4-0") == 0
        assert store.last_stream_id() == "5-3"
        assert store.count() == 4
    finally:
        store.close()


def test_a_stream_entry_becomes_the_same_row_as_through_a_hit_record() -> None:
    hit = _hit(3, 1764547200.125)
    full = dict(zip(HitRecord.field_names(), hit.to_fields(), strict=True))
    old_entry = {k: v for k, v in full.items() if k not in ("device", "identified_by")}
    as_bytes = {k.encode(): v.encode() for k, v in full.items()}
    for fields in (full, old_entry, as_bytes, {"ts": ""}, {}):
        assert row_from_entry("7-1", fields) == row_from_hit("7-1", hit_from_entry(fields))
    with pytest.raises(ValueError):
        row_from_entry("7-1", {**full, "ts": "soon"})
