"""Safeguarding alerts: stored, grouped, acknowledged.

Repeated alerting hits from one user in one category within the grouping window add to one
open alert (its count, last seen time and recent hit references) instead of raising a flood.

Delivery goes through an outbox: a new alert is written with one delivery record per channel
(webhook, email: state, attempts, last error, next try) and, in the same transaction, an
entry per channel in the ``alert:outbox`` sorted set scored by the time of its next try. A
delivery worker on any admin host claims due entries with :data:`CLAIM_SCRIPT` (atomically
pushing each claimed entry's score a lease ahead, so a host that dies mid-delivery only delays
it), delivers, and records the outcome: delivered, retried later, or expired. Nothing is lost
when an admin process stops between writing the alert and delivering it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.exceptions import WatchError

from store.indexed_collection import IndexedCollection, RecordKind
from store.keys import Keys
from store.records import HitRecord

OPEN, ACKNOWLEDGED = "open", "acknowledged"
PENDING, DELIVERED, EXPIRED = "pending", "delivered", "expired"
"""Delivery states of one channel of an alert."""
MAX_ERROR = 120
CLAIM_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
"""
"""KEYS: the outbox. ARGV: now, the lease's end, how many. Returns the claimed entries."""
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
    devices: list[str] = field(default_factory=list)
    """The devices of the alert's hits (a MAC address, an install id, a host), where known,
    so the DSL knows which machine to look at."""
    identified_by: str = ""
    """How the person was identified on the alert's latest hit (``radius``, ``auth``...)."""
    status: str = OPEN
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    note: str = ""
    delivery: dict[str, str] = field(default_factory=dict)
    """Channel (webhook, email) -> ``sent``, ``retrying`` or ``expired`` (in short)."""
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Channel -> its delivery record: ``state`` (pending, delivered, expired), ``attempts``,
    ``last_error`` (short, never a secret), ``next_attempt_at``, ``delivered_at``,
    ``expires_at``."""

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
    figures=_figures, duration=_time_to_acknowledge, site=lambda alert: alert.site)


def _add_recent(items: list[str], value: str) -> list[str]:
    if not value or value in items:
        return items
    return [*items, value][-RECENT_LIMIT:]


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def outbox_entry(alert_id: str, channel: str) -> str:
    return f"{alert_id}|{channel}"


def parse_outbox_entry(entry: str) -> tuple[str, str]:
    alert_id, _, channel = entry.partition("|")
    return alert_id, channel


def retry_delay(attempts: int, first: float, most: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: first, doubled each time,
    at most ``most``."""
    return float(min(most, first * 2 ** max(0, attempts - 1)))


