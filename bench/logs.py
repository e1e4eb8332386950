"""Benchmark of the hit log: ingest rate, query latency at 10 million hits, Redis memory.

    python -m bench.logs [--hits 10000000] [--ingest 300000] [--redis-url URL] [--json]

Measures, in order:

1. ingest: hits/s written through :class:`store.hits.HitWriter` (the proxy's exactly-once
   Lua script, counters included), four writers in parallel, batches of 1,000;
2. Redis memory per million hits (``used_memory`` before and after the ingest);
3. a filtered query answered by Redis alone (``XRANGE`` over the whole stream, filtering in
   the client), extrapolated linearly to the full size;
4. the log feeder's rate copying the stream into an empty SQLite log store
   (``feeder_hits_per_s``);
5. the SQLite log store filled to ``--hits`` rows (synthetic, written directly), then the log
   feeder's rate copying the same ``--ingest`` stream entries into that full store
   (``feeder_hits_per_s_full_store``; the entries are new to it: it holds no stream
   position), then p95 of a manager's filtered hits queries (the API's own
   :meth:`LogStore.page`) on the store as the feeder left it;
6. p95 of the summary report over 90 days of daily counters.

Starts an embedded, non-persistent redis-server unless ``--redis-url`` is given (then it uses
a throw-away key prefix and deletes its keys afterwards). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from admin_api.log_store import HitQuery, LogStore
from admin_api.reports.summary import summary
from admin_api.workers.log_feeder import LogFeeder
from esafety.embedded_redis import EmbeddedRedis
from store.hits import Hits, HitWriter
from store.keys import Keys
from store.records import HitRecord, day_of, new_hit_id

TZ = ZoneInfo("Europe/London")
DAYS = 90
USERS = [f"learner{i:05d}" for i in range(6000)] + [f"staff{i:03d}" for i in range(400)]
CATEGORIES = ["gambling", "pornography", "social_networks", "games", "violence", "weapons",
              "drugs", "dating", "piracy", "malware_hacking", "circumvention", "extremism",
              "self_harm", "hate_discrimination", "shopping"]
GROUPS = ["learner", "staff", "guest"]
SITES = ["main", "north"]
HOSTS = [f"host{i:05d}.{random.choice(['com', 'co.uk', 'net', 'org'])}" for i in range(30000)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def synthetic_hit(rng: random.Random, ts: float) -> HitRecord:
    user = rng.choice(USERS)
    action = "block" if rng.random() < 0.9 else "allow"
    category = rng.choice(CATEGORIES) if action == "block" else ""
    return HitRecord(id=new_hit_id(ts, TZ), ts=round(ts, 3), user=user,
                     group="staff" if user.startswith("staff") else "learner",
                     client_ip=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                     site=rng.choice(SITES), host=rng.choice(HOSTS),
                     path=f"/p/{rng.randrange(1000)}", action=action, category=category,
                     rule="category" if category else "default",
                     source=f"ut1/{category}/domains" if category else "", severity="medium",
                     alert=category == "extremism", decrypted=False, method="GET")


async def measure_ingest(redis: aioredis.Redis, keys: Keys, count: int) -> float:
    writer = HitWriter(redis, keys, hits_days=DAYS, counters_days=730)
    rng = random.Random(1)
    now = time.time()
    batch = 1000
    batches = []
    for _ in range(count // batch):
        hits = [synthetic_hit(rng, now - rng.random() * 3600) for _ in range(batch)]
        batches.append([(day_of(h.ts, TZ), h) for h in hits])

    async def run(share: list[list[tuple[str, HitRecord]]]) -> None:
        for item in share:
            await writer.write_batch(uuid.uuid4().hex, item)

    start = time.perf_counter()
    await asyncio.gather(*(run(batches[i::4]) for i in range(4)))
    return count / (time.perf_counter() - start)


async def measure_feeder(hits: Hits, store: LogStore) -> float:
    """Hits/s the log feeder copies from the stream into ``store`` (from its saved position)."""
    feeder = LogFeeder(hits, store)
    await feeder.start()
    start = time.perf_counter()
    fed = await feeder.catch_up()
    elapsed = time.perf_counter() - start
    if fed == 0:
        raise RuntimeError("the log feeder found nothing to copy")
    return fed / elapsed


async def redis_scan_query(redis: aioredis.Redis, keys: Keys, user: str) -> tuple[float, int]:
    """A filtered query with Redis alone: read the stream, keep one user's blocks."""
    start = time.perf_counter()
    found = 0
    low = "-"
    while True:
        entries = await redis.xrange(keys.hits, min=low, max="+", count=10000)
        if not entries:
            break
        for _stream_id, fields in entries:
            if fields and fields.get("user") == user and fields.get("action") == "block":
                found += 1
        low = f"({entries[-1][0]!s}"
        if len(entries) < 10000:
            break
    return (time.perf_counter() - start) * 1000, found


