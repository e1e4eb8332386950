"""The hit log's query store: an SQLite database in the data directory, fed from the stream.

Redis is the bus and the live state, but it cannot answer "this user's blocks last month"
over millions of stream entries without reading them all (see docs/architecture.md for the
measurement). Each admin process therefore keeps its own indexed copy of the ``hits`` stream
here; :mod:`admin_api.workers.log_feeder` appends to it in batches and applies retention.

Queries run in worker threads (``asyncio.to_thread``), each on its own read connection; WAL
mode lets them read while the feeder writes. Queries page by a cursor of ``(ts, rowid)``,
newest first, and each picks its index explicitly from the most selective filter given.

The store counts the calls running in worker threads. :meth:`LogStore.close` refuses new
calls, waits for the running ones (a cancelled ``asyncio.to_thread`` task does not stop its
thread) and closes the shared writer under its lock, so SQLite is never used after close: a
late call gets :class:`LogStoreClosed`, never a crash. The database and its ``-wal`` and
``-shm`` files are created 0600 (they hold personal data).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.records import HitRecord

log = logging.getLogger(__name__)

COLUMNS = ("sid", "id", "ts", "user", "grp", "client_ip", "site", "host", "path", "action",
           "category", "rule", "source", "severity", "alert", "decrypted", "method",
           "search_terms", "device", "identified_by")
"""Table columns: the stream id, then HitRecord's fields (``group`` is ``grp`` in SQL)."""
ADDED_COLUMNS = {"device": "TEXT NOT NULL DEFAULT ''",
                 "identified_by": "TEXT NOT NULL DEFAULT ''"}
"""Columns added after the first schema, with their definitions: a database made before them
gets them (``ALTER TABLE ADD COLUMN``) when opened; its older rows read as empty."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (
  sid TEXT NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL, user TEXT NOT NULL, grp TEXT NOT NULL,
  client_ip TEXT NOT NULL, site TEXT NOT NULL, host TEXT NOT NULL, path TEXT NOT NULL,
  action TEXT NOT NULL, category TEXT NOT NULL, rule TEXT NOT NULL, source TEXT NOT NULL,
  severity TEXT NOT NULL, alert INTEGER NOT NULL, decrypted INTEGER NOT NULL,
  method TEXT NOT NULL, search_terms TEXT NOT NULL,
  device TEXT NOT NULL DEFAULT '', identified_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS hits_ts ON hits (ts);
CREATE INDEX IF NOT EXISTS hits_user ON hits (user, ts);
CREATE INDEX IF NOT EXISTS hits_grp ON hits (grp, ts);
CREATE INDEX IF NOT EXISTS hits_host ON hits (host, ts);
CREATE INDEX IF NOT EXISTS hits_category ON hits (category, ts);
CREATE TABLE IF NOT EXISTS feed_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_INDEXES_AFTER_MIGRATION = """
CREATE INDEX IF NOT EXISTS hits_device ON hits (device, ts);
"""

# Built from the constant column list above, never from input.
_INSERT = f"INSERT INTO hits ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608
_SELECT = f"SELECT rowid, {', '.join(COLUMNS)} FROM hits"  # noqa: S608
DELETE_CHUNK = 20_000
CLOSE_WAIT_SECONDS = 60.0
"""How long :meth:`LogStore.close` waits for calls still running in worker threads."""
DATABASE_SUFFIXES = ("", "-wal", "-shm")
"""The database file and SQLite's companions in WAL mode."""


class CursorError(ValueError):
    pass


class LogStoreClosed(RuntimeError):
    """The log store was used after :meth:`LogStore.close` (for example at shutdown)."""


@dataclass(frozen=True)
class HitQuery:
    start_ts: float | None = None
    end_ts: float | None = None
    """Exclusive."""
    user: str | None = None
    group: str | None = None
    site: str | None = None
    host: str | None = None
    category: str | None = None
    action: str | None = None
    text: str | None = None
    """Substring of the host or path (``q``)."""
    device: str | None = None
    """The device id (a MAC address, the extension's install id, a Kerberos host)."""