class Alerts:
    """Safeguarding alerts, indexed by user, category and status."""

    def __init__(self, redis: Redis, keys: Keys, tz: ZoneInfo) -> None:
        self._redis = redis
        self._keys = keys
        self.records = IndexedCollection(redis, keys, KIND, keys.alert, keys.alert_index, tz)

    async def record_hit(self, hit: HitRecord, window_seconds: int,
                         channels: Sequence[str] = (), expiry_seconds: float = 48 * 3600
                         ) -> tuple[Alert, bool]:
        """Add an alerting hit: a new alert, or one more on the open alert it groups with.

        Returns the alert and whether it is new. A new alert is written with a pending
        delivery on each of ``channels`` and their outbox entries, in one transaction (repeats
        are not delivered). A hit already counted (a redelivered stream entry) changes
        nothing."""
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
                            search_terms=_add_recent(existing.search_terms, hit.search_terms),
                            devices=_add_recent(existing.devices, hit.device),
                            identified_by=hit.identified_by or existing.identified_by)
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
                                  client_ip=hit.client_ip, site=hit.site,
                                  devices=_add_recent([], hit.device),
                                  identified_by=hit.identified_by,
                                  delivery={channel: "retrying" for channel in channels},
                                  deliveries={channel: {
                                      "state": PENDING, "attempts": 0, "last_error": "",
                                      "next_attempt_at": now, "delivered_at": None,
                                      "expires_at": now + expiry_seconds}
                                      for channel in channels})
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self.records.queue_write(pipe, alert.id, None, alert)
                    if channels:
                        pipe.zadd(self._keys.alert_outbox,
                                  {outbox_entry(alert.id, channel): now for channel in channels})
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

    # -- the delivery outbox ----------------------------------------------------------------

    async def claim_due(self, now: float, lease_seconds: float, count: int = 20
                        ) -> list[tuple[str, str]]:
        """Outbox entries due by ``now`` as (alert id, channel), each leased to the caller for
        ``lease_seconds`` (it comes due again if the caller dies before recording an
        outcome). Safe with several admin hosts: one script claims atomically."""
        claimed: Any = await self._redis.eval(CLAIM_SCRIPT, 1, self._keys.alert_outbox,
                                              repr(now), repr(now + lease_seconds), count)
        return [parse_outbox_entry(_s(entry) or "") for entry in claimed or []]

    async def release(self, entries: Sequence[tuple[str, str]], at: float) -> None:
        """Hand claimed entries back, due at ``at`` (a worker stopping before it tried)."""
        if entries:
            await self._redis.zadd(self._keys.alert_outbox,
                                   {outbox_entry(a, c): at for a, c in entries}, xx=True)

    # -- the weekly digest ---------------------------------------------------------------------

    async def claim_digest(self, week: str, by: str, ttl_seconds: int = 30 * 86400) -> bool:
        """True for the one caller (of every admin host) that claims ``week``'s digest."""
        return bool(await self._redis.set(self._keys.digest_claim(week), by, nx=True,
                                          ex=ttl_seconds))

    async def release_digest(self, week: str, by: str) -> None:
        """Give the claim back (sending failed), if it is still this caller's."""
        key = self._keys.digest_claim(week)
        if _s(await self._redis.get(key)) == by:
            await self._redis.delete(key)

    async def outbox_size(self) -> int:
        return int(await self._redis.zcard(self._keys.alert_outbox))

    async def record_delivery(self, alert_id: str, channel: str, *, at: float,
                              error: str | None, next_attempt_at: float) -> Alert | None:
        """Record one try: delivered (``error`` None), or failed and due again at
        ``next_attempt_at``, or expired when that is past the record's expiry. The alert's
        record and its outbox entry change in one transaction."""
        entry = outbox_entry(alert_id, channel)
        outcome: list[str] = []

        def change(current: Alert | None) -> Alert | None:
            outcome.clear()
            if current is None:
                outcome.append("gone")
                return None
            record = dict(current.deliveries.get(channel) or {
                "state": PENDING, "attempts": 0, "last_error": "", "next_attempt_at": at,
                "delivered_at": None, "expires_at": at})
            if record.get("state") != PENDING:
                outcome.append("done")
                return current
            record["attempts"] = int(record.get("attempts", 0)) + 1
            if error is None:
                record.update(state=DELIVERED, delivered_at=at, next_attempt_at=None)
                short = "sent"
            else:
                record["last_error"] = error[:MAX_ERROR]
                if next_attempt_at >= float(record.get("expires_at") or 0):
                    record.update(state=EXPIRED, next_attempt_at=None)
                    short = "expired"
                else:
                    record["next_attempt_at"] = next_attempt_at
                    short = "retrying"
            outcome.append(record["state"])
            return replace(current, deliveries={**current.deliveries, channel: record},
                           delivery={**current.delivery, channel: short})

        async def outbox(_pipe: Any, _old: Alert | None, _new: Alert) -> Any:
            def queue(pipe: Any) -> None:
                if outcome and outcome[0] == PENDING:
                    pipe.zadd(self._keys.alert_outbox, {entry: next_attempt_at}, xx=True)
                else:
                    pipe.zrem(self._keys.alert_outbox, entry)
            return queue

        updated = await self.records.update(alert_id, change, also=outbox)
        if outcome and outcome[0] in ("gone", "done"):
            await self._redis.zrem(self._keys.alert_outbox, entry)
        return updated

    async def delete_older_than(self, cutoff: float) -> int:
        return await self.records.delete_older_than(cutoff)
