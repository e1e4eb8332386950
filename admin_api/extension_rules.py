"""The browser extension's off-network rule set: one user's policy as a few host rules.

When a device is off the centre network, the extension enforces the learner's policy with
Chrome's ``declarativeNetRequest`` dynamic rules. This module turns the policy for one user
(their group's profile, the live overrides that apply to them, the time of day) into a
compact list of *host rules*: one rule per category (a huge category is split into a few
rules of at most :data:`MAX_DOMAINS_PER_RULE` domains), never one rule per domain. The
extension expands each host rule into two Chrome rules (a redirect to its block page for
page loads, a plain block for everything else), so the whole set stays far inside Chrome's
limits (30,000 dynamic rules, 5,000 of them "unsafe" redirects).

Priorities copy the policy's precedence (see :mod:`categories.policy`): illegal lists always
win; then overrides (user over group over everyone, then the longer target, then block over
allow); then, between allow-list and block entries, the most specific match wins (a URL
prefix over any host entry, a longer domain over a shorter one) and a tie blocks (block
entries rank above allow entries of the same length, the more severe category first); then
the profile's defaults. So host rules are split by category *and* by the number of labels
in their domains.

Curated and listed URL prefixes (``host/path``) become ``url-prefix`` rules: a handful of
prefixes per rule, which the extension compiles into one RE2 ``regexFilter``, so a listed
page is refused before the request leaves the browser. Chrome allows 1,000 regex rules, so
at most :data:`MAX_URL_RULES` such rules are sent (the most severe categories first). The
hosts of any prefixes left out get a ``check`` rule: Chrome holds page loads of those hosts
until the extension has asked the backend about the full address (nothing reaches the site
first); ``unexpressed_prefixes`` counts them.

Where no order of Chrome rules can give the policy's answer, the host is *held* with a
``check`` rule above every override (:func:`held_hosts`): a path override that applies to the
user, a host entry under a URL prefix of the opposite action (the policy ranks the entry with
more labels first), and an allow-list URL prefix more specific than a block prefix it overlaps.
``tests/admin_api/test_extension_rules_equivalence.py`` checks that the set blocks exactly what
:meth:`categories.policy.Policy.decide` blocks.

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

PRIORITY_ENTRY_BASE = 30
"""Host entries: 30 + 10 x labels (at most 20), + 5 + severity rank (1-4) for block entries,
so a longer domain wins, and at the same length a block entry (the most severe first)."""
MAX_LABELS_RANKED = 20
PRIORITY_URL_PREFIX = PRIORITY_ENTRY_BASE + 10 * (MAX_LABELS_RANKED + 1)
"""URL prefixes: above every host entry; + 5 + severity rank for block entries."""
PRIORITY_CATCH_ALL = 1
PRIORITY_IP_LITERAL = 5
PRIORITY_OVERRIDE_BASE = 1000
PRIORITY_ILLEGAL = 5000
PREFIXES_PER_RULE = 4
"""URL prefixes per url-prefix rule (one case-sensitive regexFilter each, within RE2's 2 KB
program limit; the extension turns any rule Chrome still refuses into a check rule)."""
MAX_PREFIX_LENGTH = 200
MAX_URL_RULES = 400
"""url-prefix rules per set: each becomes two regex rules, and Chrome allows 1,000."""
_CHECK_ID_BASE = 800_000
"""``check`` rules: 800,000 + 100 x category ordinal + chunk (below the overrides)."""
_HELD_ID_BASE = 850_000
"""``check`` rules for hosts whose decision Chrome's priorities cannot express: 850,000 +
chunk."""
PRIORITY_HELD = PRIORITY_ILLEGAL - 1
"""Held hosts: above every override (a path override may outrank a host override), below
the illegal lists (which win in the policy too)."""
MAX_HELD_CHUNKS = 100
_URL_IDS_FROM = 50
"""Within a category's 100 ids: 0-49 domain rules, 50-99 url-prefix rules."""
_SCOPE_RANK = {OverrideScope.USER: 3, OverrideScope.GROUP: 2, OverrideScope.EVERYONE: 1}

# Stable rule ids: categories get 100 ids each (by sorted category id), overrides and the
# profile's catch-all rules live above them.
_IDS_PER_CATEGORY = 100
ID_CATCH_ALL = 1
ID_IP_LITERAL = 2
_OVERRIDE_ID_BASE = 900_000


