"""Unblock requests: a learner or member of staff asks IT to allow a blocked site.

One user has at most one open request per site (override target): a second request for the
same site is merged into the open one (its reason appended), so IT sees one item, not a pile.
Requests are indexed by user, site and status (see :mod:`store.indexed_collection`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from store.indexed_collection import IndexedCollection, QueueMore, RecordKind
from store.keys import Keys

OPEN, APPROVED, DENIED, EXPIRED = "open", "approved", "denied", "expired"
STATUSES = (OPEN, APPROVED, DENIED, EXPIRED)
MAX_MERGED_REASONS = 20


@dataclass(frozen=True, slots=True)
class UnblockRequest:
    id: str
    user: str
    group: str
    url: str
    target: str
    """The canonical site (override target) the request is about."""
    reasons: list[str]
    hit_id: str | None
    status: str
    created_at: float
    updated_at: float
    request_count: int = 1
    """How many requests were merged into this one."""
    decided_at: float | None = None
    decided_by: str | None = None
    note: str = ""
    scope: str | None = None
    expires_at: float | None = None
    override_id: str | None = None
    hit_ids: list[str] = field(default_factory=list)
    site: str = ""
    """The site (centre) of the blocked hit the request is about, when it names one."""

    @property
    def turnaround_seconds(self) -> float | None:
        return None if self.decided_at is None else round(self.decided_at - self.created_at, 3)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["turnaround_seconds"] = self.turnaround_seconds
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnblockRequest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _figures(request: UnblockRequest) -> dict[str, int]:
    out = {"total": 1, f"status:{request.status}": 1}
    if request.scope:
        out[f"scope:{request.scope}"] = 1
    return out


KIND: RecordKind[UnblockRequest] = RecordKind(
    name="unblock", decode=UnblockRequest.from_dict, indexed=("user", "target", "status"),
    figures=_figures, duration=lambda request: request.turnaround_seconds,
    site=lambda request: request.site)


def _s(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class UnblockRequests:
    """Unblock requests, indexed by user, site (target) and status."""

    def __init__(self, redis: Redis, keys: Keys, tz: ZoneInfo) -> None:
        self._redis = redis
        self._keys = keys
        self.records = IndexedCollection(redis, keys, KIND, keys.unblock, keys.unblock_index, tz)

    async def create_or_merge(self, *, user: str, group: str, url: str, target: str,
                              reason: str, hit_id: str | None, site: str = ""
                              ) -> tuple[UnblockRequest, bool]:
        """File a request, or merge it into the user's open request for the same site.

        Returns the request and whether it was merged into an existing one."""
        now = time.time()
        new_id = await self.records.new_id()
        open_key = self._keys.unblock_open(user, target)
        if not await self._redis.set(open_key, new_id, nx=True):
            existing_id = _s(await self._redis.get(open_key))
            merged_into: list[UnblockRequest] = []

            def merge(existing: UnblockRequest | None) -> UnblockRequest | None:
                merged_into.clear()
                if existing is None or existing.status != OPEN:
                    return existing
                hit_ids = existing.hit_ids + ([hit_id] if hit_id and hit_id not in existing.hit_ids
                                              else [])
                merged = replace(existing, reasons=[*existing.reasons, reason][-MAX_MERGED_REASONS:],
                                 updated_at=now, request_count=existing.request_count + 1,
                                 hit_id=existing.hit_id or hit_id,
                                 hit_ids=hit_ids[-MAX_MERGED_REASONS:])
                merged_into.append(merged)
                return merged

            if existing_id:
                await self.records.update(existing_id, merge)
            if merged_into:
                return merged_into[0], True
            await self._redis.set(open_key, new_id)
        request = UnblockRequest(id=new_id, user=user, group=group, url=url, target=target,
                                 reasons=[reason], hit_id=hit_id, status=OPEN, created_at=now,
                                 updated_at=now, hit_ids=[hit_id] if hit_id else [],
                                 site=site)
        return await self.records.put(request), False

    async def get(self, request_id: str) -> UnblockRequest | None:
        return await self.records.get(request_id)

    async def for_target(self, target: str) -> list[UnblockRequest]:
        """Every request about one site, newest first."""
        return await self.records.each(equal={"target": target})

    async def save_decision(self, request: UnblockRequest) -> None:
        """Store a decided request and close its open-request marker, in one transaction."""
        open_key = self._keys.unblock_open(request.user, request.target)

        async def close_marker(pipe: Pipeline, _current: UnblockRequest | None,
                               _updated: UnblockRequest) -> QueueMore:
            if _s(await pipe.get(open_key)) != request.id:
                return None
            return lambda queued: queued.delete(open_key)

        await self.records.update(request.id, lambda _current: request, watch=[open_key],
                                  also=close_marker)

    async def count_open(self) -> int:
        return await self.records.count("status", OPEN)

    async def delete_older_than(self, cutoff: float) -> int:
        return await self.records.delete_older_than(cutoff)
