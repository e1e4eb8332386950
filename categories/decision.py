"""The result of a policy decision: an immutable value that explains itself."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple


class Action(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"


class Rule(StrEnum):
    """Which step of the precedence decided."""

    ILLEGAL_LIST = "illegal-list"
    OVERRIDE = "override"
    ALLOW_LIST = "allow-list"
    CATEGORY = "category"
    CONTENT_VERDICT = "content-verdict"
    GROUP_ALLOW = "group-allow"
    TIME_WINDOW = "time-window"
    IP_LITERAL = "ip-literal"
    DEFAULT = "default"
    LOOKALIKE = "look-alike"
    """An international name that imitates a listed name (homoglyphs)."""
    WATCH_LIST = "watch-list"
    """A search matched the Prevent watch list (logged and alerted, not blocked)."""
    INVALID_URL = "invalid-url"
    INTERNAL_DESTINATION = "internal-destination"
    """The destination is inside the centre's network (or the proxy's own services)."""
    PORT = "port"
    """The destination port is not one the proxy connects to for this kind of request."""
    OUTSIDE_HOURS = "outside_hours"
    """The group's or the network's ``online_during`` windows are all closed: refused, counted
    on its own (never prohibited content, never an alert)."""
    CLASS_SESSION = "class_session"
    """A member of staff's class session opened the network (outside its windows) or one of
    the session's sites (over a non-prohibited rule) for the people it covers."""
    ADMIN_SERVICE = "admin-service"
    """The destination is the centre's own esafety admin service: always let through, never
    logged (the block page's buttons lead there)."""


class Decision(NamedTuple):
    """Immutable (a tuple, which is also the cheapest value to build on the hot path)."""

    action: Action
    rule: Rule
    host: str
    reason: str
    category: str | None = None
    category_title: str | None = None
    matched: str | None = None
    """The entry that matched: a domain, ``host/path``, or an override's target."""
    source: str | None = None
    """The list (``ut1/gambling``) or file (``categories/definitions/weapons.yaml``)."""
    line: int | None = None
    categories: tuple[str, ...] = ()
    """Every category the request falls in, decisive or not."""
    severity: str | None = None
    safeguarding_alert: bool = False
    no_decrypt: bool = False
    override_id: str | None = None

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW

    def to_dict(self) -> dict[str, Any]:
        data = self._asdict()
        data["action"] = self.action.value
        data["rule"] = self.rule.value
        data["categories"] = list(self.categories)
        return data

    def explain(self) -> str:
        """One or two plain sentences for IT support."""
        verb = "Blocked" if self.blocked else "Allowed"
        where = ""
        if self.matched:
            where = f" {self.host} matches {self.matched}"
            if self.source:
                where += f" in {self.source}"
                if self.line:
                    where += f" line {self.line}"
            where += "."
        return f"{verb} ({self.rule.value}):{where} {self.reason}".replace(":  ", ": ")