@dataclass(frozen=True)
class HostRule:
    """One compact rule: ``block`` (shows the block page), ``allow``, or ``check`` (page
    loads wait for the backend's decision on the full address) for ``domains``
    (each covers its subdomains). ``match`` is ``domains``, ``ip-literal`` or ``everything``."""

    id: int
    action: str
    priority: int
    category: str
    title: str
    reason: str
    domains: tuple[str, ...] = ()
    match: str = "domains"
    prefixes: tuple[str, ...] = ()
    """``url-prefix`` rules only: ``host/path`` entries (each covers subdomains and the paths
    below, as on the proxy)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "action": self.action, "priority": self.priority,
               "category": self.category, "title": self.title, "reason": self.reason,
               "match": self.match, "domains": list(self.domains)}
        if self.match == "url-prefix":
            out["prefixes"] = list(self.prefixes)
        return out

    def digest(self) -> str:
        raw = json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Ruleset:
    group: str
    rules: tuple[HostRule, ...]
    refresh_after: int
    """Seconds until the set should be fetched again (sooner when a window or override ends)."""
    unexpressed_prefixes: int = 0
    """URL prefixes left out for Chrome's regex limit (the backend check covers them)."""

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


def category_url_prefixes(policy: Policy) -> dict[str, tuple[str, ...]]:
    """Every category's listed URL prefixes as ``host/path``, sorted (IPv6 hosts left out)."""
    found: dict[str, set[str]] = {}
    for index, feeds in _index_feeds(policy):
        urls = index._urls  # the index has no public walk over its URL entries
        for key, kid in urls.iteritems():
            slash = key.find("/")
            if slash <= 1:
                continue
            host, path = key[:slash][-2::-1], key[slash:]
            if ":" in host or len(host) + len(path) > MAX_PREFIX_LENGTH:
                continue
            payload = index._payload(
                kid, index._url_combo, index._url_line, index._url_extras)
            for list_id, _line in payload:
                for category in feeds[list_id]:
                    found.setdefault(category.id, set()).add(host + path)
    return {category_id: tuple(sorted(prefixes)) for category_id, prefixes in found.items()}


@dataclass(frozen=True)
class CategoryEntries:
    hosts: dict[str, tuple[str, ...]]
    prefixes: dict[str, tuple[str, ...]]


class CategoryHostsCache:
    """:func:`category_hosts` and :func:`category_url_prefixes`, computed once per loaded
    base policy (they walk the snapshot)."""

    def __init__(self) -> None:
        self._by_policy: weakref.WeakKeyDictionary[Policy, CategoryEntries] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def get(self, base: Policy) -> CategoryEntries:
        with self._lock:
            cached = self._by_policy.get(base)
            if cached is None:
                cached = CategoryEntries(category_hosts(base), category_url_prefixes(base))
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


def _labels(domain: str) -> int:
    return min(domain.count(".") + 1, MAX_LABELS_RANKED)


# -- hosts the priorities cannot decide ------------------------------------------------------

@dataclass(frozen=True)
class Nesting:
    """Listed entries whose order Chrome's priorities get wrong in the policy's terms
    (see :func:`held_hosts`), found once per set of listed entries."""

    host_under_prefix: tuple[tuple[str, str, str], ...]
    """(host, its category, a URL prefix category): a host entry with more labels than a
    URL prefix's host, under it. The policy ranks the host entry first (more labels), Chrome
    the prefix (URL prefixes rank above every host entry)."""
    allow_prefix_over_block: tuple[tuple[str, str], ...]
    """(host, block prefix category): an allow-list URL prefix more specific than a block
    URL prefix it overlaps. The policy lets the allow entry win, Chrome the block (block
    prefixes rank above allow prefixes)."""


def _parents(host: str) -> Iterable[str]:
    """``host`` and each domain above it, longest first."""
    yield host
    dot = host.find(".")
    while dot != -1:
        yield host[dot + 1:]
        dot = host.find(".", dot + 1)


def _prefix_specificity(host: str, path: str) -> tuple[int, int]:
    return host.count(".") + 1, len(path)


def find_nesting(policy: Policy, hosts: dict[str, tuple[str, ...]],
                 prefixes: dict[str, tuple[str, ...]]) -> Nesting:
    by_host: dict[str, list[tuple[str, str]]] = {}  # prefix host -> [(path, category)]
    for category_id, listed in prefixes.items():
        for prefix in listed:
            host, slash, path = prefix.partition("/")
            by_host.setdefault(host, []).append((slash + path, category_id))
    if not by_host:
        return Nesting((), ())
    under: set[tuple[str, str, str]] = set()
    for category_id, domains in hosts.items():
        for domain in domains:
            for parent in _parents(domain):
                if parent != domain and parent in by_host:
                    under.update((domain, category_id, prefix_category)
                                 for _path, prefix_category in by_host[parent])
    allow_over_block: set[tuple[str, str]] = set()
    for host, entries in by_host.items():
        for path, category_id in entries:
            if policy.categories[category_id].kind is not CategoryKind.ALLOW:
                continue
            mine = _prefix_specificity(host, path)
            for parent in _parents(host):
                for other_path, other in by_host.get(parent, ()):
                    if policy.categories[other].kind is CategoryKind.ALLOW:
                        continue
                    overlap = path.startswith(other_path) or other_path.startswith(path)
                    if overlap and mine > _prefix_specificity(parent, other_path):
                        allow_over_block.add((host, other))
    return Nesting(tuple(sorted(under)), tuple(sorted(allow_over_block)))


