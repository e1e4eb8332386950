"""The hit log: every block (and, when configured, every allowed request) reaches Redis once.

The request path only appends one line to a local write-ahead spool and returns. A background
task forms batches and writes each one with the store's exactly-once ingest script. The spool
file records three kinds of line:

``H <fields>``      a hit, written as soon as it happens;
``B <id> <n>``      the previous ``n`` unbatched hits form batch ``id`` (written before sending);
``C <id>``          batch ``id`` is in Redis.

After a crash (even ``kill -9`` mid-batch) or a Redis outage the spool is read back: batches
without a ``C`` line are re-sent under the same id, which the ingest script recognises, and
leftover hits form new batches. Hits therefore arrive in order and exactly once. When
everything is confirmed the spool is truncated.

A full disk never stops filtering. Hits the spool cannot take wait in memory for Redis, and
the spool's error raises the readiness and metric alarm. At a restart the spool is compacted
(rewritten with only what is undelivered) only when the disk has room for the copy; without
room, or if the copy fails, the file is kept as it is and appended to, which replays the same.
Spool files are 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from store.records import HitRecord

log = logging.getLogger("esafety.hitlog")

_FIELDS = HitRecord.field_names()
MAX_MEMORY_HITS = 200_000
"""Hits kept in memory when the spool cannot be written (disk full) and Redis is down."""
REWRITE_HEADROOM_BYTES = 16 * 1024 * 1024
"""Free space kept beyond the copy's size before the spool is compacted at a restart."""

BatchSender = Callable[[str, list[tuple[str, HitRecord]]], Awaitable[int]]


@dataclass
class SpoolState:
    """What a spool file says is still to be delivered."""

    pending: list[tuple[str, list[tuple[str, HitRecord]]]] = field(default_factory=list)
    unbatched: list[tuple[str, HitRecord]] = field(default_factory=list)
    damaged_lines: int = 0
    torn_tail: bool = False
    """The last line has no newline (a write cut short)."""


def read_spool(path: Path) -> SpoolState:
    """Parse a spool file into undelivered batches and unbatched hits."""
    state = SpoolState()
    if not path.is_file():
        if path.exists():
            # A warning, not an error: mitmproxy stops on errors logged during start-up.
            log.warning("spool %s is not a regular file: nothing to replay from it", path)
        return state
    batches: dict[str, list[tuple[str, HitRecord]]] = {}
    order: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            if not raw.endswith("\n"):
                state.damaged_lines += 1  # a write cut short by a crash
                state.torn_tail = True
                continue
            kind, _, rest = raw.rstrip("\n").partition(" ")
            try:
                if kind == "H":
                    day, values = json.loads(rest)
                    state.unbatched.append(
                        (day, HitRecord.from_stream(dict(zip(_FIELDS, values, strict=True)))))
                elif kind == "B":
                    batch_id, count_text = rest.split(" ")
                    count = int(count_text)
                    hits = state.unbatched[-count:] if count else []
                    del state.unbatched[len(state.unbatched) - count:]
                    batches[batch_id] = hits
                    order.append(batch_id)
                elif kind == "C":
                    batches.pop(rest, None)
                else:
                    state.damaged_lines += 1
            except (ValueError, TypeError):
                state.damaged_lines += 1
    state.pending = [(b, batches[b]) for b in order if b in batches]
    return state


