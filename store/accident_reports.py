"""Accidental-hit reports: "I reached this by accident", in the user's own words.

A report is linked to the logged hit it is about (when the user gives its reference), so the
incident log shows both what the proxy saw and what the person said. Reports are no-blame:
they record what happened, and reviewers mark them reviewed with a note.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from redis.asyncio import Redis

from store.indexed_records import IndexedRecords
from store.keys import Keys

OPEN, REVIEWED = "open", "reviewed"


@dataclass(frozen=True, slots=True)
class AccidentReport:
    id: str
    user: str
    group: str
    what_happened: str
    created_at: float
    hit_id: str | None = None
    url: str | None = None
    hit: dict[str, Any] | None = None
    """What the proxy logged for ``hit_id``, copied when the report was made."""
    status: str = OPEN
    reviewed_at: float | None = None
    reviewed_by: str | None = None
    review_note: str = ""
    reporter_address: str = ""
    """The client address the report was filed from: a hit logged later is attached only if
    it is the reporter's own (see ``admin_api.routes.accident_reports``). Never shown by the API."""

    def to_dict(self) -> dict[str, Any]:
        """Every field, for storage."""
        return asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """What the API shows (without the reporter's address)."""
        data = asdict(self)
        del data["reporter_address"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccidentReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _records(redis: Redis, keys: Keys) -> IndexedRecords:
    return IndexedRecords(redis, keys, "report", keys.report, keys.report_index)


async def create_report(redis: Redis, keys: Keys, *, user: str, group: str, what_happened: str,
                        hit_id: str | None, url: str | None, hit: dict[str, Any] | None,
                        reporter_address: str = "", now: float | None = None
                        ) -> AccidentReport:
    records = _records(redis, keys)
    report = AccidentReport(id=await records.new_id(), user=user, group=group,
                            what_happened=what_happened,
                            created_at=time.time() if now is None else now, hit_id=hit_id,
                            url=url, hit=hit, reporter_address=reporter_address)
    await records.put(report.id, report.created_at, report.to_dict())
    return report


async def get_report(redis: Redis, keys: Keys, report_id: str) -> AccidentReport | None:
    data = await _records(redis, keys).get(report_id)
    return AccidentReport.from_dict(data) if data is not None else None


async def all_reports(redis: Redis, keys: Keys) -> list[AccidentReport]:
    return [AccidentReport.from_dict(d) for d in await _records(redis, keys).newest_first()]


async def mark_reviewed(redis: Redis, keys: Keys, report: AccidentReport, reviewer: str,
                        note: str) -> AccidentReport:
    updated = replace(report, status=REVIEWED, reviewed_at=time.time(), reviewed_by=reviewer,
                      review_note=note)
    await _records(redis, keys).put(updated.id, updated.created_at, updated.to_dict())
    return updated


async def delete_older_than(redis: Redis, keys: Keys, cutoff: float) -> int:
    return await _records(redis, keys).delete_older_than(cutoff)