_NESTING_CACHE: list[tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]], Nesting]] = []
_NESTING_LOCK = threading.Lock()


def _nesting(policy: Policy, hosts: dict[str, tuple[str, ...]],
             prefixes: dict[str, tuple[str, ...]]) -> Nesting:
    """:func:`find_nesting` for the same entries (the same dicts: they are cached per base
    policy by :class:`CategoryHostsCache`) is worked out once."""
    with _NESTING_LOCK:
        for cached_hosts, cached_prefixes, found in _NESTING_CACHE:
            if cached_hosts is hosts and cached_prefixes is prefixes:
                return found
    found = find_nesting(policy, hosts, prefixes)
    with _NESTING_LOCK:
        _NESTING_CACHE[:] = [*_NESTING_CACHE[-3:], (hosts, prefixes, found)]
    return found


def held_hosts(policy: Policy, nesting: Nesting, actions: dict[str, str], user: str,
               group: str, now: float) -> set[str]:
    """Hosts whose page loads must wait for the backend's decision on the full address,
    because no order of Chrome rules gives the policy's answer there:

    * a path override that applies to this user (its host rules decide every other path);
    * a host entry under a URL prefix of the opposite action (the policy ranks the entry
      with more labels first, Chrome ranks URL prefixes above host entries);
    * an allow-list URL prefix more specific than a block URL prefix it overlaps.

    ``actions`` maps each category that has rules in this set to ``allow`` or ``block``."""
    held = {override.target.split("/", 1)[0] for override in policy.overrides
            if "/" in override.target and override.applies_to(user, group, now)}
    for host, category_id, prefix_category in nesting.host_under_prefix:
        mine, theirs = actions.get(category_id), actions.get(prefix_category)
        if (mine is not None and theirs is not None and mine != theirs
                and not policy.categories[category_id].illegal
                and not policy.categories[prefix_category].illegal):
            held.add(host)
    for host, block_category in nesting.allow_prefix_over_block:
        if (actions.get(block_category) == "block"
                and not policy.categories[block_category].illegal):
            held.add(host)
    return held


