"""Writing and reading the hit log: a Redis stream plus daily counters.

A batch of hits is written by one Lua script, atomically and exactly once: the script first
sets a marker for the batch id with ``SET NX``, so a batch replayed from the proxy's spool
after an outage (or a retry after a lost reply) is recognised and not written twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from store.keys import Keys
from store.records import HitRecord, hit_id_day

BATCH_MARKER_TTL = 14 * 86400
"""How long a written batch id is remembered. Spooled batches older than this are still
written, and only a batch both written and replayed that late could be doubled."""

_FIELDS = HitRecord.field_names()
_POS = {name: i for i, name in enumerate(_FIELDS)}

# KEYS: the batch marker, the hit stream, then for each day the batch touches (in the order
# the hits name them) its counters, top hosts and hit references, then each (day, site) pair's
# top hosts of that site: every key the script touches is declared, so it runs on a Redis
# Cluster (one slot: the keys share the prefix's hash tag) and under the proxy's ACL user.
# ARGV: marker ttl, counters ttl, hitref ttl, field count, field names..., the retention
# horizon in ms, then each hit's day number (1 for the first day's keys), the KEYS position of
# its site's top hosts (0: the hit names no site), then its values. XADD trims entries that
# arrived before the horizon (approximately, as it goes; trim_hits() removes the rest
# exactly), and a hit whose own time
# is already past it (one replayed late from a spool) is counted for the reports but never
# stored raw.
INGEST_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then return -1 end
local stream = KEYS[2]
local counters_ttl = tonumber(ARGV[2])
local ref_ttl = tonumber(ARGV[3])
local nf = tonumber(ARGV[4])
local names = {}
for j = 1, nf do names[j] = ARGV[4 + j] end
local pos = {}
for j = 1, nf do pos[names[j]] = j end
local minid = ARGV[5 + nf]
local i = 6 + nf
local written = 0
while i <= #ARGV do
  local base = 2 + (tonumber(ARGV[i]) - 1) * 3
  local site_tops = tonumber(ARGV[i + 1])
  i = i + 1
  local sid = nil
  if tonumber(ARGV[i + pos['ts']]) * 1000 >= tonumber(minid) then
    local args = {'XADD', stream, 'MINID', '~', minid, '*'}
    for j = 1, nf do
      args[#args + 1] = names[j]
      args[#args + 1] = ARGV[i + j]
    end
    sid = redis.call(unpack(args))
    written = written + 1
  end
  local action = ARGV[i + pos['action']]
  if ARGV[i + pos['rule']] == 'outside_hours' then
    action = 'outside_hours'  -- counted on its own: never a block of prohibited content
  end
  local counter = action .. '|' .. ARGV[i + pos['category']] .. '|' .. ARGV[i + pos['group']]
                  .. '|' .. ARGV[i + pos['site']]
  local ckey = KEYS[base + 1]
  redis.call('HINCRBY', ckey, counter, 1)
  redis.call('EXPIRE', ckey, counters_ttl)
  if action == 'block' then
    local tkey = KEYS[base + 2]
    redis.call('ZINCRBY', tkey, 1, ARGV[i + pos['host']])
    redis.call('EXPIRE', tkey, counters_ttl)
    if site_tops > 0 then
      redis.call('ZINCRBY', KEYS[site_tops], 1, ARGV[i + pos['host']])
      redis.call('EXPIRE', KEYS[site_tops], counters_ttl)
    end
    if sid then
      local rkey = KEYS[base + 3]
      redis.call('HSET', rkey, ARGV[i + pos['id']], sid)
      redis.call('EXPIRE', rkey, ref_ttl)
    end
  end
  i = i + nf + 1
end
return written
"""


class HitWriter:
    """Writes batches of hits with :data:`INGEST_SCRIPT`."""

    def __init__(self, redis: Redis, keys: Keys, *, hits_days: int, counters_days: int) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(INGEST_SCRIPT)
        self._counters_ttl = counters_days * 86400
        self._ref_ttl = hits_days * 86400

    async def write_batch(self, batch_id: str, hits: Sequence[tuple[str, HitRecord]]) -> int:
        """Write ``(day, hit)`` pairs; return how many were stored raw (0 if the batch was
        already written; hits past retention are only counted)."""
        horizon_ms = int((time.time() - self._ref_ttl) * 1000)
        keys = [self._keys.hit_batch(batch_id), self._keys.hits]
        day_numbers: dict[str, int] = {}
        for day, _hit in hits:
            if day not in day_numbers:
                day_numbers[day] = len(day_numbers) + 1
                keys += [self._keys.day_counts(day), self._keys.top_hosts(day),
                         self._keys.hitref(day)]
        site_positions: dict[tuple[str, str], int] = {}
        args: list[Any] = [BATCH_MARKER_TTL, self._counters_ttl, self._ref_ttl, len(_FIELDS),
                           *_FIELDS, horizon_ms]
        for day, hit in hits:
            position = 0
            if hit.site and hit.action == "block":
                position = site_positions.get((day, hit.site), 0)
                if not position:
                    keys.append(self._keys.site_top_hosts(day, hit.site))
                    position = site_positions[(day, hit.site)] = len(keys)
            args.append(day_numbers[day])
            args.append(position)
            args.extend(hit.to_fields())
        result = await self._script(keys=keys, args=args)
        return max(0, int(result))


