"""JSON records in Redis with a creation-time index: unblock requests, reports and alerts.

Each record is a JSON string under its own key; a sorted set orders the ids by creation time.
Ids are decimal numbers from a ``seq:<name>`` counter, so they are short enough to read out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from store.keys import Keys


class IndexedRecords:
    def __init__(self, redis: Redis, keys: Keys, sequence: str,
                 record_key: Callable[[str], str], index_key: str) -> None:
        self._redis = redis
        self._keys = keys
        self._sequence = sequence
        self._record_key = record_key
        self._index_key = index_key

    async def new_id(self) -> str:
        return str(int(await self._redis.incr(self._keys.sequence(self._sequence))))

    async def put(self, record_id: str, created_at: float, data: dict[str, Any]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._record_key(record_id), json.dumps(data, separators=(",", ":")))
            pipe.zadd(self._index_key, {record_id: created_at})
            await pipe.execute()

    async def get(self, record_id: str) -> dict[str, Any] | None:
        if not record_id.isdigit() or len(record_id) > 18:
            return None
        raw = await self._redis.get(self._record_key(record_id))
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        return data

    async def newest_first(self, limit: int = 100_000) -> list[dict[str, Any]]:
        """Records newest first (at most ``limit``); callers filter and page."""
        ids = await self._redis.zrevrange(self._index_key, 0, limit - 1)
        if not ids:
            return []
        out: list[dict[str, Any]] = []
        chunk = 1000
        for start in range(0, len(ids), chunk):
            values = await self._redis.mget([self._record_key(str(i))
                                              for i in ids[start:start + chunk]])
            out.extend(json.loads(v) for v in values if v is not None)
        return out

    async def count(self) -> int:
        return int(await self._redis.zcard(self._index_key))

    async def delete_older_than(self, cutoff: float) -> int:
        """Remove records created before ``cutoff`` (retention)."""
        ids = await self._redis.zrangebyscore(self._index_key, "-inf", f"({cutoff}")
        if not ids:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            for record_id in ids:
                pipe.delete(self._record_key(str(record_id)))
            pipe.zrem(self._index_key, *ids)
            await pipe.execute()
        return len(ids)
