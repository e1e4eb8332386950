"""Class sessions: a member of staff opens access for a lesson.

A session opens a group, a named network, or named learners for a number of minutes. While it
runs, the group's and the network's ``online_during`` windows count as open for the people it
covers; a session limited to ``sites`` opens only those sites (a site covers its subdomains).
The sites of a session are also allowed when a *non-prohibited* rule would block them (a
category the group blocks, such as social networks, or a group that may only visit approved
sites). A session never opens a prohibited category or an illegal list: those rules are decided
before a session is looked at.

Pure data: the store keeps the sessions (:mod:`store.class_sessions`) and every proxy gets them
with the overrides, through the live policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

NAMED_LEARNERS = "(named learners)"
"""The key of named learners' sessions in :func:`hours_by_group`."""


class SessionTarget(StrEnum):
    GROUP = "group"
    NETWORK = "network"
    LEARNERS = "learners"


@dataclass(frozen=True, slots=True)
class ClassSession:
    id: str
    target: SessionTarget
    names: tuple[str, ...]
    """Group names, network names, or learners' account names (per :attr:`target`)."""
    starts_at: float
    ends_at: float
    """Epoch seconds; the session closes by itself then."""
    opened_by: str
    sites: tuple[str, ...] = ()
    """Canonical hosts (each covers its subdomains); empty: every site the group may visit."""
    note: str = ""
    ended_at: float | None = None
    """Set when someone ended it early."""
    ended_by: str = ""

    @property
    def closes_at(self) -> float:
        """When it stops (or stopped) applying: the earlier of its end and an early end."""
        return self.ends_at if self.ended_at is None else min(self.ends_at, self.ended_at)

    def live(self, now: float) -> bool:
        return self.starts_at <= now < self.closes_at

    def covers(self, user: str | None, group: str | None, network: str) -> bool:
        if self.target is SessionTarget.GROUP:
            return group is not None and group in self.names
        if self.target is SessionTarget.NETWORK:
            return bool(network) and network in self.names
        return user is not None and user in self.names

    def opens_site(self, host: str) -> bool:
        """True when the session opens ``host`` (a canonical host): every site for a session
        without a list of sites."""
        return not self.sites or self.lists(host)

    def lists(self, host: str) -> bool:
        """True when ``host`` is one of the session's own sites (or a subdomain of one)."""
        return any(host == s or host.endswith("." + s) for s in self.sites)

    def describe(self) -> str:
        """``the learner_byod group`` / ``the learner Wi-Fi network`` / ``2 learners``."""
        if self.target is SessionTarget.LEARNERS:
            return "1 learner" if len(self.names) == 1 else f"{len(self.names)} learners"
        noun = "group" if self.target is SessionTarget.GROUP else "network"
        return f"the {', '.join(self.names)} {noun}" + ("s" if len(self.names) > 1 else "")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = self.target.value
        data["names"] = list(self.names)
        data["sites"] = list(self.sites)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassSession:
        """The session stored by :meth:`to_dict`; ValueError (or KeyError, TypeError) when the
        record is damaged."""
        names = tuple(str(n) for n in data["names"])
        if not names:
            raise ValueError("a class session names nobody")
        ended = data.get("ended_at")
        return cls(
            id=str(data["id"]),
            target=SessionTarget(data["target"]),
            names=names,
            starts_at=float(data["starts_at"]),
            ends_at=float(data["ends_at"]),
            opened_by=str(data.get("opened_by", "")),
            sites=tuple(str(s) for s in data.get("sites") or ()),
            note=str(data.get("note", "")),
            ended_at=float(ended) if ended is not None else None,
            ended_by=str(data.get("ended_by", "")),
        )


class SessionSet:
    """The sessions a policy knows, answering "which session covers this request now"."""

    def __init__(self, sessions: Iterable[ClassSession] = ()) -> None:
        self._all = tuple(sorted(sessions, key=lambda s: (s.starts_at, s.id)))

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[ClassSession]:
        return iter(self._all)

    def covering(self, user: str | None, group: str | None, network: str, now: float
                 ) -> list[ClassSession]:
        """The live sessions that cover this person on this network at ``now``."""
        return [s for s in self._all if s.live(now) and s.covers(user, group, network)]


def hours_by_group(sessions: Iterable[ClassSession], start: float, end: float,
                   groups_of_network: dict[str, str]) -> dict[str, float]:
    """Hours of sessions open inside ``[start, end)``, per group: a group session counts for
    each group it names, a network session for the network's group, a learners session under
    :data:`NAMED_LEARNERS` (which no group name can be)."""
    hours: dict[str, float] = {}
    for session in sessions:
        seconds = max(0.0, min(session.closes_at, end) - max(session.starts_at, start))
        if seconds <= 0:
            continue
        if session.target is SessionTarget.GROUP:
            keys = list(session.names)
        elif session.target is SessionTarget.NETWORK:
            keys = [groups_of_network.get(n, n) for n in session.names]
        else:
            keys = [NAMED_LEARNERS]
        for key in keys:
            hours[key] = hours.get(key, 0.0) + seconds / 3600
    return {k: round(v, 2) for k, v in sorted(hours.items())}
