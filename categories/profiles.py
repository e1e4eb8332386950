"""Group profiles (learner, staff, guest) and the time windows they use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import NamedTuple
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
    online_during: tuple[str, ...] = ()
    """Named time windows outside which every request of this group is refused (rule
    ``outside_hours``); empty: online at any time."""
    always_allow: frozenset[str] = frozenset()
    """Category ids or hosts (a host matches itself and its subdomains) reachable outside
    ``online_during`` too. Never a prohibited (block) category: the policy refuses that."""


class NetworkHours(NamedTuple):
    """Where a request comes from, as far as the hours go: the name of the network it is on
    (``""`` for an unnamed or unknown one) and that network's ``online_during`` windows (none:
    open at any hour). Given to :meth:`categories.policy.Policy.decide` by the proxy, so that
    access windows and class sessions apply; questions asked without it (the admin service's
    "is this site blocked?") leave the hours out."""

    name: str = ""
    windows: tuple[str, ...] = ()


ANY_HOUR = NetworkHours()
"""A request from a network without a name or windows of its own."""


def describe_windows(windows: Sequence[TimeWindow]) -> str:
    """``break (10:30–10:45) and lunch (12:00–13:00)``, with the days when they are not
    Monday to Friday: what the outside-hours page tells people."""
    weekdays = frozenset(range(5))
    parts = []
    for window in windows:
        text = f"{window.name} ({window.start:%H:%M}–{window.end:%H:%M}"
        if window.days != weekdays:
            text += ", " + ", ".join(DAY_NAMES[d].capitalize() for d in sorted(window.days))
        parts.append(text + ")")
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def next_opening(windows: Sequence[TimeWindow], local: datetime) -> datetime | None:
    """The next start of any of ``windows`` strictly after ``local`` (an aware time in the
    centre's zone), in that zone; None when no window ever opens (no days)."""
    best: datetime | None = None
    for window in windows:
        for ahead in range(8):
            day = (local + timedelta(days=ahead)).date()
            if day.weekday() not in window.days:
                continue
            start = datetime.combine(day, window.start, tzinfo=local.tzinfo)
            if start > local:
                if best is None or start < best:
                    best = start
                break
    return best


def describe_opening(opening: datetime | None, local: datetime) -> str:
    """``today at 12:00``, ``tomorrow at 10:30`` or ``on Monday at 10:30``."""
    if opening is None:
        return "never (no window has any days)"
    days = (opening.date() - local.date()).days
    when = ("today" if days == 0 else "tomorrow" if days == 1
            else f"on {opening:%A %d %B}")
    return f"{when} at {opening:%H:%M}"


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

    def closed(self, window_names: Sequence[str], at: datetime
               ) -> tuple[list[TimeWindow], datetime | None] | None:
        """None while one of ``window_names`` is open at ``at``; otherwise the windows and
        their next opening (in the centre's zone)."""
        local = at.astimezone(self.timezone)
        windows = [self.windows[n] for n in window_names if n in self.windows]
        if any(w.contains(local) for w in windows):
            return None
        return windows, next_opening(windows, local)
