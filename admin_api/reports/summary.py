"""The summary report, from the proxies' daily counters (never from the raw hits).

``count:<YYYYMMDD>`` hashes hold ``action|category|group|site`` -> count and
``tophosts:<YYYYMMDD>`` sorted sets the blocked hosts of the day, so a quarter's summary is
about ninety small reads whatever the traffic. Top sites over several days are merged from
each day's top :data:`TOP_PER_DAY` hosts: exact for any site that was in a day's top list on
every day it was blocked, a close lower bound otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from store.hits import Hits

GROUP_BY = ("day", "week", "category", "site", "group")
TOP_PER_DAY = 200
MAX_DAYS = 800


@dataclass(frozen=True, slots=True)
class Counter:
    day: date
    action: str
    category: str
    group: str
    site: str
    count: int


def days_in(start: date, end: date) -> list[date]:
    """Every day from ``start`` up to and including ``end``."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


async def read_counters(hits: Hits, days: list[date]) -> list[Counter]:
    replies = await hits.day_counts([day.strftime("%Y%m%d") for day in days])
    out = []
    for day, fields in zip(days, replies, strict=True):
        for name, value in fields.items():
            parts = name.split("|")
            if len(parts) != 4:
                continue
            out.append(Counter(day, parts[0], parts[1], parts[2], parts[3], int(value)))
    return out


async def top_blocked_hosts(hits: Hits, days: list[date], limit: int = 10,
                            site: str | None = None) -> list[tuple[str, int]]:
    replies = await hits.top_hosts([day.strftime("%Y%m%d") for day in days], TOP_PER_DAY,
                                   site)
    totals: dict[str, float] = defaultdict(float)
    for reply in replies:
        for host, score in reply:
            totals[host] += score
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [(host, int(score)) for host, score in ranked]


def group_key(counter: Counter, group_by: str) -> str:
    if group_by == "day":
        return counter.day.isoformat()
    if group_by == "week":
        year, week, _ = counter.day.isocalendar()
        return f"{year}-W{week:02d}"
    if group_by == "category":
        return counter.category or "(uncategorised)"
    if group_by == "site":
        return counter.site
    return counter.group


def summarise(counters: Iterable[Counter], group_by: str) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: {"block": 0, "allow": 0})
    for counter in counters:
        if counter.action in ("block", "allow"):
            rows[group_key(counter, group_by)][counter.action] += counter.count
    out: list[dict[str, Any]] = [{"key": key, **values, "total": values["block"] + values["allow"]}
           for key, values in rows.items()]
    if group_by in ("day", "week"):
        out.sort(key=lambda row: row["key"])
    else:
        out.sort(key=lambda row: (-row["block"], row["key"]))
    return out


async def summary(hits: Hits, start: date, end: date, group_by: str) -> dict[str, Any]:
    days = days_in(start, end)
    counters = await read_counters(hits, days)
    rows = summarise(counters, group_by)
    top = await top_blocked_hosts(hits, days)
    return {"from": start.isoformat(), "to": end.isoformat(), "group_by": group_by,
            "rows": rows,
            "totals": {"block": sum(r["block"] for r in rows),
                       "allow": sum(r["allow"] for r in rows),
                       "outside_hours": sum(c.count for c in counters
                                            if c.action == "outside_hours")},
            "top_blocked_sites": [{"host": h, "blocks": n} for h, n in top]}
