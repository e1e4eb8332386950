"""Backup and restore of a deployment's Redis data: users, unblock requests, overrides,
reports, alerts, the audit log and the daily counters.

The backup is logical (one JSON line per key, by type: string, hash, set, sorted set, list,
stream with its entry ids), gzip-compressed, written 0600. It restores into any Redis version,
under the same or another key prefix. Left out by default: raw hits (personal data with its own
retention; ``include_hits`` adds them), sign-in tokens (a restore must not revive sessions),
and short-lived rate-limit and batch markers.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from store.keys import Keys

FORMAT = "esafety-backup/1"
_ALWAYS_SKIPPED = ("token:", "usertokens:", "ratelimit:", "hitbatch:", "proxy:")


class BackupError(RuntimeError):
    pass


@dataclass
class BackupSummary:
    keys: int
    by_type: dict[str, int]
    skipped: int


def _wanted(relative: str, include_hits: bool) -> bool:
    if relative.startswith(_ALWAYS_SKIPPED):
        return False
    return include_hits or not (relative == "hits" or relative.startswith("hitref:"))


async def _dump_key(redis: Redis, key: str) -> dict[str, Any] | None:
    kind = await redis.type(key)
    ttl = await redis.pttl(key)
    record: dict[str, Any] = {"type": kind, "pttl": ttl if ttl and ttl > 0 else None}
    if kind == "string":
        record["value"] = await redis.get(key)
    elif kind == "hash":
        record["value"] = await redis.hgetall(key)
    elif kind == "set":
        record["value"] = sorted(await redis.smembers(key))
    elif kind == "zset":
        record["value"] = await redis.zrange(key, 0, -1, withscores=True)
    elif kind == "list":
        record["value"] = await redis.lrange(key, 0, -1)
    elif kind == "stream":
        entries: list[list[Any]] = []
        last: str = "-"
        while True:
            batch = await redis.xrange(key, min=last, count=5000)
            if last != "-" and batch and batch[0][0] == last:
                batch = batch[1:]
            if not batch:
                break
            entries.extend([entry_id, fields] for entry_id, fields in batch)
            last = str(batch[-1][0])
        record["value"] = entries
    else:
        return None  # a key that vanished between SCAN and TYPE
    return record


async def backup(redis: Redis, prefix: str, out: Path, *, include_hits: bool = False
                 ) -> BackupSummary:
    """Write every wanted key under ``prefix`` (its hash-tagged form, as :class:`Keys` spells
    the keys) to ``out``; ``redis`` must decode responses."""
    prefix = Keys(prefix).prefix
    info = await redis.info("server")
    by_type: dict[str, int] = {}
    skipped = 0
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as fh:
        header = {"format": FORMAT, "prefix": prefix, "created_at": time.time(),
                  "redis_version": info.get("redis_version"), "include_hits": include_hits}
        fh.write((json.dumps(header) + "\n").encode())
        async for key in redis.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
            relative = key[len(prefix):]
            if not _wanted(relative, include_hits):
                skipped += 1
                continue
            record = await _dump_key(redis, key)
            if record is None:
                continue
            record["key"] = relative
            by_type[record["type"]] = by_type.get(record["type"], 0) + 1
            fh.write((json.dumps(record, separators=(",", ":")) + "\n").encode())
    tmp.replace(out)
    return BackupSummary(sum(by_type.values()), by_type, skipped)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            header = json.loads(fh.readline() or "{}")
            if header.get("format") != FORMAT:
                raise BackupError(f"{path} is not an esafety backup ({header.get('format')!r})")
            yield header
            for number, line in enumerate(fh, start=2):
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise BackupError(f"{path}: line {number} is damaged") from exc
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BackupError(f"cannot read {path}: {exc}") from exc


async def restore(redis: Redis, prefix: str, source: Path, *, force: bool = False
                  ) -> BackupSummary:
    """Load a backup under ``prefix`` (its hash-tagged form, whatever prefix the backup was
    made under). Refuses a non-empty target unless ``force``."""
    prefix = Keys(prefix).prefix
    records = _records(source)
    next(records)  # the header, validated
    if not force:
        async for _key in redis.scan_iter(match=_glob_escape(prefix) + "*", count=100):
            raise BackupError(f"the target already holds keys under {prefix!r}; "
                              "restore into an empty Redis or pass --force to overwrite")
    by_type: dict[str, int] = {}
    for record in records:
        key = prefix + record["key"]
        kind, value = record["type"], record["value"]
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if kind == "string":
                pipe.set(key, value)
            elif kind == "hash":
                pipe.hset(key, mapping=value)
            elif kind == "set":
                pipe.sadd(key, *value)
            elif kind == "zset":
                pipe.zadd(key, {member: score for member, score in value})
            elif kind == "list":
                pipe.rpush(key, *value)
            elif kind == "stream":
                for entry_id, fields in value:
                    pipe.xadd(key, fields, id=entry_id)
            else:
                raise BackupError(f"unknown key type {kind!r} for {record['key']}")
            if record.get("pttl"):
                pipe.pexpire(key, int(record["pttl"]))
            await pipe.execute()
        by_type[kind] = by_type.get(kind, 0) + 1
    return BackupSummary(sum(by_type.values()), by_type, 0)
