"""Which groups, networks and learners a member of staff may open a class session for.

Managers, DSLs and admins may open any group or named network, and any learner. Other staff
may open what ``class_sessions.tutors`` in the config gives them (by account name, or
``role:<role>``), and named learners whose group is one of their groups. Learners open
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployment.config import Config
from store.records import UserRecord

SESSION_MANAGERS = frozenset({"manager", "dsl", "admin"})
"""See and end every session, and open any room."""
SESSION_OPENERS = frozenset({"staff", "it_support", "manager", "dsl", "admin"})
"""Roles that may have rooms to open (staff need a ``tutors`` entry)."""


@dataclass(frozen=True)
class Rooms:
    groups: tuple[str, ...]
    networks: tuple[str, ...]
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not (self.groups or self.networks)


def rooms_for(config: Config, user: UserRecord) -> Rooms:
    """The groups and named networks ``user`` may open (in the config's order)."""
    named = tuple(n.name for n in config.networks if n.name)
    if user.role in SESSION_MANAGERS:
        every_group = tuple(g for g in config.profiles if g != config.unidentified_group)
        return Rooms(every_group, tuple(dict.fromkeys(named)), everything=True)
    if user.role not in SESSION_OPENERS:
        return Rooms((), ())
    groups: dict[str, None] = {}
    networks: dict[str, None] = {}
    for entry in config.class_sessions.tutors:
        if entry.includes(user.name, user.role):
            groups.update(dict.fromkeys(entry.groups))
            networks.update(dict.fromkeys(entry.networks))
    return Rooms(tuple(groups), tuple(networks))