class Spool:
    """The append-only spool file of one proxy worker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.torn_tail = False
        """The file ends in a line cut short by a crash: the next append starts a new line."""
        self.error: str | None = None

    def open(self) -> bool:
        """Open for appending; False (and :attr:`error` set) when the disk refuses it. A later
        :meth:`append` tries again, so the spool comes back with the disk."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            self._failed(exc, at_start=True)
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _failed(self, exc: OSError, at_start: bool = False) -> None:
        if self.error is None:
            # A warning at start: mitmproxy stops on errors logged during start-up.
            report = log.warning if at_start else log.error
            report("hit spool %s cannot be written (%s): hits are held in memory until Redis "
                   "takes them", self.path, exc)
        self.error = str(exc)

    def append(self, line: str) -> bool:
        """Append one line; False (and :attr:`error` set) when the disk refuses it."""
        if self._fd is None and (self.error is None or not self.open()):
            return False
        assert self._fd is not None
        data = ("\n" + line if self.torn_tail else line).encode("utf-8")
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError("short write to the spool")
        except OSError as exc:
            self._failed(exc)
            return False
        self.torn_tail = False
        if self.error is not None:
            log.warning("hit spool %s is writable again", self.path)
            self.error = None
        return True

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def truncate(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                self.torn_tail = False
            except OSError as exc:
                log.warning("cannot truncate spool %s: %s", self.path, exc)

    def rewrite(self, state: SpoolState) -> bool:
        """Replace the file with just what is still undelivered (after a restart).

        Only with room for the copy: otherwise, or when the copy fails (disk full), the file
        is kept as it is (it replays the same) and False is returned with :attr:`error` set,
        which raises the alarm."""
        size = self.size()
        tmp = self.path.with_suffix(".tmp")
        try:
            free = shutil.disk_usage(self.path.parent).free
            if free < size + REWRITE_HEADROOM_BYTES:
                raise OSError(f"only {free} bytes free, {size} needed to compact the spool")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                for batch_id, hits in state.pending:
                    for day, hit in hits:
                        out.write(hit_line(day, hit))
                    out.write(f"B {batch_id} {len(hits)}\n")
                for day, hit in state.unbatched:
                    out.write(hit_line(day, hit))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            # A warning, not an error: mitmproxy stops on errors logged during start-up.
            log.warning("hit spool %s kept as it is, not compacted (%s): filtering goes on and "
                        "its hits are replayed from memory", self.path, exc)
            self.error = f"disk full: {exc}"
            return False
        self.close()
        tmp.replace(self.path)
        self.torn_tail = False
        self.open()
        return True


def hit_line(day: str, hit: HitRecord) -> str:
    return "H " + json.dumps([day, hit.to_fields()], separators=(",", ":")) + "\n"


class HitQueue:
    """Collects hits from the request path and delivers them in batches, in order, once."""

    def __init__(self, spool: Spool, send: BatchSender | None, *, batch_size: int = 500,
                 flush_interval: float = 0.2, worker_id: str = "") -> None:
        self.spool = spool
        self.send = send
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.worker_id = worker_id or secrets.token_hex(4)
        self._unbatched: list[tuple[str, HitRecord]] = []
        self._pending: deque[tuple[str, list[tuple[str, HitRecord]]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.delivered = 0
        self.dropped = 0
        self.redis_ok = True
        self.last_error: str | None = None
        self._seq = 0

    # -- request path ------------------------------------------------------------------------
    def record(self, day: str, hit: HitRecord) -> None:
        """Called on the request path: one append to the spool, nothing that waits."""
        if len(self._unbatched) + self.queued_in_batches >= MAX_MEMORY_HITS:
            self.dropped += 1
            log.error("hit queue full (%d): hit %s dropped", MAX_MEMORY_HITS, hit.id)
            return
        if self.spool.append(hit_line(day, hit)) and self.send is None:
            return  # no Redis configured: the spool is where hits stay
        self._unbatched.append((day, hit))
        if len(self._unbatched) >= self.batch_size:
            self._wake.set()

    # -- state -------------------------------------------------------------------------------
    @property
    def queued_in_batches(self) -> int:
        return sum(len(h) for _, h in self._pending)

    @property
    def depth(self) -> int:
        return len(self._unbatched) + self.queued_in_batches

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Replay the spool and start delivering. Never raises for a full or failing disk:
        filtering must go on, so what the spool holds is kept in memory and the spool's error
        raises the alarm."""
        try:
            recovered = read_spool(self.spool.path)
        except OSError as exc:
            log.warning("spool %s cannot be read (%s): it is kept as it is", self.spool.path, exc)
            self.spool.error = f"cannot be read: {exc}"
            recovered = SpoolState()
        if recovered.damaged_lines:
            log.warning("spool %s: %d damaged lines skipped", self.spool.path,
                        recovered.damaged_lines)
        self.spool.torn_tail = recovered.torn_tail
        opened = self.spool.open()
        if recovered.pending or recovered.unbatched:
            log.info("spool %s: replaying %d batches and %d hits", self.spool.path,
                     len(recovered.pending), len(recovered.unbatched))
            if opened:
                self.spool.rewrite(recovered)
            self._pending.extend(recovered.pending)
            self._unbatched = list(recovered.unbatched)
        elif opened and self.spool.error is None and self.spool.size():
            self.spool.truncate()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="esafety-hitlog")

    async def stop(self, grace: float = 5.0) -> None:
        """Flush what Redis will take within ``grace`` seconds; the spool keeps the rest."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        self.spool.close()

    def _form_batch(self) -> None:
        if not self._unbatched:
            return
        hits, self._unbatched = self._unbatched, []
        self._seq += 1
        batch_id = f"{self.worker_id}-{int(time.time() * 1000)}-{self._seq}"
        self.spool.append(f"B {batch_id} {len(hits)}\n")
        self._pending.append((batch_id, hits))

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            if not self._closing:
                # Without Redis there is nothing to deliver: sleep until woken or stopped.
                timeout = None if self.send is None else self.flush_interval + backoff
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            self._form_batch()
            backoff = await self._deliver(backoff)
            if self._closing and (self.send is None or not self._pending or not self.redis_ok):
                return

    async def _deliver(self, backoff: float) -> float:
        while self._pending and self.send is not None:
            batch_id, hits = self._pending[0]
            try:
                await self.send(batch_id, hits)
            except Exception as exc:
                if self.redis_ok:
                    log.warning("Redis unavailable (%s): hits are spooled until it returns", exc)
                self.redis_ok = False
                self.last_error = str(exc)
                return min(5.0, max(0.25, backoff * 2))
            self._pending.popleft()
            self.delivered += len(hits)
            self.spool.append(f"C {batch_id}\n")
            if not self.redis_ok:
                log.info("Redis is back: spooled hits delivered")
            self.redis_ok = True
        if (self.send is not None and not self._pending and not self._unbatched
                and self.spool.size() > 0):
            self.spool.truncate()
        return 0.0
