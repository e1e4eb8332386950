"""Unblock requests: a learner or member of staff asks IT to allow a blocked site.

One user has at most one open request per site (override target): a second request for the
same site is merged into the open one (its reason appended), so IT sees one item, not a pile.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from redis.asyncio import Redis

from store.indexed_records import IndexedRecords
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


def _records(redis: Redis, keys: Keys) -> IndexedRecords:
    return IndexedRecords(redis, keys, "unblock", keys.unblock, keys.unblock_index)


async def create_or_merge(redis: Redis, keys: Keys, *, user: str, group: str, url: str,
                          target: str, reason: str, hit_id: str | None
                          ) -> tuple[UnblockRequest, bool]:
    """File a request, or merge it into the user's open request for the same site.

    Returns the request and whether it was merged into an existing one."""
    records = _records(redis, keys)
    now = time.time()
    new_id = await records.new_id()
    open_key = keys.unblock_open(user, target)
    claimed = await redis.set(open_key, new_id, nx=True)
    if not claimed:
        existing_id = await redis.get(open_key)
        existing = await get_request(redis, keys, str(existing_id)) if existing_id else None
        if existing is not None and existing.status == OPEN:
            reasons = [*existing.reasons, reason][-MAX_MERGED_REASONS:]
            hit_ids = existing.hit_ids + ([hit_id] if hit_id and hit_id not in existing.hit_ids
                                          else [])
            merged = replace(existing, reasons=reasons, updated_at=now,
                             request_count=existing.request_count + 1,
                             hit_id=existing.hit_id or hit_id, hit_ids=hit_ids[-MAX_MERGED_REASONS:])
            await records.put(merged.id, merged.created_at, merged.to_dict())
            return merged, True
        await redis.set(open_key, new_id)
    request = UnblockRequest(id=new_id, user=user, group=group, url=url, target=target,
                             reasons=[reason], hit_id=hit_id, status=OPEN, created_at=now,
                             updated_at=now, hit_ids=[hit_id] if hit_id else [])
    await records.put(request.id, now, request.to_dict())
    return request, False


async def get_request(redis: Redis, keys: Keys, request_id: str) -> UnblockRequest | None:
    data = await _records(redis, keys).get(request_id)
    return UnblockRequest.from_dict(data) if data is not None else None


async def all_requests(redis: Redis, keys: Keys) -> list[UnblockRequest]:
    return [UnblockRequest.from_dict(d) for d in await _records(redis, keys).newest_first()]


async def save_decision(redis: Redis, keys: Keys, request: UnblockRequest) -> None:
    """Store a decided request and close its open-request marker."""
    await _records(redis, keys).put(request.id, request.created_at, request.to_dict())
    open_key = keys.unblock_open(request.user, request.target)
    if await redis.get(open_key) == request.id:
        await redis.delete(open_key)


async def count_open(redis: Redis, keys: Keys) -> int:
    return sum(1 for r in await all_requests(redis, keys) if r.status == OPEN)


async def delete_older_than(redis: Redis, keys: Keys, cutoff: float) -> int:
    return await _records(redis, keys).delete_older_than(cutoff)