def encode_cursor(ts: float, rowid: int) -> str:
    return base64.urlsafe_b64encode(f"{ts!r}:{rowid}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        ts, rowid = raw.split(":")
        return float(ts), int(rowid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CursorError("cursor is not one this server returned") from exc


def row_from_hit(stream_id: str, hit: HitRecord) -> tuple[Any, ...]:
    return (stream_id, hit.id, hit.ts, hit.user, hit.group, hit.client_ip, hit.site, hit.host,
            hit.path, hit.action, hit.category, hit.rule, hit.source, hit.severity,
            1 if hit.alert else 0, 1 if hit.decrypted else 0, hit.method, hit.search_terms,
            hit.device, hit.identified_by)


def row_from_entry(stream_id: str, fields: Mapping[Any, Any]) -> tuple[Any, ...]:
    """A stream entry's fields as a table row: ``row_from_hit(stream_id, hit_from_entry(fields))``
    without building the HitRecord (the log feeder converts every hit).

    Raises ValueError when ``ts`` is not a number, as ``HitRecord.from_stream`` does."""
    if fields and not isinstance(next(iter(fields)), str):
        fields = {(k.decode() if isinstance(k, bytes) else k):
                  (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()}
    get = fields.get
    return (stream_id, get("id", ""), float(get("ts") or 0), get("user", ""), get("group", ""),
            get("client_ip", ""), get("site", ""), get("host", ""), get("path", ""),
            get("action", ""), get("category", ""), get("rule", ""), get("source", ""),
            get("severity", ""), 1 if get("alert") == "1" else 0,
            1 if get("decrypted") == "1" else 0, get("method", ""), get("search_terms", ""),
            get("device", ""), get("identified_by", ""))


def stream_position(stream_id: str) -> tuple[int, int]:
    """A Redis stream id (``<ms>-<seq>``) as numbers, in the stream's order."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def hit_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A result row (rowid first) as the API shows a hit: HitRecord's fields."""
    data = dict(zip(COLUMNS, row[1:], strict=True))
    data["group"] = data.pop("grp")
    data["alert"] = bool(data["alert"])
    data["decrypted"] = bool(data["decrypted"])
    del data["sid"]
    return data


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Bring a database made with an older schema up to date; returns the columns added."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(hits)")}
    added = []
    for column, definition in ADDED_COLUMNS.items():
        if column not in present:
            # Names and definitions come from the constant above, never from input.
            conn.execute(f"ALTER TABLE hits ADD COLUMN {column} {definition}")
            added.append(column)
    conn.executescript(_INDEXES_AFTER_MIGRATION)
    if added:
        log.info("log store: added the columns %s to %s", ", ".join(added), "hits")
    return added


class LogStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._calls = threading.Condition()
        self._running = 0
        self._closed = False

    def files(self) -> list[Path]:
        """The database and its WAL companions that exist now."""
        candidates = [self.path.with_name(self.path.name + s) for s in DATABASE_SUFFIXES]
        return [p for p in candidates if p.exists()]

    def open(self) -> LogStore:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 before SQLite sees it: SQLite gives the -wal and -shm files the
        # database file's mode, and a umask would otherwise leave all three world-readable.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for path in self.files():
            path.chmod(0o600)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-262144")
        conn.executescript(_SCHEMA)
        migrate(conn)
        self._writer = conn
        self._closed = False
        return self

    @contextmanager
    def _call(self) -> Iterator[None]:
        """Count one call (in whatever thread runs it) so that close() can wait for it."""
        with self._calls:
            if self._closed:
                raise LogStoreClosed("the log store is closed")
            self._running += 1
        try:
            yield
        finally:
            with self._calls:
                self._running -= 1
                self._calls.notify_all()

    def close(self, wait_seconds: float = CLOSE_WAIT_SECONDS) -> None:
        """Refuse new calls, wait for the running ones, then close the writer under its lock.

        Blocks while calls finish: from the event loop, use :meth:`aclose`."""
        with self._calls:
            self._closed = True
            if not self._calls.wait_for(lambda: self._running == 0, wait_seconds):
                log.warning("log store: %d calls still running after %.0f s; closing the "
                            "writer between their statements", self._running, wait_seconds)
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    @property
    def closed(self) -> bool:
        return self._closed

    def _conn(self) -> sqlite3.Connection:
        """The writer; only while holding ``_write_lock``."""
        if self._writer is None:
            raise LogStoreClosed("the log store is closed" if self._closed
                                 else "the log store is not open")
        return self._writer

    def reader(self) -> sqlite3.Connection:
        if self._closed:
            raise LogStoreClosed("the log store is closed")
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA mmap_size=1073741824")
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    # -- writing -------------------------------------------------------------------------
    def last_stream_id(self) -> str:
        with self._call(), self._write_lock:
            row = self._conn().execute(
                "SELECT value FROM feed_state WHERE name='last_stream_id'").fetchone()
        return str(row[0]) if row else "0-0"

    def append(self, rows: Iterable[tuple[Any, ...]], last_stream_id: str | None) -> int:
        """Insert rows and remember the stream position, in one transaction; return how many
        rows were inserted. With a position, as :meth:`append_batches`."""
        if last_stream_id is None:
            with self._call(), self._write_lock:
                conn = self._conn()
                conn.execute("BEGIN")
                try:
                    cursor = conn.executemany(_INSERT, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return max(0, cursor.rowcount)
        return self.append_batches([(rows, last_stream_id)])

    def append_batches(self, batches: Iterable[tuple[Iterable[tuple[Any, ...]], str]]) -> int:
        """Insert batches of stream entries' rows and save the position after the last batch,
        all in one transaction; return how many rows were inserted.

        ``batches`` yields ``(rows, position after them)`` in stream order, and may be a
        generator that waits for the next batch (the log feeder hands batches over while it
        reads the following ones); if it raises, nothing is stored. Rows at or before the
        position already saved were stored by an earlier transaction and are skipped, and the
        saved position never moves back: a batch handed over twice (a feeder call cancelled
        while its worker thread went on to commit, then retried) is stored once."""
        with self._call(), self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                row = conn.execute(
                    "SELECT value FROM feed_state WHERE name='last_stream_id'").fetchone()
                saved_id = str(row[0]) if row else None
                saved = stream_position(saved_id) if saved_id else (-1, -1)
                inserted = 0
                for rows, last_stream_id in batches:
                    if stream_position(last_stream_id) <= saved:
                        continue  # all stored already
                    rows = rows if isinstance(rows, list) else list(rows)
                    if rows and stream_position(rows[0][0]) <= saved:
                        rows = [r for r in rows if stream_position(r[0]) > saved]
                    inserted += max(0, conn.executemany(_INSERT, rows).rowcount)
                    saved, saved_id = stream_position(last_stream_id), last_stream_id
                if saved_id is not None:
                    conn.execute("INSERT INTO feed_state (name, value) VALUES ('last_stream_id', ?)"
                                 " ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                                 (saved_id,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return inserted

    def delete_older_than(self, cutoff_ts: float) -> int:
        """Retention: delete in chunks so readers and the feeder are never held up for long.

        Stops with :class:`LogStoreClosed` between chunks once close() has been called."""
        deleted = 0
        with self._call():
            while True:
                if self._closed:
                    raise LogStoreClosed("the log store closed during retention")
                with self._write_lock:
                    cursor = self._conn().execute(
                        "DELETE FROM hits WHERE rowid IN (SELECT rowid FROM hits INDEXED BY "
                        "hits_ts WHERE ts < ? LIMIT ?)", (cutoff_ts, DELETE_CHUNK))
                    count = cursor.rowcount
                deleted += count
                if count < DELETE_CHUNK:
                    return deleted

    def count(self) -> int:
        with self._call(), closing(self.reader()) as conn:
            return int(conn.execute("SELECT count(*) FROM hits").fetchone()[0])

    # -- reading -------------------------------------------------------------------------
    @staticmethod
    def _where(query: HitQuery, after: tuple[float, int] | None) -> tuple[str, str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.user is not None:
            index = "hits_user"
        elif query.device is not None:
            index = "hits_device"
        elif query.host is not None:
            index = "hits_host"
        elif query.category is not None:
            index = "hits_category"
        elif query.group is not None:
            index = "hits_grp"
        else:
            index = "hits_ts"
        for column, value in (("user", query.user), ("host", query.host),
                              ("category", query.category), ("grp", query.group),
                              ("site", query.site), ("action", query.action),
                              ("device", query.device)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.start_ts is not None:
            clauses.append("ts >= ?")
            params.append(query.start_ts)
        if query.end_ts is not None:
            clauses.append("ts < ?")
            params.append(query.end_ts)
        if after is not None:
            clauses.append("ts <= ? AND NOT (ts = ? AND rowid >= ?)")
            params.extend([after[0], after[0], after[1]])
        if query.text:
            clauses.append("(instr(host, ?) > 0 OR instr(path, ?) > 0)")
            params.extend([query.text, query.text])
        return index, (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def page(self, query: HitQuery, cursor: str | None, limit: int
             ) -> tuple[list[dict[str, Any]], str | None]:
        """One page, newest first, and the cursor of the next page (None at the end)."""
        after = decode_cursor(cursor) if cursor else None
        with self._call(), closing(self.reader()) as conn:
            rows = self._rows(conn, query, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1][3], rows[-1][0]) if more and rows else None
        return [hit_dict(r) for r in rows], next_cursor

    def _rows(self, conn: sqlite3.Connection, query: HitQuery, after: tuple[float, int] | None,
              limit: int) -> list[tuple[Any, ...]]:
        index, where, params = self._where(query, after)
        sql = f"{_SELECT} INDEXED BY {index}{where} ORDER BY ts DESC, rowid DESC LIMIT ?"
        return list(conn.execute(sql, [*params, limit]))

    def iterate(self, query: HitQuery, chunk: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """Every matching hit, newest first, in chunks (for CSV export)."""
        after: tuple[float, int] | None = None
        with closing(self.reader()) as conn:
            while True:
                rows = self._rows(conn, query, after, chunk)
                if not rows:
                    return
                yield [hit_dict(r) for r in rows]
                if len(rows) < chunk:
                    return
                after = (rows[-1][3], rows[-1][0])