def hit_from_entry(fields: dict[Any, Any]) -> HitRecord:
    decoded = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
               for k, v in fields.items()}
    return HitRecord.from_stream(decoded)


async def find_hit(redis: Redis, keys: Keys, hit_id: str, day: str) -> HitRecord | None:
    """A blocked hit by its reference id."""
    stream_id = await redis.hget(keys.hitref(day), hit_id)
    if stream_id is None:
        return None
    entries = await redis.xrange(keys.hits, min=stream_id, max=stream_id, count=1)
    if not entries:
        return None
    return hit_from_entry(dict(entries[0][1] or {}))


async def trim_hits(redis: Redis, keys: Keys, older_than_ms: int) -> int:
    """Delete hits older than the retention limit (XTRIM MINID); return how many went."""
    return int(await redis.xtrim(keys.hits, minid=f"{older_than_ms}-0", approximate=False))


StreamEntry = tuple[Any, dict[Any, Any]]


class Hits:
    """The hit log of one store: the stream, block references, the daily counters, and the
    stream reads of the admin's workers (log feeder, alert consumer)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    def writer(self, *, hits_days: int, counters_days: int) -> HitWriter:
        return HitWriter(self._redis, self._keys, hits_days=hits_days,
                         counters_days=counters_days)

    async def find(self, hit_id: str) -> HitRecord | None:
        """A blocked hit by its reference (``20261122-7KQ2X9AB``), or None."""
        day = hit_id_day(hit_id)
        return await find_hit(self._redis, self._keys, hit_id, day) if day else None

    async def newest(self, count: int) -> list[HitRecord]:
        """The latest ``count`` hits, newest first."""
        entries = await self._redis.xrevrange(self._keys.hits, count=count)
        return [hit_from_entry(dict(fields or {})) for _sid, fields in entries or []]

    async def trim_older_than(self, older_than_ms: int) -> int:
        return await trim_hits(self._redis, self._keys, older_than_ms)

    async def stream_length(self) -> int:
        return int(await self._redis.xlen(self._keys.hits))

    async def stream_exists(self) -> bool:
        return bool(await self._redis.exists(self._keys.hits))

    async def newest_stream_id(self) -> str:
        info = await self._redis.xinfo_stream(self._keys.hits)
        return str(info.get("last-generated-id", "0-0"))

    async def day_counts(self, days: Sequence[str]) -> list[dict[str, int]]:
        """Each day's ``action|category|group|site`` -> count (days as ``YYYYMMDD``)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(self._keys.day_counts(day))
            replies = await pipe.execute()
        return [{str(k): int(v) for k, v in (reply or {}).items()} for reply in replies]

    async def top_hosts(self, days: Sequence[str], per_day: int, site: str | None = None
                        ) -> list[list[tuple[str, float]]]:
        """Each day's top ``per_day`` blocked hosts with their counts (of one ``site``'s
        blocks, when given)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                key = (self._keys.top_hosts(day) if site is None
                       else self._keys.site_top_hosts(day, site))
                pipe.zrevrange(key, 0, per_day - 1, withscores=True)
            replies = await pipe.execute()
        return [[(str(host), float(score)) for host, score in reply or []] for reply in replies]

    # the admin's stream readers
    async def read_after(self, last_id: str, count: int, block_ms: int | None
                         ) -> list[StreamEntry]:
        reply: Any = await self._redis.xread({self._keys.hits: last_id}, count=count,
                                             block=block_ms)
        return list(reply[0][1]) if reply else []

    async def create_group(self, group: str, start_id: str) -> None:
        """Create a consumer group on the stream (and the stream); an existing one stays."""
        try:
            await self._redis.xgroup_create(self._keys.hits, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def pending(self, group: str) -> int:
        try:
            info = await self._redis.xpending(self._keys.hits, group)
        except ResponseError:
            return 0
        return int(info.get("pending", 0))

    async def read_group(self, group: str, consumer: str, count: int, block_ms: int | None
                         ) -> list[StreamEntry]:
        reply: Any = await self._redis.xreadgroup(group, consumer, {self._keys.hits: ">"},
                                                  count=count, block=block_ms)
        return list(reply[0][1]) if reply else []

    async def acknowledge(self, group: str, stream_ids: Sequence[Any]) -> None:
        await self._redis.xack(self._keys.hits, group, *stream_ids)

    async def claim_idle(self, group: str, consumer: str, idle_ms: int, start: str,
                         count: int) -> tuple[str, list[StreamEntry]]:
        reply: Any = await self._redis.xautoclaim(self._keys.hits, group, consumer, idle_ms,
                                                  start_id=start, count=count)
        return str(reply[0]), list(reply[1])
