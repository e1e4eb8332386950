"""``Policy.decide``: one request's facts in, one explained :class:`Decision` out.

Precedence, first match wins:

1. illegal lists (IWF, CTIRU): always blocked, nobody can override them;
2. explicit overrides and approved unblocks (user over group over everyone);
3. allow categories (sex education, the education allow-list), but only over block entries
   that are *less specific* than the allow entry (see below);
4. block categories, in order of severity, unless the group's profile allows the category,
   always or inside one of its time windows;
5. the default: IP-literal hosts are blocked where the profile says so; everything else is
   allowed (or blocked, for a profile that blocks uncategorised sites);
6. the hours, for a request from a network (``hours=`` of :meth:`Policy.decide`, which the
   proxy always gives and the admin service's questions leave out):

   * a class session (:mod:`categories.class_sessions`) covering the person or the network
     allows its own sites over a *non-prohibited* block (a category the group blocks, or a
     group that may only visit approved sites; rule ``class_session``);
   * access windows: a request the steps above allow is still refused (rule ``outside_hours``)
     while every window of the group's ``online_during`` is closed, or every window of the
     network's: both must be open, unless a live class session covers the request (and, for a
     session limited to sites, lists the host). The group's ``always_allow`` categories and
     hosts are reachable at any time.

   A request the steps above block for prohibited content keeps its own rule, so it is never
   hidden behind the hours, and no session opens it.

Between allow-list and block-list entries the most specific entry wins, so an allow-listed
parent domain never opens a listed child (``mozilla.org`` allowed, ``vpn.mozilla.org`` in a VPN
list: the VPN site stays blocked). Specificity compares, in order:

* the number of labels of the entry's host (``vpn.mozilla.org`` beats ``mozilla.org``; a domain
  entry for ``www.example.com`` beats a URL entry ``example.com/x``);
* then the path length of a URL entry, a domain entry counting as no path (a URL entry
  ``example.com/vpn`` beats the domain entry ``example.com``; ``example.com/a/b`` beats
  ``example.com/a``);
* then an entry on the requested name beats the imitated name of a look-alike.

A tie blocks. A content classifier's verdict ranks below every list entry (an allow-listed
site is not blocked by a guess about its page), and illegal lists (step 1) always win.
Overrides (step 2) are explicit decisions by the centre and keep their own order: the approval
workflow tells the reviewer what an override on a host opens.

The policy is immutable. A proxy swaps in a new one when overrides or lists change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from categories.class_sessions import ClassSession, SessionSet
from categories.decision import Action, Decision, Rule
from categories.definitions import Category, CategoryKind, CategorySet
from categories.domain_index import DomainIndex, IndexMatch, ListInfo, build_index, host_key
from categories.list_formats import EntryKind
from categories.lookalikes import ascii_lookalikes
from categories.overrides import Override, OverrideSet
from categories.profiles import (
    DEFAULT_TIMEZONE,
    GroupProfile,
    NetworkHours,
    Schedule,
    TimeWindow,
    default_profiles,
    default_windows,
    describe_opening,
    describe_windows,
)
from categories.urlnorm import CanonicalURL, HostKind, URLError, canonical_url

_NO_RULE_BLOCKS = "No rule blocks this site."
# The hot path's constants: an enum member read from its class costs more than a global.
_NAME = HostKind.NAME
_ALLOW = Action.ALLOW
_BLOCK = Action.BLOCK
_KIND_ALLOW = CategoryKind.ALLOW
_KIND_BLOCK = CategoryKind.BLOCK
_KIND_NEUTRAL = CategoryKind.NEUTRAL
_RULE_DEFAULT = Rule.DEFAULT
_tuple_new = tuple.__new__
_DECISION_DEFAULTS = Decision(_ALLOW, _RULE_DEFAULT, "", "")[4:]
_SESSION_LIFTS = frozenset({Rule.CATEGORY, Rule.DEFAULT})
"""The blocking rules a class session's own sites may lift (never for a prohibited category:
:meth:`Policy._session_site` checks every category of the request)."""
"""Every field of a Decision after ``reason``, at its default."""


class PolicyError(ValueError):
    """A profile or setting contradicts the category definitions."""


class _Hit(NamedTuple):
    category: Category
    match: IndexMatch | None
    """None for a verdict from a content classifier."""
    source: ListInfo | None
    lookalike: bool = False
    """The match is on the ASCII name this host imitates, not on the host itself."""


def _severity_order(hit: _Hit) -> int:
    return -hit.category.severity.rank


def _severity_order_of_category(category: Category) -> int:
    return -category.severity.rank


def _specificity(hit: _Hit) -> tuple[int, int, int]:
    """How specific a hit's entry is (see the module docstring): host labels, path length
    (0 for a domain entry), 1 for an entry on the requested name itself (0 for a look-alike).
    A content verdict (no entry) ranks below every list entry."""
    match = hit.match
    if match is None:
        return (-1, 0, 0)
    entry = match.entry
    direct = 0 if hit.lookalike else 1
    slash = entry.find("/")
    if slash == -1:
        return (entry.count(".") + 1, 0, direct)
    return (entry.count(".", 0, slash) + 1, len(entry) - slash, direct)


def _block_beats_allow(block: _Hit, allow: _Hit) -> str:
    """The explanation's sentence for a block entry that beat an allow-list entry."""
    if _specificity(block) == _specificity(allow):
        return (f"The block entry {_entry_of(block)} is as specific as the allow-list entry "
                f"{_entry_of(allow)}, and a tie blocks.")
    return (f"The block entry {_entry_of(block)} is more specific than the allow-list entry "
            f"{_entry_of(allow)}, so it wins.")


