"""The admin app stops while retention and the log feeder are working in worker threads.

Before the fix, closing the log store while housekeeping's ``delete_older_than`` still ran in a
worker thread crashed the process ("Fatal Python error: Segmentation fault"). Here the real
app starts and stops 200 times with retention (old hits to delete) and the feeder (new hits
in the stream) busy; the process must survive, the database must stay whole, and every later
use of the closed store must be a clear error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from admin_api.app import LOG_STORE_FILE, build_app
from admin_api.context import STATE, AdminSettings
from admin_api.log_store import DATABASE_SUFFIXES, LogStore, LogStoreClosed, row_from_hit
from deployment.config import Config
from deployment.instance import Instance
from store.hits import HitWriter
from store.keys import Keys
from store.records import HitRecord

RUNS = 200
OLD_HITS = 8000
NEW_HITS = 2000


def _hit(n: int, ts: float) -> HitRecord:
    return HitRecord(id=f"h-{n:08d}", ts=ts, user=f"learner{n % 50}", group="learner",
                     client_ip="10.0.0.9", site="main", host=f"casino{n % 300}.test",
                     path=f"/p/{n}", action="block", category="gambling", rule="category",
                     source="ut1/gambling/domains", severity="medium", alert=False,
                     decrypted=False, method="GET")


def _state_of(path: Path) -> tuple[int, int, str, str]:
    """(old rows, new rows, stored stream position, integrity check) of a closed database."""
    with closing(sqlite3.connect(path)) as conn:
        old = conn.execute("SELECT count(*) FROM hits WHERE user != 'feeder'").fetchone()[0]
        new = conn.execute("SELECT count(*) FROM hits WHERE user = 'feeder'").fetchone()[0]
        row = conn.execute("SELECT value FROM feed_state WHERE name='last_stream_id'").fetchone()
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return int(old), int(new), str(row[0]) if row else "0-0", str(check)


async def test_stopping_the_app_during_retention_and_feeding_never_crashes_or_loses_rows(
        tmp_path: Path, redis_url: str, keys: Keys, redis: aioredis.Redis,
        security_figures: dict[str, str]) -> None:
    # A log store full of hits past retention: housekeeping deletes them as soon as it starts.
    template = tmp_path / "template.sqlite3"
    old_ts = time.time() - 400 * 86400
    seed = LogStore(template).open()
    seed.append([row_from_hit(f"0-{n + 1}", _hit(n, old_ts + n)) for n in range(OLD_HITS)],
                None)
    seed.close()
    # New hits in the stream: the feeder stores them as soon as it starts.
    writer = HitWriter(redis, keys, hits_days=90, counters_days=730)
    now = time.time()
    await writer.write_batch(uuid.uuid4().hex, [
        ("20261201", dataclasses.replace(_hit(n, now), user="feeder"))
        for n in range(NEW_HITS)])
    last_id = str((await redis.xrevrange(keys.hits, count=1))[0][0])

    data_dir = tmp_path / "data"
    instance = Instance(Config(), data_dir, redis_url)
    settings = AdminSettings(instance=instance, redis_url=redis_url, keys=keys, environ={})
    database = data_dir / LOG_STORE_FILE
    rng = random.Random(1234)
    outcomes = {"retention unfinished": 0, "feeder unfinished": 0}
    started = time.monotonic()
    for run in range(RUNS):
        for suffix in DATABASE_SUFFIXES:
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        data_dir.mkdir(exist_ok=True)
        shutil.copyfile(template, database)
        app = build_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()  # starts the feeder, alert consumer and housekeeping
        store = app[STATE].log_store
        await asyncio.sleep(rng.uniform(0, 0.06))
        await runner.cleanup()  # the app stops while they work

        assert store.closed
        with pytest.raises(LogStoreClosed):
            store.delete_older_than(time.time())
        with pytest.raises(LogStoreClosed):
            store.append([], "1-1")
        with pytest.raises(LogStoreClosed):
            store.count()
        old, new, position, check = _state_of(database)
        assert check == "ok", f"run {run}: database damaged: {check}"
        # Retention deletes whole chunks, the feeder stores a batch with its position in one
        # transaction: a stop leaves either all or none of each.
        assert old in (OLD_HITS, 0), f"run {run}: {old} old rows"
        assert (new, position) in ((0, "0-0"), (NEW_HITS, last_id)), f"run {run}"
        outcomes["retention unfinished"] += old == OLD_HITS
        outcomes["feeder unfinished"] += new == 0
    elapsed = time.monotonic() - started
    security_figures["shutdown: admin app stopped mid-retention/feed"] = (
        f"{RUNS} stops in {elapsed:.0f} s, 0 crashes, 0 damaged databases "
        f"({outcomes['retention unfinished']} before retention finished, "
        f"{outcomes['feeder unfinished']} before the feeder stored its batch)")


async def test_every_file_in_the_admin_data_directory_is_private(
        tmp_path: Path, redis_url: str, keys: Keys, redis: aioredis.Redis) -> None:
    """The log store, its -wal and -shm files (created by SQLite, after the database) and
    every other file the admin process writes hold personal data: all 0600, even under a
    permissive umask."""
    import os

    data_dir = tmp_path / "data"
    instance = Instance(Config(), data_dir, redis_url)
    settings = AdminSettings(instance=instance, redis_url=redis_url, keys=keys, environ={})
    previous = os.umask(0o022)
    try:
        app = build_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            writer = HitWriter(redis, keys, hits_days=90, counters_days=730)
            await writer.write_batch(uuid.uuid4().hex, [("20261201", _hit(n, time.time()))
                                                         for n in range(50)])
            await app[STATE].feeder.catch_up()
            database = data_dir / LOG_STORE_FILE
            names = {p.name for p in app[STATE].log_store.files()}
            assert {database.name, database.name + "-wal", database.name + "-shm"} <= names
            files = [p for p in data_dir.rglob("*") if p.is_file()]
            modes = {str(p.relative_to(data_dir)): oct(p.stat().st_mode & 0o777) for p in files}
            assert modes and set(modes.values()) == {"0o600"}, modes
        finally:
            await runner.cleanup()
    finally:
        os.umask(previous)