def build_ruleset(policy: Policy, hosts: dict[str, tuple[str, ...]], *, user: str, group: str,
                  at: datetime | None = None,
                  prefixes: dict[str, tuple[str, ...]] | None = None) -> Ruleset:
    """The rule set for ``user`` in ``group`` at ``at`` (now by default)."""
    at = at or datetime.now(UTC)
    rules: list[HostRule] = []
    url_rules: list[tuple[int, HostRule]] = []
    unexpressed = 0
    left_out: dict[str, tuple[int, int, set[str]]] = {}  # category -> (ordinal, priority, hosts)
    actions: dict[str, str] = {}  # category -> the action of its rules in this set

    def leave_out(ordinal: int, rule: HostRule, prefixes: tuple[str, ...]) -> None:
        if rule.action != "block":
            return  # an allow prefix left out: its host's block rules still hold (closed)
        entry = left_out.setdefault(rule.category, (ordinal, rule.priority, set()))
        entry[2].update(prefix.split("/", 1)[0] for prefix in prefixes)

    for ordinal, category_id in enumerate(sorted(policy.categories)):
        category = policy.categories[category_id]
        domains = hosts.get(category_id, ())
        listed = (prefixes or {}).get(category_id, ())
        if not domains and not listed:
            continue
        if category.kind is CategoryKind.ALLOW:
            action, bonus = "allow", 0
        elif _blocks_for(category, policy, group, at):
            action, bonus = "block", 5 + category.severity.rank
        else:
            continue
        actions[category_id] = action
        first_id = 1000 + ordinal * _IDS_PER_CATEGORY
        by_labels: dict[int, list[str]] = {}
        for domain in domains:
            by_labels.setdefault(_labels(domain), []).append(domain)
        chunk_number = 0
        for labels in sorted(by_labels):
            priority = (PRIORITY_ILLEGAL if category.illegal
                        else PRIORITY_ENTRY_BASE + 10 * labels + bonus)
            for chunk in _chunks(tuple(by_labels[labels])):
                if chunk_number >= _URL_IDS_FROM:
                    break
                rules.append(HostRule(
                    id=first_id + chunk_number, action=action, priority=priority,
                    category=category.id, title=category.title, reason=category.reason,
                    domains=chunk))
                chunk_number += 1
        url_priority = PRIORITY_ILLEGAL if category.illegal else PRIORITY_URL_PREFIX + bonus
        for n in range(0, len(listed), PREFIXES_PER_RULE):
            number = n // PREFIXES_PER_RULE
            if _URL_IDS_FROM + number >= _IDS_PER_CATEGORY:
                unexpressed += len(listed) - n
                leave_out(ordinal, HostRule(id=0, action=action, priority=url_priority,
                                            category=category.id, title="", reason=""),
                          listed[n:])
                break
            url_rules.append((url_priority, HostRule(
                id=first_id + _URL_IDS_FROM + number, action=action, priority=url_priority,
                category=category.id, title=category.title, reason=category.reason,
                match="url-prefix", prefixes=listed[n:n + PREFIXES_PER_RULE])))
    # Chrome's regex budget: the most severe (highest priority) categories first
    url_rules.sort(key=lambda pr: (-pr[0], pr[1].id))
    ordinals = {c: n for n, c in enumerate(sorted(policy.categories))}
    for _priority, rule in url_rules[MAX_URL_RULES:]:
        unexpressed += len(rule.prefixes)
        leave_out(ordinals[rule.category], rule, rule.prefixes)
    rules.extend(rule for _priority, rule in url_rules[:MAX_URL_RULES])
    for category_id, (ordinal, priority, check_hosts) in sorted(left_out.items()):
        category = policy.categories[category_id]
        for chunk_number, chunk in enumerate(_chunks(tuple(sorted(check_hosts)))[:100]):
            rules.append(HostRule(
                id=_CHECK_ID_BASE + ordinal * _IDS_PER_CATEGORY + chunk_number, action="check",
                priority=priority, category=category.id, title=category.title,
                reason=category.reason, domains=chunk))
    overrides, next_expiry = _override_rules(policy.overrides, user, group, at.timestamp())
    rules.extend(overrides)
    nesting = _nesting(policy, hosts, prefixes or {})
    held = held_hosts(policy, nesting, actions, user, group, at.timestamp())
    held_chunks = _chunks(tuple(sorted(held)))[:MAX_HELD_CHUNKS] if held else []
    for chunk_number, chunk in enumerate(held_chunks):
        rules.append(HostRule(
            id=_HELD_ID_BASE + chunk_number, action="check", priority=PRIORITY_HELD,
            category="", title="Checked with the centre",
            reason="The centre decides this address by its full path.", domains=chunk))
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
                   refresh_after=refresh, unexpressed_prefixes=unexpressed)


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
            "limits": {"max_domains_per_rule": MAX_DOMAINS_PER_RULE},
            "unexpressed_prefixes": ruleset.unexpressed_prefixes}
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


# -- the Chrome rules a host rule becomes (the extension's lib/dnr_rules.js does the same) --

SUBRESOURCES = ("sub_frame", "stylesheet", "script", "image", "font", "object",
                "xmlhttprequest", "ping", "media", "websocket", "webtransport", "other")
IP_LITERAL_REGEX = ("^[a-z][a-z0-9+.-]*://(\\[[0-9a-fA-F:.]+\\]|[0-9]+(\\.[0-9]+){3})"
                    "(:[0-9]+)?(/|$)")
_REGEX_SPECIAL = frozenset(".*+?^${}()|[]\\/")


def _regex_escape(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def url_prefix_regex(prefixes: tuple[str, ...]) -> str:
    """One RE2 pattern for ``host/path`` prefixes: the host or a subdomain of it, any port,
    then the path, ending at a boundary (as the proxy's URL entries match)."""
    parts = []
    for prefix in prefixes:
        host, _, path = prefix.partition("/")
        parts.append(f"{_regex_escape(host)}\\.?(:[0-9]+)?/{_regex_escape(path)}")
    return ("^https?://([^/?#@]*\\.)?(" + "|".join(parts) + ")([/?&;#]|$)")


def chrome_rules(rule: HostRule) -> list[dict[str, Any]]:
    """The two Chrome rules (ids 2n: page loads, 2n+1: everything else) for a host rule."""
    condition: dict[str, Any] = {}
    if rule.match == "domains":
        condition["requestDomains"] = list(rule.domains)
    elif rule.match == "ip-literal":
        condition["regexFilter"] = IP_LITERAL_REGEX
    elif rule.match == "url-prefix":
        condition["regexFilter"] = url_prefix_regex(rule.prefixes)
        condition["isUrlFilterCaseSensitive"] = True  # paths are; hosts come lowercased
    action = {"type": "allow" if rule.action == "allow" else "block"}
    page = {"id": rule.id * 2, "priority": rule.priority, "action": action,
            "condition": {**condition, "resourceTypes": ["main_frame"]}}
    if rule.action == "check":
        return [page]  # page loads wait for the extension's check; the rest go on
    return [page, {"id": rule.id * 2 + 1, "priority": rule.priority, "action": action,
                   "condition": {**condition, "resourceTypes": list(SUBRESOURCES)}}]
