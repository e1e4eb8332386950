"""Access windows (``online_during``): the pure decision, and the wording and next opening the
outside-hours page shows, at fixed times in the centre's zone."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from categories.decision import Action, Rule
from categories.definitions import load_definitions
from categories.policy import Policy, PolicyError
from categories.profiles import (
    ANY_HOUR,
    GroupProfile,
    NetworkHours,
    TimeWindow,
    default_profiles,
    default_windows,
    describe_opening,
    describe_windows,
    next_opening,
    parse_days,
)
from tests.harness.list_fixtures import index_of

CATEGORIES = load_definitions()
LONDON = ZoneInfo("Europe/London")
WINDOWS = default_windows()
BREAK, LUNCH = WINDOWS["break"], WINDOWS["lunch"]
EVENING = TimeWindow("evening", parse_days("fri"), time(20, 0), time(0, 0))
"""A window that ends at midnight, on Fridays only."""


def policy() -> Policy:
    lists = {"gambling": ["bet-ace.test"], "liste_blanche": ["study-portal.test"]}
    profiles = default_profiles()
    profiles["learner_byod"] = GroupProfile(
        "learner_byod", online_during=("break", "lunch"),
        always_allow=frozenset({"allowlist", "vle.college.test"}))
    return Policy(CATEGORIES, index_of(lists), profiles=profiles,
                  windows={**WINDOWS, "evening": EVENING})


POLICY = policy()


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A day of January 2026 in London (the 12th is a Monday)."""
    return datetime(2026, 1, day, hour, minute, tzinfo=LONDON)


def test_outside_the_windows_a_request_is_refused_with_the_windows_and_the_next_opening() -> None:
    decision = POLICY.decide("http://news.test/", group="learner_byod", at=at(12, 11, 0), hours=ANY_HOUR)
    assert decision.action is Action.BLOCK and decision.rule is Rule.OUTSIDE_HOURS
    assert decision.reason == ("Internet access for the learner_byod group is open at break "
                               "(10:30–10:45) and lunch (12:00–13:00). It opens next today "
                               "at 12:00.")
    assert decision.category is None and not decision.safeguarding_alert
    assert "(outside_hours)" in decision.explain()


@pytest.mark.parametrize("moment", [at(12, 10, 30), at(12, 10, 44), at(12, 12, 0),
                                    at(12, 12, 59)])
def test_inside_a_window_the_ordinary_policy_decides(moment: datetime) -> None:
    decision = POLICY.decide("http://news.test/", group="learner_byod", at=moment, hours=ANY_HOUR)
    assert decision.action is Action.ALLOW and decision.rule is Rule.DEFAULT


def test_a_prohibited_site_stays_blocked_inside_the_window_under_its_own_category() -> None:
    inside = POLICY.decide("http://bet-ace.test/", group="learner_byod", at=at(12, 12, 30), hours=ANY_HOUR)
    outside = POLICY.decide("http://bet-ace.test/", group="learner_byod", at=at(12, 9, 0), hours=ANY_HOUR)
    for decision in (inside, outside):
        assert decision.blocked and decision.rule is Rule.CATEGORY
        assert decision.category == "gambling"


def test_always_allow_hosts_and_categories_are_reachable_at_any_hour() -> None:
    for url in ("https://vle.college.test/", "https://my.vle.college.test/course",
                "https://study-portal.test/"):
        decision = POLICY.decide(url, group="learner_byod", at=at(12, 9, 0), hours=ANY_HOUR)
        assert decision.action is Action.ALLOW, url
    lookalike = POLICY.decide("https://notvle.college.test.evil.test/", group="learner_byod",
                              at=at(12, 9, 0), hours=ANY_HOUR)
    assert lookalike.rule is Rule.OUTSIDE_HOURS