def _entry_of(hit: _Hit) -> str:
    if hit.match is None:
        return "the content classifier's verdict"
    return f"{hit.match.entry} ({hit.source.source if hit.source else 'content classifier'})"


class _Plan(NamedTuple):
    """The decision for a request whose only match is one entry of one list, for one profile,
    with the request's own parts left out: ``Decision(*head, host, *middle, matched, source,
    line, *tail)``, where ``matched`` and ``line`` are the entry's (``by_entry``) or None.
    ``by_entry`` is None when the decision for such a request is not a plain function of the
    list and the profile (it depends on the time or on the entry's text): such a request goes
    the general way."""

    head: tuple[Action, Rule]
    middle: tuple[str, str | None, str | None]
    source: str | None
    tail: tuple[tuple[str, ...], str | None, bool, bool, str | None]
    by_entry: bool | None
    windows: tuple[tuple[str, ...], ...] = ()
    """For a list with categories the profile allows during time windows: those windows, per
    such category. The decision then depends on which of them is open (see
    :meth:`Policy._plan_at`); this plan itself gives none."""


_NO_PLAN = _Plan((_ALLOW, _RULE_DEFAULT), ("", None, None), None, ((), None, False, False, None),
                 None)
_PROBES = (("plan-probe-one.invalid", "plan-probe-one.invalid", 7),
           ("www.plan-probe-two.invalid", "plan-probe-two.invalid/probe/path", 0))
"""Two requests with unlike hosts, entries and lines: a plan must rebuild the general path's
decision for both."""


# ``X.__new__(X, ...)`` is exactly ``X(...)`` for these NamedTuples, at half the cost.
_new_hit = _Hit.__new__
_new_decision = Decision.__new__


def curated_index(categories: CategorySet) -> tuple[DomainIndex, list[tuple[Category, ...]]]:
    """An in-memory index of the categories' own hand-curated entries (the built-in starter
    lists), active whether or not a snapshot is loaded; a match names its source
    ``built-in categories/definitions/<id>.yaml``."""
    lists: list[ListInfo] = []
    feeds: list[tuple[Category, ...]] = []
    entries: list[tuple[int, EntryKind, str, int]] = []
    for category in categories.values():
        if not category.entries:
            continue
        list_id = len(lists)
        lists.append(ListInfo(category.id, category.starter_source))
        feeds.append((category,))
        entries.extend((list_id, e.kind, e.value, e.line) for e in category.entries)
    return build_index(lists, entries), feeds


