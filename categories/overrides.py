"""Overrides: local allow and block rules, including approved unblock requests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from categories.list_formats import url_entry
from categories.urlnorm import registrable_parts


class OverrideScope(StrEnum):
    USER = "user"
    GROUP = "group"
    EVERYONE = "everyone"


_SCOPE_RANK = {OverrideScope.USER: 3, OverrideScope.GROUP: 2, OverrideScope.EVERYONE: 1}


@dataclass(frozen=True, slots=True)
class Override:
    id: str
    target: str
    """Canonical host (covers its subdomains) or ``host/path`` prefix."""
    action: str
    """``allow`` or ``block``."""
    scope: OverrideScope
    subject: str | None
    """User name for scope ``user``, group name for ``group``, None for ``everyone``."""
    expires_at: float | None = None
    """Epoch seconds; None for no expiry."""
    created_by: str = ""
    created_at: float = 0.0
    note: str = ""
    request_id: str | None = None
    """The unblock request this override approves, if any."""

    def applies_to(self, user: str | None, group: str | None, now: float) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return False
        if self.scope is OverrideScope.EVERYONE:
            return True
        if self.scope is OverrideScope.GROUP:
            return group is not None and group == self.subject
        return user is not None and user == self.subject

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scope"] = self.scope.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Override:
        return cls(
            id=str(data["id"]),
            target=str(data["target"]),
            action=str(data["action"]),
            scope=OverrideScope(data["scope"]),
            subject=data.get("subject"),
            expires_at=float(data["expires_at"]) if data.get("expires_at") is not None else None,
            created_by=str(data.get("created_by", "")),
            created_at=float(data.get("created_at", 0.0)),
            note=str(data.get("note", "")),
            request_id=data.get("request_id"),
        )


def canonical_target(text: str) -> str:
    """Canonical override target for a URL, ``host/path`` or host; raises ValueError."""
    entry = url_entry(text.strip())
    if isinstance(entry, str):
        raise ValueError(f"{text[:200]!r} is not a valid site: {entry}")
    return entry.value


class OverrideSet:
    """Overrides indexed by host, so a lookup costs one dict probe per label of the host."""

    def __init__(self, overrides: Iterable[Override] = ()) -> None:
        self._by_host: dict[str, list[Override]] = {}
        self._all: list[Override] = []
        for override in overrides:
            host = override.target.split("/", 1)[0]
            self._by_host.setdefault(host, []).append(override)
            self._all.append(override)

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Any:
        return iter(self._all)

    def has_path_rules(self, host: str) -> bool:
        return any("/" in o.target for part in registrable_parts(host)
                   for o in self._by_host.get(part, ()))

    def find(self, host: str, path: str, user: str | None, group: str | None, now: float
             ) -> Override | None:
        """The most specific live override for this request: user over group over everyone,
        then the longest target, then block over allow."""
        if not self._by_host:
            return None
        best: Override | None = None
        best_rank: tuple[int, int, int] = (0, 0, 0)
        for part in registrable_parts(host):
            for override in self._by_host.get(part, ()):
                if not override.applies_to(user, group, now):
                    continue
                slash = override.target.find("/")
                if slash != -1:
                    prefix = override.target[slash:]
                    if not path.startswith(prefix):
                        continue
                    rest = path[len(prefix):]
                    if rest and rest[0] not in "/?&;#" and not prefix.endswith("/"):
                        continue
                rank = (_SCOPE_RANK[override.scope], len(override.target),
                        1 if override.action == "block" else 0)
                if rank > best_rank:
                    best, best_rank = override, rank
        return best
