"""The listed-host shortcut of ``Policy.decide`` gives exactly the general path's decision.

A request whose only match is one entry of one list is decided from a per-(profile, list)
plan instead of the general resolution. Every field of the decision, and so the explanation IT
support reads and the block page shows, must be the same as the general path gives. Here every
request of a table (illegal, block, neutral, allow-list, URL-entry, time-window, look-alike,
multi-list and unlisted hosts) is decided for every group, with and without overrides, verdicts,
network hours and class sessions, by a policy with the shortcut and by one without it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from categories.class_sessions import ClassSession, SessionSet, SessionTarget
from categories.decision import Action, Decision, Rule
from categories.definitions import CategorySet, load_definitions
from categories.domain_index import DomainIndex, ListInfo, build_index
from categories.list_formats import url_entry
from categories.overrides import Override, OverrideScope, canonical_target
from categories.policy import _NO_PLAN, Policy, _Plan
from categories.profiles import GroupProfile, NetworkHours, default_profiles

BUILTIN = load_definitions()
LONDON = ZoneInfo("Europe/London")


def _with_shared_list() -> CategorySet:
    """The built-in categories, with one list (``both_kinds``) feeding an allow-list category
    and a block category at once: a tie between the two, whose explanation names the entry."""
    changed = {"sexual_education": ("both_kinds",), "gambling": ("both_kinds",)}
    categories = [dataclasses.replace(c, lists=(*c.lists, *changed.get(c.id, ())))
                  for c in BUILTIN.values()]
    return CategorySet(categories, BUILTIN.digest)


CATEGORIES = _with_shared_list()
LISTS = {
    "iwf": ["abuse-images.test", "shared-host.test/abuse/album"],
    "gambling": ["bet-ace.test", "shared-host.test", "paypal.test"],
    "liste_blanche": ["study-portal.test", "university.test", "casino-group.test/responsible"],
    "social_networks": ["friendspace.test", "social.university.test"],
    "bank": ["county-bank.test"],
    "vpn": ["vpn.study-portal.test"],
    "adult": ["198.51.100.23", "picture-host.test/albums/nsfw", "wiki-host.test/adult"],
    "arjel": ["casino-group.test"],
    "both_kinds": ["two-faced.test"],
    "unmapped_list": ["nobody-maps-me.test"],
}
URLS = (
    "https://abuse-images.test/",
    "https://www.bet-ace.test/page?q=1",
    "https://bet-ace.test/",
    "https://shared-host.test/abuse/album/1",
    "https://shared-host.test/other",
    "https://study-portal.test/course",
    "https://vpn.study-portal.test/",
    "https://university.test/",
    "https://friendspace.test/feed",
    "https://social.university.test/",
    "https://county-bank.test/login",
    "https://picture-host.test/albums/nsfw/1.jpg",
    "https://picture-host.test/albums/cats",
    "https://wiki-host.test/adult",
    "https://casino-group.test/responsible/help",
    "https://casino-group.test/slots",
    "https://two-faced.test/",
    "https://nobody-maps-me.test/",
    "http://198.51.100.23/",
    "https://unlisted-site.test/",
    "https://xn--pypal-4ve.test/",  # pаypal.test with a Cyrillic "а": imitates a listed host
    "https://ex ample.test/",  # unreadable
)
PROFILES = {
    **default_profiles(),
    "banking_blocked": GroupProfile("banking_blocked", block=frozenset({"banking"})),
    "only_approved": GroupProfile("only_approved", block_uncategorised=True),
    "open_ips": GroupProfile("open_ips", block_ip_literals=False,
                             allow=frozenset({"gambling", "social_networks"})),
    "daytime": GroupProfile("daytime", online_during=("lunch",),
                            always_allow=frozenset({"study-portal.test"})),
}
GROUPS = (None, "learner", "staff", "guest", "banking_blocked", "only_approved", "open_ips",
          "daytime", "no-such-group")
MONDAY_LUNCH = datetime(2026, 1, 12, 12, 30, tzinfo=LONDON)
MONDAY_MORNING = datetime(2026, 1, 12, 9, 0, tzinfo=LONDON)
SATURDAY = datetime(2026, 1, 17, 12, 30, tzinfo=LONDON)


class GeneralPathPolicy(Policy):
    """The policy with no listed-host shortcut: every request takes the general path."""

    def _plan_for(self, *args: object) -> _Plan:  # type: ignore[override]
        return _NO_PLAN


def _override(target: str, action: str, oid: str) -> Override:
    return Override(id=oid, target=canonical_target(target), action=action,
                    scope=OverrideScope("everyone"), subject=None, expires_at=None,
                    request_id=None)


def _index() -> DomainIndex:
    """The lists, numbered from line 1, except ``arjel``'s entry at line 0 (an entry with no
    line: its explanation names no line)."""
    infos = [ListInfo(name, f"test/{name}") for name in LISTS]
    entries = []
    for list_id, (name, values) in enumerate(LISTS.items()):
        for line, value in enumerate(values, start=0 if name == "arjel" else 1):
            entry = url_entry(value)
            assert not isinstance(entry, str), entry
            entries.append((list_id, entry.kind, entry.value, line))
    return build_index(infos, entries)


def _pair(**kwargs: object) -> tuple[Policy, Policy]:
    index = _index()
    fast = Policy(CATEGORIES, index, profiles=PROFILES, **kwargs)  # type: ignore[arg-type]
    slow = GeneralPathPolicy(CATEGORIES, index, profiles=PROFILES,
                             **kwargs)  # type: ignore[arg-type]
    return fast, slow


def _assert_same(fast: Policy, slow: Policy, **kwargs: object) -> int:
    """Every URL for every group: the same decision and explanation. Returns how many were
    decided."""
    count = 0
    for url in URLS:
        for group in GROUPS:
            got = fast.decide(url, group=group, **kwargs)  # type: ignore[arg-type]
            want = slow.decide(url, group=group, **kwargs)  # type: ignore[arg-type]
            assert got == want, (url, group, kwargs)
            assert got.to_dict() == want.to_dict()
            assert got.explain() == want.explain(), (url, group, kwargs)
            count += 1
    return count


@pytest.mark.parametrize("at", [MONDAY_MORNING, MONDAY_LUNCH, SATURDAY])
def test_every_listed_and_unlisted_request_is_decided_as_the_general_path_decides(
        at: datetime) -> None:
    fast, slow = _pair()
    assert _assert_same(fast, slow, at=at) == len(URLS) * len(GROUPS)
    # The shortcut was taken (else this test would compare the general path with itself).
    assert any(plan.by_entry is not None for plan in fast._plans.values())


@pytest.mark.parametrize("at", [MONDAY_MORNING, MONDAY_LUNCH])
def test_the_same_with_network_hours_and_class_sessions(at: datetime) -> None:
    sites = ClassSession(id="s1", target=SessionTarget.GROUP, names=("learner", "daytime"),
                         starts_at=at.timestamp() - 60, ends_at=at.timestamp() + 3600,
                         opened_by="Ms Teacher",
                         sites=("friendspace.test", "county-bank.test", "bet-ace.test"))
    everything = ClassSession(id="s2", target=SessionTarget.NETWORK, names=("hall",),
                              starts_at=at.timestamp() - 60, ends_at=at.timestamp() + 3600,
                              opened_by="Mr Tutor")
    fast, slow = _pair(sessions=SessionSet([sites, everything]))
    hours = NetworkHours(name="library", windows=("break",))
    _assert_same(fast, slow, at=at, hours=hours)
    _assert_same(fast, slow, at=at, hours=NetworkHours(name="hall", windows=()))


def test_the_same_with_overrides_and_content_verdicts() -> None:
    fast, slow = _pair()
    overrides = [_override("bet-ace.test", "allow", "o1"),
                 _override("university.test", "block", "o2"),
                 _override("picture-host.test/albums", "allow", "o3")]
    fast, slow = fast.with_overrides(overrides), slow.with_overrides(overrides)
    _assert_same(fast, slow, at=MONDAY_MORNING)
    _assert_same(fast, slow, at=MONDAY_MORNING, verdicts=("pornography",))


def test_a_listed_host_still_explains_its_entry_source_and_line() -> None:
    fast, _slow = _pair()
    d = fast.decide("https://www.bet-ace.test/x", group="learner", at=MONDAY_MORNING)
    assert (d.action, d.rule, d.category) == (Action.BLOCK, Rule.CATEGORY, "gambling")
    assert (d.host, d.matched, d.source, d.line) == (
        "www.bet-ace.test", "bet-ace.test", "test/gambling", 1)
    assert d.explain().startswith(
        "Blocked (category): www.bet-ace.test matches bet-ace.test in test/gambling line 1.")
    # The same list and profile, another entry: the plan never carries one request's entry
    # into another's explanation.
    d = fast.decide("https://paypal.test/", group="learner", at=MONDAY_MORNING)
    assert (d.host, d.matched, d.line) == ("paypal.test", "paypal.test", 3)
    d = fast.decide("https://casino-group.test/", group="learner", at=MONDAY_MORNING)
    assert (d.matched, d.source, d.line) == ("casino-group.test", "test/arjel", None)
    assert "casino-group.test in test/arjel." in d.explain()


def test_a_tie_between_an_allow_and_a_block_category_names_the_entry_each_time() -> None:
    fast, _slow = _pair()
    d = fast.decide("https://two-faced.test/", group="learner", at=MONDAY_MORNING)
    assert d.blocked and d.rule is Rule.CATEGORY
    assert "The block entry two-faced.test (test/both_kinds) is as specific as the " \
           "allow-list entry two-faced.test (test/both_kinds), and a tie blocks." in d.reason


def test_social_networks_follow_the_clock_for_learners() -> None:
    """A list a group may use in a time window is never answered from a plan made at another
    time."""
    fast, _slow = _pair()
    morning = fast.decide("https://friendspace.test/", group="learner", at=MONDAY_MORNING)
    lunch = fast.decide("https://friendspace.test/", group="learner", at=MONDAY_LUNCH)
    again = fast.decide("https://friendspace.test/", group="learner", at=MONDAY_MORNING)
    assert (morning.action, lunch.action, again.action) == (
        Action.BLOCK, Action.ALLOW, Action.BLOCK)
    assert lunch.rule is Rule.TIME_WINDOW
    assert lunch.reason == "Social networks is allowed for the learner group during lunch."
    assert (lunch.matched, lunch.line) == ("friendspace.test", 1)
    # Both came from plans, one per set of open windows.
    assert sum(1 for key in fast._plans if len(key) == 4) == 2


def test_an_override_added_later_wins_over_a_plan_made_before_it() -> None:
    fast, _slow = _pair()
    assert fast.decide("https://bet-ace.test/", group="learner").blocked  # makes the plan
    opened = fast.with_overrides([_override("bet-ace.test", "allow", "o9")])
    d = opened.decide("https://bet-ace.test/", group="learner")
    assert (d.action, d.rule, d.override_id) == (Action.ALLOW, Rule.OVERRIDE, "o9")
    assert fast.decide("https://bet-ace.test/", group="learner").blocked


def test_decisions_are_values_of_the_decision_type() -> None:
    fast, slow = _pair()
    for url in URLS:
        got = fast.decide(url, group="learner", at=MONDAY_MORNING)
        assert type(got) is Decision
        assert type(got.action) is Action and type(got.rule) is Rule
        assert [type(v) for v in got] == [
            type(v) for v in slow.decide(url, group="learner", at=MONDAY_MORNING)]
