"""The append-only audit log: who did what, when, with the state before and after.

Entries go to the ``audit`` stream with XADD and are never changed. The only deletion is
retention (``retention.audit_days``), which trims whole entries older than the limit.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from store.keys import Keys


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    ts: float
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    ip: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "actor": self.actor, "action": self.action,
                "target": self.target, "before": self.before, "after": self.after, "ip": self.ip}


async def append(redis: Redis, keys: Keys, *, actor: str, action: str, target: str,
                 before: Any = None, after: Any = None, ip: str = "") -> str:
    fields = {"ts": f"{time.time():.3f}", "actor": actor, "action": action, "target": target,
              "before": json.dumps(before), "after": json.dumps(after), "ip": ip}
    return str(await redis.xadd(keys.audit, fields))  # type: ignore[arg-type]


def _entry(stream_id: str, fields: dict[str, str]) -> AuditEntry:
    def loads(text: str | None) -> Any:
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text
    return AuditEntry(id=stream_id, ts=float(fields.get("ts", 0) or 0),
                      actor=fields.get("actor", ""), action=fields.get("action", ""),
                      target=fields.get("target", ""), before=loads(fields.get("before")),
                      after=loads(fields.get("after")), ip=fields.get("ip", ""))


async def read(redis: Redis, keys: Keys, *, start_ms: int | None, end_ms: int | None,
               actor: str | None, action: str | None, cursor: str | None, limit: int
               ) -> tuple[list[AuditEntry], str | None]:
    """Entries newest first, filtered; returns the page and the cursor for the next one."""
    high = f"({cursor}" if cursor else (f"{end_ms}-18446744073709551615" if end_ms is not None
                                         else "+")
    low = f"{start_ms}-0" if start_ms is not None else "-"
    out: list[AuditEntry] = []
    scan = max(limit * 4, 200)
    while len(out) < limit:
        batch = await redis.xrevrange(keys.audit, max=high, min=low, count=scan)
        if not batch:
            return out, None
        for stream_id, fields in batch:
            entry = _entry(str(stream_id), {str(k): str(v) for k, v in (fields or {}).items()})
            if (actor is None or entry.actor == actor) and (action is None or entry.action == action):
                out.append(entry)
                if len(out) == limit:
                    return out, entry.id
        high = f"({batch[-1][0]!s}"
        if len(batch) < scan:
            return out, None
    return out, None


async def trim_older_than(redis: Redis, keys: Keys, older_than_ms: int) -> int:
    return int(await redis.xtrim(keys.audit, minid=f"{older_than_ms}-0", approximate=False))


class AuditLog:
    """The audit log of one store (the functions above, bound to it)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def append(self, *, actor: str, action: str, target: str, before: Any = None,
                     after: Any = None, ip: str = "") -> str:
        return await append(self._redis, self._keys, actor=actor, action=action,
                            target=target, before=before, after=after, ip=ip)

    async def read(self, *, start_ms: int | None, end_ms: int | None, actor: str | None,
                   action: str | None, cursor: str | None, limit: int
                   ) -> tuple[list[AuditEntry], str | None]:
        return await read(self._redis, self._keys, start_ms=start_ms, end_ms=end_ms,
                          actor=actor, action=action, cursor=cursor, limit=limit)

    async def trim_older_than(self, older_than_ms: int) -> int:
        return await trim_older_than(self._redis, self._keys, older_than_ms)
