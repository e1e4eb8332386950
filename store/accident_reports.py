"""Accidental-hit reports: "I reached this by accident", in the user's own words.

A report is linked to the logged hit it is about (when the user gives its reference), so the
incident log shows both what the proxy saw and what the person said. Reports are no-blame:
they record what happened, and reviewers mark them reviewed with a note.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from store.indexed_collection import IndexedCollection, RecordKind
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


def _figures(report: AccidentReport) -> dict[str, int]:
    category = str((report.hit or {}).get("category") or "")
    return {"total": 1, f"status:{report.status}": 1, f"category:{category}": 1}


KIND: RecordKind[AccidentReport] = RecordKind(
    name="report", decode=AccidentReport.from_dict, indexed=("user", "group", "status"),
    figures=_figures, site=lambda report: str((report.hit or {}).get("site") or ""))


class AccidentReports:
    """Accidental-hit reports, indexed by user, group and status."""

    def __init__(self, redis: Redis, keys: Keys, tz: ZoneInfo) -> None:
        self.records = IndexedCollection(redis, keys, KIND, keys.report, keys.report_index, tz)

    async def create(self, *, user: str, group: str, what_happened: str, hit_id: str | None,
                     url: str | None, hit: dict[str, Any] | None, reporter_address: str = "",
                     now: float | None = None) -> AccidentReport:
        report = AccidentReport(id=await self.records.new_id(), user=user, group=group,
                                what_happened=what_happened,
                                created_at=time.time() if now is None else now, hit_id=hit_id,
                                url=url, hit=hit, reporter_address=reporter_address)
        return await self.records.put(report)

    async def get(self, report_id: str) -> AccidentReport | None:
        return await self.records.get(report_id)

    async def mark_reviewed(self, report: AccidentReport, reviewer: str, note: str
                            ) -> AccidentReport:
        reviewed_at = time.time()

        def review(current: AccidentReport | None) -> AccidentReport:
            return replace(current or report, status=REVIEWED, reviewed_at=reviewed_at,
                           reviewed_by=reviewer, review_note=note)

        updated = await self.records.update(report.id, review)
        assert updated is not None
        return updated

    async def delete_older_than(self, cutoff: float) -> int:
        return await self.records.delete_older_than(cutoff)
