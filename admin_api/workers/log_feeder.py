"""Feeds the ``hits`` stream into the SQLite log store, from the last id it stored.

Every admin process reads the whole stream (plain XREAD, not a consumer group: each process
keeps a full copy). The stream position is saved in the same SQLite transaction as the rows,
so a restart resumes exactly where it stopped, with nothing lost or stored twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from admin_api.log_store import LogStore, LogStoreClosed, row_from_hit
from store.hits import Hits, hit_from_entry

log = logging.getLogger(__name__)
BATCH = 5000
BLOCK_MS = 1000


class LogFeeder:
    def __init__(self, hits: Hits, store: LogStore) -> None:
        self._hits = hits
        self._store = store
        self._lock = asyncio.Lock()
        self.last_id = "0-0"
        self.stored = 0

    async def start(self) -> None:
        self.last_id = await asyncio.to_thread(self._store.last_stream_id)

    async def _read(self, block_ms: int | None) -> list[tuple[str, dict[Any, Any]]]:
        return await self._hits.read_after(self.last_id, BATCH, block_ms)

    async def _store_entries(self, entries: list[tuple[str, dict[Any, Any]]]) -> None:
        rows = []
        for stream_id, fields in entries:
            try:
                rows.append(row_from_hit(str(stream_id), hit_from_entry(dict(fields or {}))))
            except (ValueError, TypeError):
                log.warning("skipping unreadable hit %s", stream_id)
        last = str(entries[-1][0])
        await asyncio.to_thread(self._store.append, rows, last)
        self.last_id = last
        self.stored += len(rows)

    async def step(self, block_ms: int | None = BLOCK_MS) -> int:
        """Read and store one batch; return how many entries it held."""
        async with self._lock:
            entries = await self._read(block_ms)
            if entries:
                await self._store_entries(entries)
            return len(entries)

    async def catch_up(self) -> int:
        """Store everything in the stream now (without waiting for new entries)."""
        total = 0
        while True:
            count = await self.step(block_ms=None)
            total += count
            if count < BATCH:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Feed until ``stop`` is set (checked at least every second)."""
        while not stop.is_set():
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except LogStoreClosed:
                return  # the app is stopping
            except (RedisError, OSError) as exc:
                log.warning("log feeder: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def lag_seconds(self) -> float:
        """How far the store trails the stream's newest entry, by stream time."""
        newest = await self._hits.newest_stream_id()
        newest_ms = int(newest.split("-")[0])
        stored_ms = int(self.last_id.split("-")[0])
        return max(0.0, (newest_ms - stored_ms) / 1000.0)
