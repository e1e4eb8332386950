"""Group profiles (learner, staff, guest) and the time windows they use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_TIMEZONE = "Europe/London"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A recurring window such as lunch: weekdays, and a start (inclusive) and end (exclusive)."""

    name: str
    days: frozenset[int]
    """0 is Monday."""
    start: time
    end: time

    def contains(self, local: datetime) -> bool:
        """True inside the window. ``days`` are the days a window *starts*: an overnight
        window (22:00-02:00) that starts on Sunday still holds at 01:00 on Monday."""
        now = local.time().replace(tzinfo=None)
        day = local.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= now < self.end
        if now >= self.start:
            return day in self.days
        return now < self.end and (day - 1) % 7 in self.days


def parse_days(spec: str | list[str]) -> frozenset[int]:
    """``"mon-fri"``, ``"sat,sun"`` or ``["mon", "wed"]`` to weekday numbers."""
    items = spec if isinstance(spec, list) else [p for p in spec.replace(" ", "").split(",") if p]
    days: set[int] = set()
    for item in items:
        first, _, last = item.lower().partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"unknown day {item!r}; use mon, tue, wed, thu, fri, sat, sun")
        a = DAY_NAMES.index(first)
        b = DAY_NAMES.index(last) if last else a
        day = a
        while True:
            days.add(day)
            if day == b:
                break
            day = (day + 1) % 7
    return frozenset(days)


def parse_clock(text: str) -> time:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a time of day like 12:30") from exc


@dataclass(frozen=True, slots=True)
class GroupProfile:
    """What one group may reach beyond the category defaults."""

    name: str
    allow: frozenset[str] = frozenset()
    """Block categories this group may always use (e.g. staff: social_networks)."""
    block: frozenset[str] = frozenset()
    """Neutral categories this group may not use."""
    allow_during: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Block categories this group may use inside named time windows only."""
    block_ip_literals: bool = True
    """Refuse hosts given as bare IP addresses (a common way round name-based filtering)."""
    block_uncategorised: bool = False


def default_windows() -> dict[str, TimeWindow]:
    weekdays = parse_days("mon-fri")
    return {
        "break": TimeWindow("break", weekdays, time(10, 30), time(10, 45)),
        "lunch": TimeWindow("lunch", weekdays, time(12, 0), time(13, 0)),
    }


def default_profiles() -> dict[str, GroupProfile]:
    return {
        "learner": GroupProfile("learner", allow_during={"social_networks": ("break", "lunch")}),
        "staff": GroupProfile("staff", allow=frozenset({"social_networks"}),
                              block_ip_literals=False),
        "guest": GroupProfile("guest"),
    }


@dataclass(frozen=True, slots=True)
class Schedule:
    windows: Mapping[str, TimeWindow]
    timezone: ZoneInfo

    def active(self, window_names: tuple[str, ...], at: datetime) -> str | None:
        """The name of the first of ``window_names`` that contains ``at``, or None."""
        local = at.astimezone(self.timezone)
        for name in window_names:
            window = self.windows.get(name)
            if window is not None and window.contains(local):
                return name
        return None
