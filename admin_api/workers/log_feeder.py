"""Feeds the ``hits`` stream into the SQLite log store, from the last id it stored.

Every admin process reads the whole stream (plain XREAD, not a consumer group: each process
keeps a full copy). The stream position is saved in the same SQLite transaction as the rows,
so a restart resumes exactly where it stopped, with nothing lost or stored twice.

While there is a backlog, one SQLite transaction takes up to :data:`TRANSACTION` entries: the
event loop reads batches of :data:`BATCH` from Redis and hands them to a worker thread, which
converts and inserts each while the next is read (SQLite releases the GIL while it works),
then saves the position after the last one and commits. Few large transactions cost far less
than many small ones (each commit writes every index page it touched to the WAL, and
checkpoints), while only about three batches are held in memory at a time. Only a committed
transaction moves :attr:`LogFeeder.last_id`, and :meth:`LogStore.append_batches` skips any
entry at or before the saved position, so a batch written by a thread that outlived its
cancelled call is never stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from redis.exceptions import RedisError

from admin_api.log_store import LogStore, LogStoreClosed, row_from_entry, stream_position
from store.hits import Hits, StreamEntry

log = logging.getLogger(__name__)
BATCH = 5000
"""Stream entries per read."""
TRANSACTION = 100_000
"""Most stream entries per SQLite transaction (a backlog is stored in transactions this size;
a transaction ends early when the stream has no more)."""
QUEUED_BATCHES = 2
"""Batches read ahead and waiting for the worker thread."""
HANDOVER_POLL_S = 0.002
BLOCK_MS = 1000


class _Aborted(Exception):
    """The feeder call that handed batches to a transaction was cancelled or failed."""


def _rows(entries: Sequence[StreamEntry]) -> list[tuple[Any, ...]]:
    rows = []
    for stream_id, fields in entries:
        try:
            rows.append(row_from_entry(str(stream_id), fields or {}))
        except (ValueError, TypeError):
            log.warning("skipping unreadable hit %s", stream_id)
    return rows


class _Transaction:
    """Batches handed from the event loop to the worker thread that stores them in one
    SQLite transaction."""

    def __init__(self) -> None:
        self.batches: queue.Queue[Sequence[StreamEntry] | None] = queue.Queue(QUEUED_BATCHES)
        self.aborted = threading.Event()

    def received(self) -> Iterator[tuple[list[tuple[Any, ...]], str]]:
        """In the worker thread: each batch's rows and the position after it, until the end
        (raises :class:`_Aborted`, which rolls the transaction back, if the feeder gave up)."""
        while True:
            entries = self.batches.get()
            if self.aborted.is_set():
                raise _Aborted
            if entries is None:
                return
            yield _rows(entries), str(entries[-1][0])

    async def hand_over(self, item: Sequence[StreamEntry] | None,
                        write: asyncio.Future[None]) -> None:
        """Queue a batch (or the end) for the worker thread, waiting while the queue is full."""
        while True:
            try:
                self.batches.put_nowait(item)
                return
            except queue.Full:
                if write.done():
                    await write  # the thread failed: raise its error
                    raise LogStoreClosed("the log store stopped taking batches") from None
                await asyncio.sleep(HANDOVER_POLL_S)

    def abort(self) -> None:
        self.aborted.set()
        try:
            self.batches.put_nowait(None)  # wake the thread if it is waiting
        except queue.Full:
            pass  # it is busy and sees the flag at its next batch


async def _outcome(read: asyncio.Future[list[StreamEntry]]) -> list[StreamEntry]:
    """The result of a read ahead. Unlike ``await read``, a cancellation of the caller always
    raises here, even if the read itself finishes instead of being cancelled (the caller then
    discards it)."""
    await asyncio.wait({read})
    return read.result()


def _discard(read: asyncio.Future[list[StreamEntry]]) -> None:
    """Drop a read ahead whose batch will not be written (it is read again next time)."""
    if read.done():
        if not read.cancelled():
            read.exception()  # retrieved, so asyncio does not log it as never retrieved
    else:
        read.cancel()


class LogFeeder:
    def __init__(self, hits: Hits, store: LogStore) -> None:
        self._hits = hits
        self._store = store
        self._lock = asyncio.Lock()
        self.last_id = "0-0"
        """The stream position saved in the store with the last transaction this feeder
        committed."""
        self.stored = 0
        self._written = threading.Lock()
        """Guards ``last_id`` and ``stored``, which worker threads update."""

    async def start(self) -> None:
        self.last_id = await asyncio.to_thread(self._store.last_stream_id)

    async def _read(self, after: str, block_ms: int | None) -> list[StreamEntry]:
        return await self._hits.read_after(after, BATCH, block_ms)

    def _write(self, transaction: _Transaction) -> None:
        """In a worker thread: store the batches handed over, in one transaction."""
        last = self.last_id
        positions: list[str] = []

        def batches() -> Iterator[tuple[list[tuple[Any, ...]], str]]:
            for rows, position in transaction.received():
                positions.append(position)
                yield rows, position

        try:
            count = self._store.append_batches(batches())
        except _Aborted:
            return
        if positions:
            last = positions[-1]
        with self._written:
            self.stored += count
            if stream_position(last) > stream_position(self.last_id):
                self.last_id = last

    async def step(self, block_ms: int | None = BLOCK_MS,
                   stop: asyncio.Event | None = None) -> int:
        """Store what the stream holds after :attr:`last_id`, in transactions of up to
        :data:`TRANSACTION` entries, until a read comes back short (or ``stop`` is set);
        return how many entries were stored. Only the first read waits (up to ``block_ms``)
        for new entries."""
        async with self._lock:
            total = 0
            entries = await self._read(self.last_id, block_ms)
            while entries:
                transaction = _Transaction()
                write = asyncio.ensure_future(asyncio.to_thread(self._write, transaction))
                ahead: asyncio.Future[list[StreamEntry]] | None = None
                try:
                    handed = 0
                    while True:
                        await transaction.hand_over(entries, write)
                        handed += len(entries)
                        more = len(entries) == BATCH and not (stop is not None and stop.is_set())
                        ahead = (asyncio.ensure_future(self._read(str(entries[-1][0]), None))
                                 if more else None)
                        if ahead is None or handed >= TRANSACTION:
                            break
                        entries = await _outcome(ahead)
                        ahead = None
                        if not entries:
                            break
                    await transaction.hand_over(None, write)
                    await write
                    total += handed
                    entries = await _outcome(ahead) if ahead is not None else []
                except BaseException:
                    transaction.abort()
                    if ahead is not None:
                        _discard(ahead)
                    raise
            return total

    async def catch_up(self) -> int:
        """Store everything in the stream now (without waiting for new entries)."""
        return await self.step(block_ms=None)

    async def run(self, stop: asyncio.Event) -> None:
        """Feed until ``stop`` is set (checked at least every second, and between batches)."""
        while not stop.is_set():
            try:
                await self.step(stop=stop)
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
