"""JSON records in Redis with indexes kept in the same transaction as every write.

Used for unblock requests, accidental-hit reports and safeguarding alerts. Each record is a
JSON string under its own key (``<kind>:<id>``); ids are decimal numbers from a
``seq:<kind>`` counter, so they are short enough to read out. Alongside each record, in the
same MULTI/EXEC as the record's own write (a WATCH on the record key retries a write that
raced another), the collection keeps:

* ``<kind>:index``, every id scored by creation time (the layout older releases wrote);
* ``<kind>:by-<field>:<value>``, one sorted set per value of each indexed field (status,
  user, ...), scored by creation time too, so a filtered list pages through exactly the
  records it shows;
* ``<kind>:figures:<YYYYQn>``, counts per quarter of creation (total, by status, ...), and
  ``<kind>:durations:<YYYYQn>``, id -> seconds to a decision, so a quarter's report reads a
  few keys, never the records.

A stored record carries ``"_indexed": <format>``. One written by an older release has none:
:meth:`IndexedCollection.build_indexes` (run once at admin start, idempotent and safe next
to live writers) adds its index entries and marks it, and a write to an unmarked record
treats it as not yet counted.

A page is read through one index (the first indexed field the filter names, else the
creation index): the cost of a page grows with the page, plus whatever the other filters
skip, which :data:`SCAN_BUDGET` bounds; a page cut short by that budget still returns a
cursor to carry on from, so nothing is ever silently left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from store.keys import Keys

INDEX_FORMAT = 1
"""Bumped when what is indexed changes: the next admin start rebuilds the indexes."""
INDEXED_MARK = "_indexed"
ATTEMPTS = 20
SCAN_BUDGET = 2000
"""At most this many index entries are looked at for one page (plus the page itself)."""
BUILD_CHUNK = 500
_CURSOR = re.compile(r"(-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:e[-+][0-9]{1,3})?)_([0-9]{1,9})")
MAX_ID_DIGITS = 18
FIGURES_DAYS = 730
"""How long a quarter's figures are kept after their last change (``retention.counters_days``
in a deployment): records may be deleted long before, and the figures stay."""


class StoredRecord(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> float: ...

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=StoredRecord)
QueueMore = Callable[[Pipeline], object] | None
AlsoWrite = Callable[[Pipeline, R | None, R], Awaitable[QueueMore]]
"""Reads (under WATCH) what else a write changes; returns what to queue after MULTI."""


def quarter_of(ts: float, tz: ZoneInfo) -> str:
    """The calendar quarter (in ``tz``) of an epoch time, as ``2026Q3``."""
    moment = datetime.fromtimestamp(ts, tz)
    return f"{moment.year}Q{(moment.month - 1) // 3 + 1}"


@dataclass(frozen=True)
class RecordKind(Generic[R]):
    """How one kind of record is stored and indexed."""

    name: str
    """The key segment and id sequence name: ``unblock``, ``report``, ``alert``."""
    decode: Callable[[dict[str, Any]], R]
    indexed: tuple[str, ...]
    """Fields with an index of their own, in the order one is chosen for a filter (the most
    selective first)."""
    figures: Callable[[R], Mapping[str, int]]
    """What a record adds to its quarter's figures (field -> count)."""
    duration: Callable[[R], float | None] = field(default=lambda _record: None)
    """Seconds from creation to the record's decision, once it has one."""
    site: Callable[[R], str] = field(default=lambda _record: "")
    """The site (centre) a record belongs to: its figures and durations are also kept per
    site, so a site's quarterly report reads its own."""


