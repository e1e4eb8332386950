"""Safeguarding alerts: stored, grouped, acknowledged.

Repeated alerting hits from one user in one category within the grouping window add to one
open alert (its count, last seen time and recent hit references) instead of raising a flood.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.exceptions import WatchError

from store.indexed_collection import IndexedCollection, RecordKind
from store.keys import Keys
from store.records import HitRecord

OPEN, ACKNOWLEDGED = "open", "acknowledged"
RECENT_LIMIT = 20
SEARCH_CATEGORY = "prevent_search"
"""The grouping category of a watched search term on an otherwise uncategorised page."""


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    user: str
    group: str
    category: str
    severity: str
    first_seen: float
    last_seen: float
    created_at: float
    count: int = 1
    hit_ids: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    search_terms: list[str] = field(default_factory=list)
    client_ip: str = ""
    site: str = ""
    status: str = OPEN
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    note: str = ""
    delivery: dict[str, str] = field(default_factory=dict)
    """Channel (webhook, email) -> ``sent``, ``failed: ...`` or ``not configured``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def alerting(hit: HitRecord) -> bool:
    """Whether a hit raises a safeguarding alert."""
    return hit.alert or bool(hit.search_terms)


def _figures(alert: Alert) -> dict[str, int]:
    out = {"total": 1, f"status:{alert.status}": 1, f"category:{alert.category}": 1,
           f"hits:{alert.category}": alert.count}
    if alert.status == ACKNOWLEDGED:
        out[f"acknowledged:{alert.category}"] = 1
    return out


def _time_to_acknowledge(alert: Alert) -> float | None:
    return None if alert.acknowledged_at is None else alert.acknowledged_at - alert.created_at


KIND: RecordKind[Alert] = RecordKind(
    name="alert", decode=Alert.from_dict, indexed=("user", "category", "status"),
    figures=_figures, duration=_time_to_acknowledge)


def _add_recent(items: list[str], value: str) -> list[str]:
    if not value or value in items:
        return items
    return [*items, value][-RECENT_LIMIT:]


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Alerts:
    """Safeguarding alerts, indexed by user, category and status."""

    def __init__(self, redis: Redis, keys: Keys, tz: ZoneInfo) -> None:
        self._redis = redis
        self._keys = keys
        self.records = IndexedCollection(redis, keys, KIND, keys.alert, keys.alert_index, tz)

    async def record_hit(self, hit: HitRecord, window_seconds: int) -> tuple[Alert, bool]:
        """Add an alerting hit: a new alert, or one more on the open alert it groups with.

        Returns the alert and whether it is new (new alerts are delivered, repeats are not).
        A hit already counted (a redelivered stream entry) changes nothing."""
        category = hit.category or SEARCH_CATEGORY
        who = hit.user or f"ip-{hit.client_ip}"
        group_key = self._keys.alert_group(who, category)
        now = time.time()
        for _ in range(20):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(group_key)
                    existing_id = _s(await pipe.get(group_key))
                    existing, indexed = None, False
                    if existing_id is not None:
                        await pipe.watch(group_key, self.records.record_key(existing_id))
                        existing, indexed = await self.records.read_watched(pipe, existing_id)
                    if existing is not None and existing.status == OPEN:
                        if hit.id in existing.hit_ids:
                            await pipe.unwatch()  # type: ignore[no-untyped-call]
                            return existing, False
                        updated = replace(
                            existing, count=existing.count + 1,
                            last_seen=max(existing.last_seen, hit.ts),
                            hit_ids=_add_recent(existing.hit_ids, hit.id),
                            hosts=_add_recent(existing.hosts, hit.host),
                            search_terms=_add_recent(existing.search_terms, hit.search_terms))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        self.records.queue_write(pipe, updated.id,
                                                 existing if indexed else None, updated)
                        if window_seconds > 0:
                            pipe.expire(group_key, window_seconds)
                        await pipe.execute()
                        return updated, False
                    alert = Alert(id=await self.records.new_id(), user=hit.user, group=hit.group,
                                  category=category, severity=hit.severity or "high",
                                  first_seen=hit.ts, last_seen=hit.ts, created_at=now,
                                  hit_ids=_add_recent([], hit.id),
                                  hosts=_add_recent([], hit.host),
                                  search_terms=_add_recent([], hit.search_terms),
                                  client_ip=hit.client_ip, site=hit.site)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self.records.queue_write(pipe, alert.id, None, alert)
                    if window_seconds > 0:
                        pipe.set(group_key, alert.id, ex=window_seconds)
                    await pipe.execute()
                    return alert, True
                except WatchError:
                    continue
        raise RuntimeError("alert grouping kept conflicting; giving up on this hit for now")

    async def get(self, alert_id: str) -> Alert | None:
        return await self.records.get(alert_id)

    async def count_open(self) -> int:
        return await self.records.count("status", OPEN)

    async def acknowledge(self, alert: Alert, by: str, note: str) -> Alert:
        """Mark handled; the next hit in the same user and category then opens a new alert."""
        at = time.time()
        updated = await self.records.update(alert.id, lambda current: replace(
            current, status=ACKNOWLEDGED, acknowledged_at=at, acknowledged_by=by,
            note=note) if current is not None else None) or alert
        who = alert.user or f"ip-{alert.client_ip}"
        group_key = self._keys.alert_group(who, alert.category)
        if _s(await self._redis.get(group_key)) == alert.id:
            await self._redis.delete(group_key)
        return updated

    async def set_delivery(self, alert_id: str, channel: str, status: str) -> None:
        """Record how a delivery went (the alert may have grown meanwhile)."""
        await self.records.update(alert_id, lambda current: replace(
            current, delivery={**current.delivery, channel: status})
            if current is not None else None)

    async def delete_older_than(self, cutoff: float) -> int:
        return await self.records.delete_older_than(cutoff)