def test_a_network_window_must_be_open_as_well_as_the_groups() -> None:
    # The learner group has no windows; the network has lunch only.
    inside_break = POLICY.decide("http://news.test/", group="learner", at=at(12, 10, 35),
                                 hours=NetworkHours("BYOD Wi-Fi", ("lunch",)))
    assert inside_break.rule is Rule.OUTSIDE_HOURS
    assert inside_break.reason.startswith("The BYOD Wi-Fi is open at lunch (12:00–13:00).")
    inside_lunch = POLICY.decide("http://news.test/", group="learner", at=at(12, 12, 5),
                                 hours=NetworkHours("BYOD Wi-Fi", ("lunch",)))
    assert inside_lunch.action is Action.ALLOW
    # Both have windows: at break the group's is open and the network's (lunch) is not.
    both = POLICY.decide("http://news.test/", group="learner_byod", at=at(12, 10, 35),
                         hours=NetworkHours("BYOD Wi-Fi", ("lunch",)))
    assert both.rule is Rule.OUTSIDE_HOURS and "BYOD Wi-Fi" in both.reason


def test_next_opening_crosses_the_weekend_and_says_which_day() -> None:
    friday_evening = at(16, 14, 0)
    opening = next_opening([BREAK, LUNCH], friday_evening)
    assert opening == at(19, 10, 30)
    assert describe_opening(opening, friday_evening) == "on Monday 19 January at 10:30"
    saturday = at(17, 11, 0)
    assert next_opening([BREAK, LUNCH], saturday) == at(19, 10, 30)
    sunday = at(18, 23, 0)
    assert describe_opening(next_opening([BREAK, LUNCH], sunday), sunday) == "tomorrow at 10:30"
    weekend = POLICY.decide("http://news.test/", group="learner_byod", at=saturday, hours=ANY_HOUR)
    assert weekend.reason.endswith("It opens next on Monday 19 January at 10:30.")


def test_a_window_that_ends_at_midnight() -> None:
    assert EVENING.contains(at(16, 20, 0)) and EVENING.contains(at(16, 23, 59))
    assert not EVENING.contains(at(17, 0, 0))  # Saturday 00:00: closed
    assert not EVENING.contains(at(15, 21, 0))  # a Thursday
    assert next_opening([EVENING], at(16, 20, 0)) == at(23, 20, 0)  # open now: next week's
    assert next_opening([EVENING], at(13, 9, 0)) == at(16, 20, 0)
    assert describe_windows([EVENING]) == "evening (20:00–00:00, Fri)"


def test_next_opening_is_in_the_centres_zone_across_the_clock_change() -> None:
    # Saturday 28 March 2026 in London is GMT; the Monday after the change is BST.
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=LONDON)
    opening = next_opening([BREAK], saturday)
    assert opening is not None
    assert opening.isoformat() == "2026-03-30T10:30:00+01:00"
    utc_moment = datetime(2026, 3, 30, 9, 31, tzinfo=ZoneInfo("UTC"))  # 10:31 BST
    decision = POLICY.decide("http://news.test/", group="learner_byod", at=utc_moment, hours=ANY_HOUR)
    assert decision.action is Action.ALLOW


def test_describe_windows_names_each_window_with_its_times() -> None:
    assert describe_windows([BREAK]) == "break (10:30–10:45)"
    assert describe_windows([BREAK, LUNCH, EVENING]) == (
        "break (10:30–10:45), lunch (12:00–13:00) and evening (20:00–00:00, Fri)")
    assert describe_opening(None, at(12, 9, 0)).startswith("never")


@pytest.mark.parametrize(("profile", "message"), [
    (GroupProfile("byod", always_allow=frozenset({"gambling"})),
     "always_allow cannot name the prohibited category 'gambling'"),
    (GroupProfile("byod", always_allow=frozenset({"learning"})),
     "'learning', which is neither a category nor a host"),
    (GroupProfile("byod", online_during=("assembly",)), "unknown time window 'assembly'"),
])
def test_bad_access_window_settings_are_policy_errors(profile: GroupProfile,
                                                      message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy(CATEGORIES, profiles={**default_profiles(), "byod": profile})