@dataclass(frozen=True)
class PageCursor:
    """Where a page ended in its index: the last score shown, and how many entries with
    exactly that score were already passed (entries of equal score keep a fixed order)."""

    score: float
    skip: int

    def __str__(self) -> str:
        return f"{self.score!r}_{self.skip}"

    @classmethod
    def parse(cls, text: str) -> PageCursor:
        """A cursor :meth:`__str__` made; ValueError for anything else."""
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise ValueError("not a cursor")
        return cls(float(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class Page(Generic[R]):
    items: list[R]
    next_cursor: PageCursor | None
    scanned: int
    """Index entries looked at (for tests and metrics: a page's cost)."""


@dataclass(frozen=True)
class DurationFigures:
    count: int
    median: float | None
    p90: float | None


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class IndexedCollection(Generic[R]):
    """Records of one kind: writes that keep their indexes, and paged, indexed reads."""

    def __init__(self, redis: Redis, keys: Keys, kind: RecordKind[R],
                 record_key: Callable[[str], str], all_index: str, tz: ZoneInfo) -> None:
        self._redis = redis
        self._keys = keys
        self.kind = kind
        self.record_key = record_key
        self._all_index = all_index
        self._tz = tz
        self.figures_seconds = FIGURES_DAYS * 86400
        """Time to live of the figures and durations (set from ``retention.counters_days``)."""

    # -- keys and the entries a record owns ------------------------------------------------

    def index_key(self, field_name: str | None, value: str | None = None) -> str:
        """The index of records whose ``field_name`` is ``value`` (None: every record)."""
        if field_name is None:
            return self._all_index
        return self._keys.record_index(self.kind.name, field_name, value or "")

    def _entries(self, record: R) -> dict[str, float]:
        out = {self._all_index: record.created_at}
        for name in self.kind.indexed:
            value = getattr(record, name)
            if isinstance(value, str) and value:
                out[self.index_key(name, value)] = record.created_at
        return out

    def _sites(self, record: R) -> list[str | None]:
        """None (every site's figures) and the record's own site, when it has one."""
        site = self.kind.site(record)
        return [None, site] if site else [None]

    def _figures(self, record: R) -> dict[tuple[str, str], int]:
        quarter = quarter_of(record.created_at, self._tz)
        counts = self.kind.figures(record)
        return {(self._keys.record_figures(self.kind.name, quarter, site), name): count
                for site in self._sites(record) for name, count in counts.items()}

    def _durations(self, record: R) -> dict[str, float]:
        seconds = self.kind.duration(record)
        if seconds is None:
            return {}
        quarter = quarter_of(record.created_at, self._tz)
        return {self._keys.record_durations(self.kind.name, quarter, site): seconds
                for site in self._sites(record)}

    def encode(self, record: R) -> str:
        return json.dumps({**record.to_dict(), INDEXED_MARK: INDEX_FORMAT},
                          separators=(",", ":"))

    def _decode_raw(self, raw: str | bytes | None) -> tuple[R | None, bool]:
        """(record, whether its index entries exist)."""
        if raw is None:
            return None, False
        data: dict[str, Any] = json.loads(raw)
        return self.kind.decode(data), data.get(INDEXED_MARK) == INDEX_FORMAT

    # -- writing ---------------------------------------------------------------------------

    def queue_write(self, pipe: Pipeline, record_id: str, old: R | None, new: R | None, *,
                    keep_figures: bool = False) -> None:
        """Queue (after MULTI) the write of ``new`` over ``old`` (None: absent, or not yet
        indexed), with every index, figure and duration change; ``new`` None deletes.
        ``keep_figures`` (retention) leaves the record's part of its quarter's figures and
        durations: the report still counts a record housekeeping has deleted."""
        before = self._entries(old) if old is not None else {}
        after = self._entries(new) if new is not None else {}
        for key in before.keys() - after.keys():
            pipe.zrem(key, record_id)
        for key, score in after.items():
            if before.get(key) != score:
                pipe.zadd(key, {record_id: score})
        if not keep_figures:
            self._queue_figures(pipe, record_id, old, new)
        if new is None:
            pipe.delete(self.record_key(record_id))
        else:
            pipe.set(self.record_key(record_id), self.encode(new))

    def _queue_figures(self, pipe: Pipeline, record_id: str, old: R | None, new: R | None
                       ) -> None:
        old_figures = self._figures(old) if old is not None else {}
        new_figures = self._figures(new) if new is not None else {}
        touched: set[str] = set()
        for hash_key, name in old_figures.keys() | new_figures.keys():
            delta = new_figures.get((hash_key, name), 0) - old_figures.get((hash_key, name), 0)
            if delta:
                pipe.hincrby(hash_key, name, delta)
                touched.add(hash_key)
        old_durations = self._durations(old) if old is not None else {}
        new_durations = self._durations(new) if new is not None else {}
        for key in old_durations.keys() - new_durations.keys():
            pipe.zrem(key, record_id)
        for key, seconds in new_durations.items():
            if old_durations.get(key) != seconds:
                pipe.zadd(key, {record_id: seconds})
                touched.add(key)
        for key in sorted(touched):
            pipe.expire(key, self.figures_seconds)

    async def read_watched(self, pipe: Pipeline, record_id: str) -> tuple[R | None, bool]:
        """Inside a WATCH: the record and whether it is indexed."""
        return self._decode_raw(await pipe.get(self.record_key(record_id)))

    async def new_id(self) -> str:
        return str(int(await self._redis.incr(self._keys.sequence(self.kind.name))))

    async def update(self, record_id: str, change: Callable[[R | None], R | None], *,
                     watch: Sequence[str] = (), also: AlsoWrite[R] | None = None) -> R | None:
        """Apply ``change`` to the stored record (None when absent) without losing a
        concurrent write: WATCH, read, MULTI, write with its index changes, retry on a
        conflict. ``change`` returning its argument unchanged writes nothing (unless the
        record is not indexed yet). ``also`` may read keys named in ``watch`` and returns
        what to queue on them in the same transaction."""
        key = self.record_key(record_id)
        for _ in range(ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key, *watch)
                    current, indexed = await self.read_watched(pipe, record_id)
                    updated = change(current)
                    if updated is None or (updated is current and indexed):
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return updated
                    queue_more = await also(pipe, current, updated) if also is not None else None
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self.queue_write(pipe, record_id, current if indexed else None, updated)
                    if queue_more is not None:
                        queue_more(pipe)
                    await pipe.execute()
                    return updated
                except WatchError:
                    continue
        raise RuntimeError(f"{self.kind.name} {record_id}: writes kept conflicting")

    async def put(self, record: R) -> R:
        """Write ``record`` whole (creating it or replacing the stored one)."""
        await self.update(record.id, lambda _current: record)
        return record

    # -- reading ---------------------------------------------------------------------------

    async def get(self, record_id: str) -> R | None:
        if not record_id.isdigit() or len(record_id) > MAX_ID_DIGITS:
            return None
        record, _ = self._decode_raw(await self._redis.get(self.record_key(record_id)))
        return record

    async def _load(self, ids: Sequence[str]) -> list[R | None]:
        if not ids:
            return []
        values = await self._redis.mget([self.record_key(i) for i in ids])
        return [self._decode_raw(v)[0] for v in values]

    async def page(self, *, equal: Mapping[str, str | None] | None = None,
                   created_from: float | None = None, created_before: float | None = None,
                   keep: Callable[[R], bool] | None = None, cursor: PageCursor | None = None,
                   limit: int = 50) -> Page[R]:
        """Records newest first whose fields equal ``equal`` (None values are no filter),
        created in [``created_from``, ``created_before``) and accepted by ``keep``; at most
        ``limit``, continuing after ``cursor``."""
        wanted = {k: v for k, v in (equal or {}).items() if v is not None}
        unknown = set(wanted) - set(self.kind.indexed)
        if unknown:
            raise ValueError(f"{self.kind.name} records have no index on {sorted(unknown)}")
        chosen = next((name for name in self.kind.indexed if name in wanted), None)
        index = self.index_key(chosen, wanted[chosen] if chosen is not None else None)
        rest = {k: v for k, v in wanted.items() if k != chosen}
        low: str | float = created_from if created_from is not None else "-inf"
        high: str | float = f"({created_before!r}" if created_before is not None else "+inf"
        last_score: float | None = None
        passed = 0
        if cursor is not None and (created_before is None or cursor.score < created_before):
            high, last_score, passed = cursor.score, cursor.score, cursor.skip
        out: list[R] = []
        scanned = 0
        filtered = bool(rest) or keep is not None
        while True:
            want = limit + 1 - len(out)
            count = max(want, min(4 * want, 500)) if filtered else want
            count = max(1, min(count, SCAN_BUDGET + limit + 1 - scanned))
            reply: Any = await self._redis.zrevrangebyscore(
                index, high, low, start=passed, num=count, withscores=True)
            batch: list[tuple[Any, float]] = list(reply)
            records = await self._load([_s(member) for member, _ in batch])
            for (_member, score), record in zip(batch, records, strict=True):
                if (record is not None
                        and all(getattr(record, k) == v for k, v in rest.items())
                        and (keep is None or keep(record))):
                    if len(out) == limit and last_score is not None:
                        # one more exists: the page ends before it
                        return Page(out, PageCursor(last_score, passed), scanned)
                    out.append(record)
                scanned += 1
                if score == last_score:
                    passed += 1
                else:
                    high, last_score, passed = score, score, 1
            if len(batch) < count:
                return Page(out, None, scanned)
            if scanned >= SCAN_BUDGET + limit and last_score is not None:
                return Page(out, PageCursor(last_score, passed), scanned)

    async def each(self, *, equal: Mapping[str, str | None] | None = None,
                   chunk: int = BUILD_CHUNK) -> list[R]:
        """Every record matching ``equal`` (through its index: the cost grows with what is
        returned). For answers that are a whole set, like a site's earlier requests."""
        out: list[R] = []
        cursor: PageCursor | None = None
        while True:
            page = await self.page(equal=equal, cursor=cursor, limit=chunk)
            out.extend(page.items)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    async def count(self, field_name: str | None = None, value: str | None = None) -> int:
        """How many records have ``field_name`` == ``value`` (every record when None)."""
        return int(await self._redis.zcard(self.index_key(field_name, value)))

    async def figures(self, quarter: str, site: str | None = None) -> dict[str, int]:
        """The quarter's figures: every site's, or one ``site``'s."""
        raw = await self._redis.hgetall(self._keys.record_figures(self.kind.name, quarter, site))
        # a figure below zero can only come from a record counted before per-site figures
        # existed and changed since: there is no such count to show
        return {_s(k): int(v) for k, v in raw.items() if int(v) > 0}

    async def durations(self, quarter: str, site: str | None = None) -> DurationFigures:
        """How many records of ``quarter`` (of one ``site``'s, when given) have a duration,
        the median and the 90th percentile (by rank: a few reads whatever the number)."""
        key = self._keys.record_durations(self.kind.name, quarter, site)
        count = int(await self._redis.zcard(key))
        if count == 0:
            return DurationFigures(0, None, None)
        ranks = sorted({(count - 1) // 2, count // 2, min(count - 1, int(0.9 * count))})
        async with self._redis.pipeline(transaction=False) as pipe:
            for rank in ranks:
                pipe.zrange(key, rank, rank, withscores=True)
            replies = await pipe.execute()
        at = {rank: float(reply[0][1]) for rank, reply in zip(ranks, replies, strict=True)
              if reply}
        median = (at[(count - 1) // 2] + at[count // 2]) / 2
        return DurationFigures(count, median, at[min(count - 1, int(0.9 * count))])

    # -- retention and upgrades ------------------------------------------------------------

    async def delete_older_than(self, cutoff: float) -> int:
        """Remove records created before ``cutoff`` (retention), with their index entries.
        Their part of the quarter's figures stays (the figures expire on their own, after
        ``figures_seconds``): a report of an older quarter keeps its numbers."""
        removed = 0
        while True:
            found: Any = await self._redis.zrangebyscore(
                self._all_index, "-inf", f"({cutoff!r}", start=0, num=BUILD_CHUNK)
            ids = [_s(i) for i in found]
            if not ids:
                return removed
            keys = [self.record_key(i) for i in ids]
            for _ in range(ATTEMPTS):
                async with self._redis.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(*keys)
                        values = await pipe.mget(keys)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        for record_id, raw in zip(ids, values, strict=True):
                            record, indexed = self._decode_raw(raw)
                            if record is not None and indexed:
                                self.queue_write(pipe, record_id, record, None,
                                                 keep_figures=True)
                            pipe.delete(self.record_key(record_id))
                            pipe.zrem(self._all_index, record_id)
                        await pipe.execute()
                        break
                    except WatchError:
                        continue
            else:
                raise RuntimeError(f"{self.kind.name} retention kept conflicting")
            removed += len(ids)

    async def build_indexes(self) -> int:
        """Index every record an older release wrote (once; later calls return at once).
        Safe while other processes write: each record is marked as it is indexed, in the same
        transaction. Returns how many records were indexed."""
        format_key = self._keys.record_index_format(self.kind.name)
        if await self._redis.get(format_key) == str(INDEX_FORMAT):
            return 0
        built = 0
        low: str | float = "-inf"
        passed = 0  # entries already seen with exactly the score ``low``
        while True:  # oldest first, by score: retention deleting old entries shifts nothing
            found: Any = await self._redis.zrangebyscore(
                self._all_index, low, "+inf", start=passed, num=BUILD_CHUNK, withscores=True)
            if not found:
                break
            ids = [_s(member) for member, _score in found]
            for record_id, raw in zip(ids, await self._redis.mget(
                    [self.record_key(i) for i in ids]), strict=True):
                if raw is None or json.loads(raw).get(INDEXED_MARK) == INDEX_FORMAT:
                    continue
                await self.update(record_id, lambda current: current)
                built += 1
            last = found[-1][1]
            same = sum(1 for _member, score in found if score == last)
            passed, low = (passed + same, last) if last == low else (same, last)
            if len(found) < BUILD_CHUNK:
                break
        await self._redis.set(format_key, str(INDEX_FORMAT))
        return built