class ListedEntry(NamedTuple):
    """A block-list entry, as :meth:`Policy.block_entries_under` reports it."""

    entry: str
    """A domain, or ``host/path`` for a URL entry."""
    category: str
    category_title: str
    source: str


class Policy:
    def __init__(
        self,
        categories: CategorySet,
        snapshot: DomainIndex | None = None,
        *,
        profiles: Mapping[str, GroupProfile] | None = None,
        windows: Mapping[str, TimeWindow] | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        unidentified_group: str = "guest",
        overrides: OverrideSet | None = None,
        snapshot_version: str | None = None,
        sessions: SessionSet | None = None,
    ) -> None:
        self.categories = categories
        self.snapshot = snapshot
        self.snapshot_version = snapshot_version
        self.profiles = dict(profiles if profiles is not None else default_profiles())
        self.schedule = Schedule(dict(windows if windows is not None else default_windows()),
                                 ZoneInfo(timezone))
        self.unidentified_group = unidentified_group
        self.overrides = overrides or OverrideSet()
        self._has_overrides = len(self.overrides) > 0
        self.sessions = sessions or SessionSet()
        self._has_sessions = len(self.sessions) > 0
        self._validate()
        self._strictest = self.profiles[unidentified_group]
        self._indexes: list[tuple[DomainIndex, list[tuple[Category, ...]]]] = []
        if snapshot is not None:
            feeds = [tuple(categories[c] for c in categories.categories_for_list.get(li.name, ()))
                     for li in snapshot.lists]
            self._indexes.append((snapshot, feeds))
        self._indexes.append(curated_index(categories))
        self._plans: dict[tuple[int, int, int] | tuple[int, int, int, tuple[str | None, ...]],
                          _Plan] = {}
        """Per (profile id, index id, list id), both held by this policy, and for a list
        with time windows per the windows open: see :meth:`_plan_for`. Plans depend on the
        categories, the lists and the profiles only (never on overrides, sessions, verdicts or
        the time), so clones made by :meth:`with_overrides` share them."""

    def _validate(self) -> None:
        if self.unidentified_group not in self.profiles:
            raise PolicyError(f"unidentified_group {self.unidentified_group!r} has no profile")
        for profile in self.profiles.values():
            named = set(profile.allow) | set(profile.block) | set(profile.allow_during)
            for category_id in sorted(named):
                if category_id not in self.categories:
                    raise PolicyError(f"group {profile.name!r} names unknown category {category_id!r}")
            for category_id in sorted(set(profile.allow) | set(profile.allow_during)):
                if not self.categories[category_id].overridable:
                    raise PolicyError(f"group {profile.name!r} cannot allow {category_id!r}: "
                                      "that category can never be overridden")
            for windows in (*profile.allow_during.values(), profile.online_during):
                for window in windows:
                    if window not in self.schedule.windows:
                        raise PolicyError(f"group {profile.name!r} names unknown time window {window!r}")
            for entry in sorted(profile.always_allow):
                category = self.categories.get(entry)
                if category is None:
                    if "." not in entry:
                        raise PolicyError(f"group {profile.name!r}: always_allow names "
                                          f"{entry!r}, which is neither a category nor a host")
                    continue
                if category.kind is CategoryKind.BLOCK:
                    raise PolicyError(f"group {profile.name!r}: always_allow cannot name the "
                                      f"prohibited category {entry!r}; prohibited categories "
                                      "stay blocked at every hour")

    def with_overrides(self, overrides: Iterable[Override],
                       sessions: Iterable[ClassSession] | None = None) -> Policy:
        """A copy of this policy with a new set of overrides and, when given, of class
        sessions (the indexes are shared)."""
        clone = object.__new__(Policy)
        for name in ("categories", "snapshot", "snapshot_version", "profiles", "schedule",
                     "unidentified_group", "_strictest", "_indexes", "_plans"):
            setattr(clone, name, getattr(self, name))
        clone.overrides = overrides if isinstance(overrides, OverrideSet) else OverrideSet(overrides)
        clone._has_overrides = len(clone.overrides) > 0
        if sessions is None:
            clone.sessions = self.sessions
        else:
            clone.sessions = sessions if isinstance(sessions, SessionSet) else SessionSet(sessions)
        clone._has_sessions = len(clone.sessions) > 0
        return clone

    def profile_for(self, group: str | None) -> GroupProfile:
        if group is None:
            return self._strictest
        return self.profiles.get(group, self._strictest)

    def block_entries_under(self, target: str, limit: int = 10_000) -> list[ListedEntry]:
        """The block-list entries an allow override on ``target`` (a canonical host, or
        ``host/path``) would open: entries for the host and its subdomains, and URL entries on
        them (only those below the path, for a ``host/path`` target). Entries of illegal
        lists are left out, because nothing opens those; so are neutral categories no group
        blocks. At most ``limit`` entries, sorted, one per entry."""
        host, slash, rest = target.partition("/")
        path = slash + rest
        blocked_somewhere = {c for p in self.profiles.values() for c in p.block}
        found: dict[str, ListedEntry] = {}
        illegal: set[str] = set()
        for index, feeds in self._indexes:
            for m in index.entries_under(host_key(host), path):
                categories = feeds[m.list_id]
                if any(c.illegal for c in categories):
                    illegal.add(m.entry)
                    continue
                if m.entry in found:
                    continue
                blocking = [c for c in categories if c.kind is CategoryKind.BLOCK
                            or (c.kind is CategoryKind.NEUTRAL and c.id in blocked_somewhere)]
                if blocking:
                    category = min(blocking, key=_severity_order_of_category)
                    found[m.entry] = ListedEntry(m.entry, category.id, category.title,
                                                 index.lists[m.list_id].source)
                    if len(found) > limit:
                        break
        return sorted(e for e in found.values() if e.entry not in illegal)[:limit]

    def needs_path(self, host: str) -> bool:
        """True when the path can change the decision for ``host`` (URL entries or overrides)."""
        rev = host_key(host)
        return (any(index.host_has_url_rules(rev) for index, _ in self._indexes)
                or self.overrides.has_path_rules(host))

    def decide(
        self,
        target: str | CanonicalURL,
        *,
        user: str | None = None,
        group: str | None = None,
        at: datetime | None = None,
        verdicts: tuple[str, ...] = (),
        hours: NetworkHours | None = None,
    ) -> Decision:
        """Decide one request. ``verdicts`` are category ids from a content classifier;
        ``hours`` names the network the request comes from and its windows: with it, access
        windows and class sessions apply (step 6 of the module docstring)."""
        try:
            url = target if isinstance(target, CanonicalURL) else canonical_url(target)
        except URLError as exc:
            return Decision(Action.BLOCK, Rule.INVALID_URL, host="",
                            reason=f"The address could not be read ({exc}), so it is blocked "
                                   "to be safe.", severity="high")
        profile = self.profiles.get(group, self._strictest) if group else self._strictest
        host = url.host
        found: list[tuple[DomainIndex, list[tuple[Category, ...]], list[IndexMatch]]] | None
        found = None
        for index, feeds in self._indexes:
            if index._covers(host):  # certain when False; most hosts stop here
                # host[::-1] + "." is categories.domain_index.host_key, inlined on the hot path.
                matches = index._lookup(host[::-1] + ".", url.path)
                if matches:
                    if found is None:
                        found = [(index, feeds, matches)]
                    else:
                        found.append((index, feeds, matches))
        if found is None:
            if (not verdicts and not self._has_overrides and url.host_kind is _NAME
                    and not profile.block_uncategorised and "xn--" not in host
                    and (hours is None or not (profile.online_during or hours.windows))):
                # No entry, override or verdict, and nothing about the hours to check: the
                # general path below gives Decision(Action.ALLOW, Rule.DEFAULT, host,
                # _NO_RULE_BLOCKS), built here directly.
                return _tuple_new(Decision, (_ALLOW, _RULE_DEFAULT, host, _NO_RULE_BLOCKS,
                                             *_DECISION_DEFAULTS))
            found = []
        override = None
        if self._has_overrides:
            when = at or datetime.now(UTC)
            override = self.overrides.find(host, url.path, user, group, when.timestamp())
        timed = hours is not None and bool(profile.online_during or hours.windows)
        decision: Decision | None = None
        if (len(found) == 1 and override is None and not verdicts and url.host_kind is _NAME
                and "xn--" not in host):
            index, feeds, matches = found[0]
            if len(matches) == 1:
                # One entry of one list, the usual listed host: its plan gives the decision.
                m = matches[0]
                plan = self._plans.get((id(profile), id(index), m.list_id))
                if plan is None:
                    plan = self._plan_for(profile, index, feeds, m.list_id)
                if plan.windows:
                    plan = self._plan_at(plan, profile, index, feeds, m.list_id,
                                         at or datetime.now(UTC))
                if plan.by_entry:
                    decision = _tuple_new(Decision, (*plan.head, host, *plan.middle, m.entry,
                                                     plan.source, m.line or None, *plan.tail))
                elif plan.by_entry is not None:
                    decision = _tuple_new(Decision, (*plan.head, host, *plan.middle, None,
                                                     plan.source, None, *plan.tail))
        if decision is None:
            hits: list[_Hit] = []
            for index, feeds, matches in found:
                for m in matches:
                    source = index.lists[m.list_id]
                    hits.extend([_new_hit(_Hit, c, m, source) for c in feeds[m.list_id]])
            if "xn--" in host and not any(h.category.kind is CategoryKind.BLOCK for h in hits):
                hits.extend(self._lookalike_hits(host, url.path))
            for category_id in verdicts:
                category = self.categories.get(category_id)
                if category is not None:
                    hits.append(_Hit(category, None, None))
            if not hits and override is None:
                if url.host_kind is _NAME and not profile.block_uncategorised and not timed:
                    # Decision(Action.ALLOW, Rule.DEFAULT, host, _NO_RULE_BLOCKS), built directly.
                    return _tuple_new(Decision, (_ALLOW, _RULE_DEFAULT, host, _NO_RULE_BLOCKS,
                                                 *_DECISION_DEFAULTS))
                decision = self._default(url, profile, ())
            else:
                decision = self._resolve(url, profile, hits, override, at)
        if hours is None:
            return decision
        if decision.blocked:
            if self._has_sessions and decision.rule in _SESSION_LIFTS:
                return self._session_site(decision, user, group, hours, at)
            return decision
        if timed:
            return self._within_hours(decision, profile, user, hours, at)
        return decision

    def _plan_for(self, profile: GroupProfile, index: DomainIndex,
                  feeds: list[tuple[Category, ...]], list_id: int) -> _Plan:
        """The plan for a request whose only match is one entry of list ``list_id`` of
        ``index`` (one of :attr:`_indexes`, with its ``feeds``), for a request with no
        override, verdict or look-alike on a host name. It is derived from :meth:`_resolve`
        itself, on two probe requests, and kept only when it rebuilds both of their decisions
        exactly. For a list whose categories the profile allows during time windows, it only
        names those windows: :meth:`_plan_at` gives the plan for the windows open."""
        categories = feeds[list_id]
        windows = tuple(profile.allow_during[c.id] for c in categories
                        if c.id in profile.allow_during)
        if windows:
            plan = _NO_PLAN._replace(windows=windows)
        else:
            plan = self._derive_plan(profile, index.lists[list_id], categories, None)
        self._plans[(id(profile), id(index), list_id)] = plan
        return plan

    def _plan_at(self, timed: _Plan, profile: GroupProfile, index: DomainIndex,
                 feeds: list[tuple[Category, ...]], list_id: int, when: datetime) -> _Plan:
        """The plan of a list with time windows (``timed``, from :meth:`_plan_for`) at
        ``when``. :meth:`_resolve` reads the time only through ``Schedule.active`` of these
        windows, so the decision is the same whenever the same ones are open: a plan derived
        at ``when`` holds for every such time."""
        active = tuple(self.schedule.active(names, when) for names in timed.windows)
        key = (id(profile), id(index), list_id, active)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._derive_plan(profile, index.lists[list_id], feeds[list_id], when)
            self._plans[key] = plan
        return plan

    def _derive_plan(self, profile: GroupProfile, source: ListInfo,
                     categories: tuple[Category, ...], when: datetime | None) -> _Plan:
        plan = _NO_PLAN
        for host, entry, line in _PROBES:
            kind = EntryKind.URL if "/" in entry else EntryKind.DOMAIN
            match = IndexMatch(0, line, entry, kind)
            url = CanonicalURL("https", host, None, "/probe/path/deeper")
            hits = [_Hit(c, match, source) for c in categories]
            expected = self._resolve(url, profile, hits, None, when)
            if plan is _NO_PLAN:
                by_entry = expected.matched is not None or expected.line is not None
                plan = _Plan((expected.action, expected.rule),
                             (expected.reason, expected.category, expected.category_title),
                             expected.source,
                             (expected.categories, expected.severity,
                              expected.safeguarding_alert, expected.no_decrypt,
                              expected.override_id),
                             by_entry)
            # Exactly what decide builds from the plan.
            if plan.by_entry:
                rebuilt = _tuple_new(Decision, (*plan.head, host, *plan.middle, entry,
                                                plan.source, line or None, *plan.tail))
            else:
                rebuilt = _tuple_new(Decision, (*plan.head, host, *plan.middle, None,
                                                plan.source, None, *plan.tail))
            if rebuilt != expected or any(type(a) is not type(b)
                                          for a, b in zip(rebuilt, expected, strict=True)):
                return _NO_PLAN
        return plan

    def _session_site(self, decision: Decision, user: str | None, group: str | None,
                      hours: NetworkHours, at: datetime | None) -> Decision:
        """A non-prohibited block lifted by a class session that lists the host, else
        ``decision`` as it was."""
        categories = self.categories
        if any(c in categories and (categories[c].kind is _KIND_BLOCK or categories[c].illegal)
               for c in decision.categories):
            return decision
        when = at or datetime.now(UTC)
        for session in self.sessions.covering(user, group, hours.name, when.timestamp()):
            if session.lists(decision.host):
                return decision._replace(
                    action=Action.ALLOW, rule=Rule.CLASS_SESSION,
                    reason=f"Opened for a lesson by {session.opened_by} until "
                           f"{self._clock(session.closes_at)}.",
                    matched=f"session {session.id}", safeguarding_alert=False)
        return decision

    def _clock(self, timestamp: float) -> str:
        return f"{datetime.fromtimestamp(timestamp, self.schedule.timezone):%H:%M}"

    def _within_hours(self, decision: Decision, profile: GroupProfile, user: str | None,
                      hours: NetworkHours, at: datetime | None) -> Decision:
        """``decision`` (an allow) when the group's and the network's windows are open, the
        host is in the group's ``always_allow``, or a class session opens it; else the
        ``outside_hours`` refusal."""
        host = decision.host
        for entry in profile.always_allow:
            if entry in decision.categories or host == entry or host.endswith("." + entry):
                return decision
        when = at or datetime.now(UTC)
        closed = None
        label = f"The {hours.name}" if hours.name else "This network"
        if hours.windows:
            closed = self.schedule.closed(hours.windows, when)
        if closed is None and profile.online_during:
            closed = self.schedule.closed(profile.online_during, when)
            label = f"Internet access for the {profile.name} group"
        if closed is None:
            return decision
        limited: list[ClassSession] = []
        if self._has_sessions:
            for session in self.sessions.covering(user, profile.name, hours.name,
                                                  when.timestamp()):
                if session.opens_site(host):
                    return decision._replace(
                        rule=Rule.CLASS_SESSION,
                        reason=f"Opened for a lesson by {session.opened_by} until "
                               f"{self._clock(session.closes_at)}.",
                        matched=f"session {session.id}")
                limited.append(session)
        windows, opening = closed
        local = when.astimezone(self.schedule.timezone)
        described = describe_windows(windows)
        reason = (f"{label} is open at {described}. It opens next "
                  f"{describe_opening(opening, local)}.")
        if limited:
            session = limited[0]
            reason = (f"During the lesson opened by {session.opened_by} (until "
                      f"{self._clock(session.closes_at)}) only these sites are open: "
                      f"{', '.join(session.sites)}. {reason}")
        return Decision(
            Action.BLOCK, Rule.OUTSIDE_HOURS, host, reason,
            matched=described, categories=decision.categories, no_decrypt=decision.no_decrypt)

    def _lookalike_hits(self, host: str, path: str) -> list[_Hit]:
        found: list[_Hit] = []
        for imitated in ascii_lookalikes(host):
            rev = host_key(imitated)
            for index, feeds in self._indexes:
                if index.host_has_entries(rev):
                    for m in index.lookup(rev, path):
                        found.extend(_Hit(c, m, index.lists[m.list_id], True)
                                     for c in feeds[m.list_id] if c.kind is CategoryKind.BLOCK)
        return found

    def _resolve(self, url: CanonicalURL, profile: GroupProfile, hits: list[_Hit],
                 override: Override | None, at: datetime | None) -> Decision:
        all_ids = tuple(dict.fromkeys(h.category.id for h in hits))
        no_decrypt = any(h.category.no_decrypt for h in hits)
        illegal = sorted((h for h in hits if h.category.illegal), key=_severity_order)
        if illegal:
            return self._from_hit(Action.BLOCK, Rule.ILLEGAL_LIST, url, illegal[0], all_ids,
                                  no_decrypt)
        if override is not None:
            locked = [h for h in hits
                      if h.category.kind is CategoryKind.BLOCK and not h.category.overridable]
            if override.action == Action.BLOCK.value or not locked:
                action = Action(override.action)
                reason = override.note or ("This site has been blocked locally by the centre."
                                           if action is Action.BLOCK else
                                           "This site has been approved by the centre.")
                decisive = hits[0].category if hits else None
                return Decision(
                    action, Rule.OVERRIDE, url.host, reason,
                    category=decisive.id if decisive else None,
                    category_title=decisive.title if decisive else None,
                    matched=override.target, source=f"override {override.id}",
                    categories=all_ids, severity=decisive.severity.value if decisive else None,
                    safeguarding_alert=action is Action.BLOCK and any(
                        h.category.safeguarding_alert for h in hits),
                    no_decrypt=no_decrypt, override_id=override.id)
        blocking = sorted(
            (h for h in hits if h.category.kind is _KIND_BLOCK
             or (h.category.kind is _KIND_NEUTRAL and h.category.id in profile.block)),
            key=_severity_order)
        allows = [h for h in hits if h.category.kind is _KIND_ALLOW]
        best_allow: _Hit | None = None
        if allows:
            # The most specific entry wins; a block entry at least as specific as the best
            # allow entry still blocks (a tie blocks).
            best_allow = max(allows, key=_specificity)
            allow_rank = _specificity(best_allow)
            beaten = [h for h in blocking if _specificity(h) < allow_rank]
            blocking = [h for h in blocking if _specificity(h) >= allow_rank]
            if not blocking:
                allow_reason = None
                if beaten:
                    c = best_allow.category
                    allow_reason = (f"{c.title}: {c.description} The allow-list entry "
                                    f"{_entry_of(best_allow)} is more specific than the block "
                                    f"entry {_entry_of(beaten[0])}, so it wins.")
                return self._from_hit(Action.ALLOW, Rule.ALLOW_LIST, url, best_allow, all_ids,
                                      no_decrypt, allow_reason)
        permitted: tuple[_Hit, Rule, str] | None = None
        for hit in blocking:
            category = hit.category
            if category.overridable and category.id in profile.allow:
                permitted = permitted or (hit, Rule.GROUP_ALLOW,
                                          f"{category.title} is allowed for the "
                                          f"{profile.name} group.")
                continue
            window_names = profile.allow_during.get(category.id)
            if window_names and category.overridable:
                active = self.schedule.active(window_names, at or datetime.now(UTC))
                if active is not None:
                    permitted = permitted or (hit, Rule.TIME_WINDOW,
                                              f"{category.title} is allowed for the "
                                              f"{profile.name} group during {active}.")
                    continue
            rule = (Rule.LOOKALIKE if hit.lookalike else
                    Rule.CATEGORY if hit.match is not None else Rule.CONTENT_VERDICT)
            block_reason = (f"{category.reason} This address imitates {hit.match.entry}."
                            if hit.lookalike and hit.match is not None else None)
            if best_allow is not None:
                block_reason = (f"{block_reason or category.reason} "
                                f"{_block_beats_allow(hit, best_allow)}")
            return self._from_hit(_BLOCK, rule, url, hit, all_ids, no_decrypt, block_reason)
        if permitted is not None:
            hit, rule, reason = permitted
            return self._from_hit(Action.ALLOW, rule, url, hit, all_ids, no_decrypt, reason)
        return self._default(url, profile, all_ids, no_decrypt)

    def _default(self, url: CanonicalURL, profile: GroupProfile, all_ids: tuple[str, ...],
                 no_decrypt: bool = False) -> Decision:
        if url.is_ip_literal and profile.block_ip_literals:
            return Decision(Action.BLOCK, Rule.IP_LITERAL, url.host,
                            "Sites must be visited by name. Bare IP addresses are blocked "
                            "because they are used to get round the filter.",
                            category="circumvention", category_title="Filter circumvention",
                            categories=all_ids, severity="medium", no_decrypt=no_decrypt)
        if profile.block_uncategorised:
            return Decision(Action.BLOCK, Rule.DEFAULT, url.host,
                            f"The {profile.name} group may only visit approved sites.",
                            categories=all_ids, severity="low", no_decrypt=no_decrypt)
        return Decision(Action.ALLOW, Rule.DEFAULT, url.host,
                        _NO_RULE_BLOCKS, categories=all_ids, no_decrypt=no_decrypt)

    @staticmethod
    def _from_hit(action: Action, rule: Rule, url: CanonicalURL, hit: _Hit,
                  all_ids: tuple[str, ...], no_decrypt: bool, reason: str | None = None
                  ) -> Decision:
        category = hit.category
        match = hit.match
        return _new_decision(
            Decision, action, rule, url.host,
            reason or (category.reason if action is _BLOCK else
                       f"{category.title}: {category.description}"),
            category=category.id,
            category_title=category.title,
            matched=match.entry if match else None,
            source=hit.source.source if hit.source else "content classifier",
            line=(match.line or None) if match else None,
            categories=all_ids,
            severity=category.severity.value,
            safeguarding_alert=action is _BLOCK and category.safeguarding_alert,
            no_decrypt=no_decrypt,
        )