def rows_for_store(total: int, start_ts: float, chunk: int) -> Iterator[list[tuple[Any, ...]]]:
    rng = random.Random(2)
    span = DAYS * 86400
    step = span / total
    ts = start_ts
    n = 0
    while n < total:
        size = min(chunk, total - n)
        rows = []
        for i in range(size):
            ts += step
            user = USERS[rng.randrange(len(USERS))]
            block = rng.random() < 0.9
            category = CATEGORIES[rng.randrange(len(CATEGORIES))] if block else ""
            rows.append((f"{int(ts * 1000)}-{i}", f"{n + i:016d}", round(ts, 3), user,
                         "staff" if user[0] == "s" else "learner", "10.0.0.1",
                         SITES[rng.randrange(2)], HOSTS[rng.randrange(len(HOSTS))],
                         f"/p/{rng.randrange(1000)}", "block" if block else "allow", category,
                         "category" if block else "default", "", "medium",
                         1 if category == "extremism" else 0, 0, "GET", "", "", "auth"))
        n += size
        yield rows


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def query_mix(rng: random.Random, end_ts: float) -> list[tuple[str, HitQuery]]:
    day = 86400.0
    out: list[tuple[str, HitQuery]] = []
    for _ in range(20):
        out.append(("user, 30 days", HitQuery(user=rng.choice(USERS), start_ts=end_ts - 30 * day,
                                              end_ts=end_ts)))
        out.append(("category+action, 7 days", HitQuery(
            category=rng.choice(CATEGORIES), action="block", start_ts=end_ts - 7 * day,
            end_ts=end_ts)))
        out.append(("group+site, 1 day", HitQuery(group="staff", site="north",
                                                  start_ts=end_ts - day - rng.random() * 60 * day,
                                                  end_ts=end_ts - rng.random() * 30 * day)))
        out.append(("host, all time", HitQuery(host=rng.choice(HOSTS))))
        out.append(("q text, 1 day", HitQuery(text=f"host{rng.randrange(30000):05d}",
                                              start_ts=end_ts - day, end_ts=end_ts)))
        out.append(("newest, no filter", HitQuery()))
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"hits": args.hits}
    with tempfile.TemporaryDirectory(prefix="esafety-bench-") as tmp:
        server = None
        url = args.redis_url
        if url is None:
            server = EmbeddedRedis(Path(tmp) / "redis", persistent=False).start()
            url = server.url
        keys = Keys(prefix=f"bench-{uuid.uuid4().hex[:8]}:")
        redis = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            before = int((await redis.info("memory"))["used_memory"])
            results["ingest_hits_per_s"] = round(await measure_ingest(redis, keys, args.ingest))
            after = int((await redis.info("memory"))["used_memory"])
            stream_len = int(await redis.xlen(keys.hits))
            results["redis_mb_per_million_hits"] = round(
                (after - before) / stream_len * 1_000_000 / 1e6, 1)
            scan_ms, _ = await redis_scan_query(redis, keys, USERS[7])
            results["redis_only_query_ms_at_ingest_size"] = round(scan_ms)
            results["redis_only_query_ms_extrapolated"] = round(scan_ms * args.hits / stream_len)

            feed_store = LogStore(Path(tmp) / "feed.sqlite3").open()
            results["feeder_hits_per_s"] = round(await measure_feeder(Hits(redis, keys),
                                                                      feed_store))
            feed_store.close()
            (Path(tmp) / "feed.sqlite3").unlink()

            store = LogStore(Path(tmp) / "logs.sqlite3").open()
            end_ts = time.time()
            start = time.perf_counter()
            for rows in rows_for_store(args.hits, end_ts - DAYS * 86400, 50_000):
                store.append(rows, None)
            results["store_fill_s"] = round(time.perf_counter() - start, 1)
            results["store_bytes_per_hit"] = round(store.path.stat().st_size / args.hits)
            results["feeder_hits_per_s_full_store"] = round(
                await measure_feeder(Hits(redis, keys), store))
            rng = random.Random(3)
            by_kind: dict[str, list[float]] = {}
            timings: list[float] = []
            for kind, query in query_mix(rng, end_ts):
                page_ms = timed(lambda q=query: store.page(q, None, 50))  # type: ignore[misc]
                by_kind.setdefault(kind, []).append(page_ms)
                timings.append(page_ms)
            results["query_p95_ms"] = round(percentile(timings, 0.95), 1)
            results["query_p50_ms"] = round(statistics.median(timings), 1)
            results["query_p95_ms_by_kind"] = {k: round(percentile(v, 0.95), 1)
                                               for k, v in by_kind.items()}
            store.close()

            today = date.today()
            days = [today - timedelta(days=i) for i in range(DAYS)]
            async with redis.pipeline(transaction=False) as pipe:
                for day in days:
                    ymd = day.strftime("%Y%m%d")
                    for category in CATEGORIES:
                        for group in GROUPS:
                            for site in SITES:
                                pipe.hincrby(keys.day_counts(ymd),
                                             f"block|{category}|{group}|{site}",
                                             rng.randrange(1000))
                    pipe.zadd(keys.top_hosts(ymd), {h: rng.randrange(500) for h in HOSTS[:3000]})
                await pipe.execute()
            summary_ms = []
            for group_by in ("day", "week", "category", "site", "group") * 6:
                start = time.perf_counter()
                await summary(Hits(redis, keys), days[-1], days[0], group_by)
                summary_ms.append((time.perf_counter() - start) * 1000)
            results["summary_p95_ms"] = round(percentile(summary_ms, 0.95), 1)
        finally:
            async for key in redis.scan_iter(match=keys.prefix + "*", count=1000):
                await redis.delete(key)
            await redis.aclose()
            if server is not None:
                server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=10_000_000)
    parser.add_argument("--ingest", type=int, default=300_000)
    parser.add_argument("--redis-url")
    parser.add_argument("--json", action="store_true", help="(the JSON line is always last)")
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    for name, value in results.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                sys.stdout.write(f"  {name}[{sub}]".ljust(58) + f"{inner}\n")
        else:
            sys.stdout.write(f"{name:56}  {value}\n")
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
