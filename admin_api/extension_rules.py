"""The browser extension's off-network rule set: one user's policy as a few host rules.

When a device is off the centre network, the extension enforces the learner's policy with
Chrome's ``declarativeNetRequest`` dynamic rules. This module turns the policy for one user
(their group's profile, the live overrides that apply to them, the time of day) into a
compact list of *host rules*: one rule per category (a huge category is split into a few
rules of at most :data:`MAX_DOMAINS_PER_RULE` domains), never one rule per domain. The
extension expands each host rule into two Chrome rules (a redirect to its block page for
page loads, a plain block for everything else), so the whole set stays far inside Chrome's
limits (30,000 dynamic rules, 5,000 of them "unsafe" redirects).

Priorities copy the policy's precedence (see :mod:`categories.policy`): illegal lists, then
overrides (user over group over everyone, then the longer target, then block over allow),
then allow categories, then block categories by severity, then the profile's defaults.

Each rule has a stable id and a content digest. The rule set's version is a digest of those,
and :class:`RulesetHistory` remembers recent versions so a client that sends ``since`` gets
only the rules that changed (or ``unchanged``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from categories.definitions import Category, CategoryKind
from categories.domain_index import DomainIndex
from categories.overrides import Override, OverrideScope
from categories.policy import Policy, curated_index

MAX_DOMAINS_PER_RULE = 50_000
"""Domains per host rule. Chrome sets no documented cap on ``requestDomains``; this keeps
each rule (and each update message) a manageable size."""
REFRESH_SECONDS = 300
"""How often the extension asks again (cheap: an unchanged set answers ``unchanged``)."""

PRIORITY_BLOCK_BASE = 10
"""Block categories: 10 + severity rank (1-4), so the most severe category wins."""
PRIORITY_CATCH_ALL = 1
PRIORITY_IP_LITERAL = 5
PRIORITY_ALLOW_CATEGORY = 20
PRIORITY_OVERRIDE_BASE = 1000
PRIORITY_ILLEGAL = 5000
_SCOPE_RANK = {OverrideScope.USER: 3, OverrideScope.GROUP: 2, OverrideScope.EVERYONE: 1}

# Stable rule ids: categories get 100 ids each (by sorted category id), overrides and the
# profile's catch-all rules live above them.
_IDS_PER_CATEGORY = 100
ID_CATCH_ALL = 1
ID_IP_LITERAL = 2
_OVERRIDE_ID_BASE = 900_000


@dataclass(frozen=True)
class HostRule:
    """One compact rule: ``block`` (shows the block page) or ``allow`` for ``domains``
    (each covers its subdomains). ``match`` is ``domains``, ``ip-literal`` or ``everything``."""

    id: int
    action: str
    priority: int
    category: str
    title: str
    reason: str
    domains: tuple[str, ...] = ()
    match: str = "domains"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "priority": self.priority,
                "category": self.category, "title": self.title, "reason": self.reason,
                "match": self.match, "domains": list(self.domains)}

    def digest(self) -> str:
        raw = json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Ruleset:
    group: str
    rules: tuple[HostRule, ...]
    refresh_after: int
    """Seconds until the set should be fetched again (sooner when a window or override ends)."""

    @property
    def digests(self) -> dict[int, str]:
        return {rule.id: rule.digest() for rule in self.rules}

    @property
    def version(self) -> str:
        raw = ",".join(f"{i}:{d}" for i, d in sorted(self.digests.items()))
        return hashlib.sha256(f"{self.group}|{raw}".encode()).hexdigest()[:20]


# -- which hosts each category lists ---------------------------------------------------------

def _parent_listed(host: str, hosts: set[str]) -> bool:
    dot = host.find(".")
    while dot != -1:
        if host[dot + 1:] in hosts:
            return True
        dot = host.find(".", dot + 1)
    return False


def _index_feeds(policy: Policy) -> list[tuple[DomainIndex, list[tuple[Category, ...]]]]:
    indexes = []
    if policy.snapshot is not None:
        snapshot = policy.snapshot
        feeds = [tuple(policy.categories[c]
                       for c in policy.categories.categories_for_list.get(li.name, ()))
                 for li in snapshot.lists]
        indexes.append((snapshot, feeds))
    indexes.append(curated_index(policy.categories))
    return indexes


def category_hosts(policy: Policy) -> dict[str, tuple[str, ...]]:
    """Every category's listed domains, sorted, without those a listed parent already covers
    (a rule's ``requestDomains`` entry matches subdomains too). URL entries and IPv6 literals
    are left out: the extension asks the backend about hosts the rules do not cover."""
    found: dict[str, set[str]] = {}
    for index, feeds in _index_feeds(policy):
        for host, list_ids in index.iter_host_entries():
            if ":" in host:
                continue  # IPv6 literals: left to the IP-literal rule and the backend check
            for list_id in list_ids:
                for category in feeds[list_id]:
                    found.setdefault(category.id, set()).add(host)
    return {category_id: tuple(sorted(h for h in hosts if not _parent_listed(h, hosts)))
            for category_id, hosts in found.items()}


class CategoryHostsCache:
    """:func:`category_hosts` computed once per loaded base policy (it walks the snapshot)."""

    def __init__(self) -> None:
        self._by_policy: weakref.WeakKeyDictionary[Policy, dict[str, tuple[str, ...]]] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def get(self, base: Policy) -> dict[str, tuple[str, ...]]:
        with self._lock:
            cached = self._by_policy.get(base)
            if cached is None:
                cached = category_hosts(base)
                self._by_policy[base] = cached
            return cached


# -- building one user's set -----------------------------------------------------------------

def _chunks(domains: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Split by a hash of each domain, so adding a domain changes only one chunk."""
    count = max(1, -(-len(domains) // MAX_DOMAINS_PER_RULE))
    if count == 1:
        return [domains]
    parts: list[list[str]] = [[] for _ in range(count)]
    for domain in domains:
        parts[zlib.crc32(domain.encode()) % count].append(domain)
    return [tuple(p) for p in parts if p]


def _blocks_for(category: Category, policy: Policy, group: str, at: datetime) -> bool:
    profile = policy.profile_for(group)
    if category.illegal:
        return True
    if category.kind is CategoryKind.ALLOW:
        return False
    if category.kind is CategoryKind.NEUTRAL:
        return category.id in profile.block
    if category.overridable and category.id in profile.allow:
        return False
    windows = profile.allow_during.get(category.id)
    return not (windows and category.overridable
                and policy.schedule.active(windows, at) is not None)


def _next_window_change(policy: Policy, group: str, at: datetime) -> int:
    """Seconds (at most REFRESH_SECONDS) until a time window of the group opens or closes."""
    profile = policy.profile_for(group)
    names = tuple(n for windows in profile.allow_during.values() for n in windows)
    if not names:
        return REFRESH_SECONDS
    now_active = policy.schedule.active(names, at)
    for minutes in range(1, REFRESH_SECONDS // 60 + 1):
        later = at + timedelta(minutes=minutes)
        later = later.replace(second=0, microsecond=0)
        if policy.schedule.active(names, later) != now_active:
            return max(1, int((later - at).total_seconds()))
    return REFRESH_SECONDS


def _override_rules(overrides: Iterable[Override], user: str, group: str, now: float
                    ) -> tuple[list[HostRule], float | None]:
    """Host overrides that apply to this user, grouped by (scope, action, target length) so
    each group shares one priority. Path overrides are left to the backend check."""
    grouped: dict[tuple[int, int, int], list[Override]] = {}
    next_expiry: float | None = None
    for override in overrides:
        if "/" in override.target or not override.applies_to(user, group, now):
            continue
        if override.expires_at is not None:
            next_expiry = min(next_expiry or override.expires_at, override.expires_at)
        block = 1 if override.action == "block" else 0
        key = (_SCOPE_RANK[override.scope], min(len(override.target), 253), block)
        grouped.setdefault(key, []).append(override)
    rules = []
    for n, (key, members) in enumerate(sorted(grouped.items())):
        scope_rank, length, block = key
        notes = sorted({o.note for o in members if o.note})
        rules.append(HostRule(
            id=_OVERRIDE_ID_BASE + n, action="block" if block else "allow",
            priority=PRIORITY_OVERRIDE_BASE + scope_rank * 600 + length * 2 + block,
            category="override",
            title="Blocked by the centre" if block else "Approved by the centre",
            reason=(notes[0] if len(notes) == 1 else
                    "This site has been blocked locally by the centre." if block else
                    "This site has been approved by the centre."),
            domains=tuple(sorted({o.target for o in members}))))
    return rules, next_expiry


def build_ruleset(policy: Policy, hosts: dict[str, tuple[str, ...]], *, user: str, group: str,
                  at: datetime | None = None) -> Ruleset:
    """The rule set for ``user`` in ``group`` at ``at`` (now by default)."""
    at = at or datetime.now(UTC)
    rules: list[HostRule] = []
    for ordinal, category_id in enumerate(sorted(policy.categories)):
        category = policy.categories[category_id]
        domains = hosts.get(category_id, ())
        if not domains:
            continue
        if category.kind is CategoryKind.ALLOW:
            action, priority = "allow", PRIORITY_ALLOW_CATEGORY
        elif _blocks_for(category, policy, group, at):
            action = "block"
            priority = (PRIORITY_ILLEGAL if category.illegal
                        else PRIORITY_BLOCK_BASE + category.severity.rank)
        else:
            continue
        for chunk_number, chunk in enumerate(_chunks(domains)[:_IDS_PER_CATEGORY]):
            rules.append(HostRule(
                id=1000 + ordinal * _IDS_PER_CATEGORY + chunk_number, action=action,
                priority=priority, category=category.id, title=category.title,
                reason=category.reason, domains=chunk))
    overrides, next_expiry = _override_rules(policy.overrides, user, group, at.timestamp())
    rules.extend(overrides)
    profile = policy.profile_for(group)
    if profile.block_ip_literals:
        rules.append(HostRule(
            id=ID_IP_LITERAL, action="block", priority=PRIORITY_IP_LITERAL,
            category="circumvention", title="Filter circumvention", match="ip-literal",
            reason="Sites must be visited by name. Bare IP addresses are blocked because they "
                   "are used to get round the filter."))
    if profile.block_uncategorised:
        rules.append(HostRule(
            id=ID_CATCH_ALL, action="block", priority=PRIORITY_CATCH_ALL, category="",
            title="Not on the approved list", match="everything",
            reason=f"The {profile.name} group may only visit approved sites."))
    refresh = _next_window_change(policy, group, at)
    if next_expiry is not None:
        refresh = max(1, min(refresh, int(next_expiry - at.timestamp()) + 1))
    return Ruleset(group=group, rules=tuple(sorted(rules, key=lambda r: r.id)),
                   refresh_after=refresh)


# -- versions and deltas ---------------------------------------------------------------------

class RulesetHistory:
    """Recent versions' rule digests, so a delta can be worked out from ``since``."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._versions: OrderedDict[str, dict[int, str]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, ruleset: Ruleset) -> None:
        with self._lock:
            self._versions[ruleset.version] = ruleset.digests
            self._versions.move_to_end(ruleset.version)
            while len(self._versions) > self._size:
                self._versions.popitem(last=False)

    def recall(self, version: str) -> dict[int, str] | None:
        with self._lock:
            return self._versions.get(version)


def delta_payload(ruleset: Ruleset, since: str | None, history: RulesetHistory
                  ) -> dict[str, Any]:
    """The response body: ``unchanged``, a delta from a remembered ``since``, or everything."""
    version = ruleset.version
    base = {"version": version, "group": ruleset.group, "refresh_after": ruleset.refresh_after,
            "limits": {"max_domains_per_rule": MAX_DOMAINS_PER_RULE}}
    if since is not None and since == version:
        return {**base, "unchanged": True, "full": False, "rules": [], "remove": []}
    history.remember(ruleset)
    before = history.recall(since) if since is not None else None
    if before is None:
        return {**base, "unchanged": False, "full": True,
                "rules": [r.to_dict() for r in ruleset.rules], "remove": []}
    now = ruleset.digests
    changed = [r.to_dict() for r in ruleset.rules if before.get(r.id) != now[r.id]]
    removed = sorted(set(before) - set(now))
    return {**base, "unchanged": False, "full": False, "rules": changed, "remove": removed}
