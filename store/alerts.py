"""Safeguarding alerts: stored, grouped, acknowledged.

Repeated alerting hits from one user in one category within the grouping window add to one
open alert (its count, last seen time and recent hit references) instead of raising a flood.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from store.indexed_records import IndexedRecords
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


def _records(redis: Redis, keys: Keys) -> IndexedRecords:
    return IndexedRecords(redis, keys, "alert", keys.alert, keys.alert_index)


def _add_recent(items: list[str], value: str) -> list[str]:
    if not value or value in items:
        return items
    return [*items, value][-RECENT_LIMIT:]


async def record_alert_hit(redis: Redis, keys: Keys, hit: HitRecord, window_seconds: int
                           ) -> tuple[Alert, bool]:
    """Add an alerting hit: a new alert, or one more on the open alert it groups with.

    Returns the alert and whether it is new (new alerts are delivered, repeats are not).
    A hit already counted (a redelivered stream entry) changes nothing."""
    records = _records(redis, keys)
    category = hit.category or SEARCH_CATEGORY
    who = hit.user or f"ip-{hit.client_ip}"
    group_key = keys.alert_group(who, category)
    now = time.time()
    for _ in range(20):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(group_key)
                existing_id = await pipe.get(group_key)
                existing = None
                if existing_id is not None:
                    await pipe.watch(group_key, keys.alert(str(existing_id)))
                    raw = await pipe.get(keys.alert(str(existing_id)))
                    existing = Alert.from_dict(json.loads(raw)) if raw else None
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
                    pipe.set(keys.alert(updated.id), json.dumps(updated.to_dict()))
                    if window_seconds > 0:
                        pipe.expire(group_key, window_seconds)
                    await pipe.execute()
                    return updated, False
                alert_id = await records.new_id()
                alert = Alert(id=alert_id, user=hit.user, group=hit.group, category=category,
                              severity=hit.severity or "high", first_seen=hit.ts,
                              last_seen=hit.ts, created_at=now, hit_ids=_add_recent([], hit.id),
                              hosts=_add_recent([], hit.host),
                              search_terms=_add_recent([], hit.search_terms),
                              client_ip=hit.client_ip, site=hit.site)
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(keys.alert(alert_id), json.dumps(alert.to_dict()))
                pipe.zadd(keys.alert_index, {alert_id: now})
                if window_seconds > 0:
                    pipe.set(group_key, alert_id, ex=window_seconds)
                await pipe.execute()
                return alert, True
            except WatchError:
                continue
    raise RuntimeError("alert grouping kept conflicting; giving up on this hit for now")


async def get_alert(redis: Redis, keys: Keys, alert_id: str) -> Alert | None:
    data = await _records(redis, keys).get(alert_id)
    return Alert.from_dict(data) if data is not None else None


async def all_alerts(redis: Redis, keys: Keys) -> list[Alert]:
    return [Alert.from_dict(d) for d in await _records(redis, keys).newest_first()]


async def _update(redis: Redis, keys: Keys, alert_id: str, change: Callable[[Alert], Alert]
                  ) -> Alert | None:
    """Change a stored alert without losing a concurrent update (WATCH and retry)."""
    key = keys.alert(alert_id)
    for _ in range(20):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                raw = await pipe.get(key)
                if raw is None:
                    return None
                updated = change(Alert.from_dict(json.loads(raw)))
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, json.dumps(updated.to_dict()))
                await pipe.execute()
                return updated
            except WatchError:
                continue
    raise RuntimeError("alert update kept conflicting")


async def acknowledge(redis: Redis, keys: Keys, alert: Alert, by: str, note: str) -> Alert:
    """Mark handled; the next hit in the same user and category then opens a new alert."""
    updated = await _update(redis, keys, alert.id, lambda current: replace(
        current, status=ACKNOWLEDGED, acknowledged_at=time.time(), acknowledged_by=by,
        note=note)) or alert
    who = alert.user or f"ip-{alert.client_ip}"
    group_key = keys.alert_group(who, alert.category)
    if await redis.get(group_key) == alert.id:
        await redis.delete(group_key)
    return updated


async def set_delivery(redis: Redis, keys: Keys, alert_id: str, channel: str, status: str) -> None:
    """Record how a delivery went (the alert may have grown meanwhile)."""
    await _update(redis, keys, alert_id, lambda current: replace(
        current, delivery={**current.delivery, channel: status}))


async def delete_older_than(redis: Redis, keys: Keys, cutoff: float) -> int:
    return await _records(redis, keys).delete_older_than(cutoff)
