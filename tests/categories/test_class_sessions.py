"""Class sessions in the pure policy: a tutor opens the network for a lesson (at fixed times in
the centre's zone), what a session opens, what it never opens, and the hours it counts."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from categories.class_sessions import ClassSession, SessionTarget, hours_by_group
from categories.decision import Action, Rule
from categories.definitions import load_definitions
from categories.overrides import Override, OverrideScope
from categories.policy import Policy
from categories.profiles import ANY_HOUR, GroupProfile, NetworkHours, default_profiles
from store.policy_state import PolicyState
from tests.harness.list_fixtures import index_of

CATEGORIES = load_definitions()
LONDON = ZoneInfo("Europe/London")
BYOD_WIFI = NetworkHours("learner Wi-Fi", ("break", "lunch"))


def at(hour: int, minute: int = 0) -> float:
    """Monday 12 January 2026 in London, as epoch seconds."""
    return datetime(2026, 1, 12, hour, minute, tzinfo=LONDON).timestamp()


def when(hour: int, minute: int = 0) -> datetime:
    return datetime.fromtimestamp(at(hour, minute), LONDON)


def base_policy() -> Policy:
    lists = {"gambling": ["bet-ace.test"], "bank": ["mybank.test"],
             "iwf": ["abuse.test"], "social_networks": ["chatter.test"]}
    profiles = default_profiles()
    profiles["learner_byod"] = GroupProfile("learner_byod", online_during=("break", "lunch"),
                                            always_allow=frozenset({"vle.college.test"}),
                                            block=frozenset({"banking"}))
    profiles["exam"] = GroupProfile("exam", block_uncategorised=True)
    return Policy(CATEGORIES, index_of(lists), profiles=profiles)


BASE = base_policy()


def session(**changes: object) -> ClassSession:
    opened = ClassSession(id="cls-1", target=SessionTarget.GROUP, names=("learner_byod",),
                          starts_at=at(9, 0), ends_at=at(10, 0), opened_by="t.jones")
    return replace(opened, **changes)  # type: ignore[arg-type]


def test_a_group_session_opens_the_network_outside_its_windows_until_it_ends() -> None:
    policy = BASE.with_overrides([], [session()])
    during = policy.decide("http://news.test/", group="learner_byod", at=when(9, 30),
                           hours=BYOD_WIFI)
    assert during.action is Action.ALLOW and during.rule is Rule.CLASS_SESSION
    assert during.reason == "Opened for a lesson by t.jones until 10:00."
    before = policy.decide("http://news.test/", group="learner_byod", at=when(8, 59),
                           hours=BYOD_WIFI)
    after = policy.decide("http://news.test/", group="learner_byod", at=when(10, 0),
                          hours=BYOD_WIFI)
    assert before.rule is Rule.OUTSIDE_HOURS and after.rule is Rule.OUTSIDE_HOURS
    assert "It opens next today at 10:30." in after.reason


def test_ending_a_session_early_closes_the_network_again() -> None:
    policy = BASE.with_overrides([], [session(ended_at=at(9, 20), ended_by="t.jones")])
    assert policy.decide("http://news.test/", group="learner_byod", at=when(9, 10),
                         hours=BYOD_WIFI).allowed
    assert policy.decide("http://news.test/", group="learner_byod", at=when(9, 20),
                         hours=BYOD_WIFI).rule is Rule.OUTSIDE_HOURS


def test_a_session_never_opens_prohibited_or_illegal_content() -> None:
    policy = BASE.with_overrides([], [session(sites=("bet-ace.test", "abuse.test",
                                                     "chatter.test"))])
    for url, rule in (("http://bet-ace.test/", Rule.CATEGORY),
                      ("http://abuse.test/", Rule.ILLEGAL_LIST),
                      ("http://chatter.test/", Rule.CATEGORY)):
        decision = policy.decide(url, group="learner_byod", at=when(9, 30), hours=BYOD_WIFI)
        assert decision.action is Action.BLOCK and decision.rule is rule, url
    open_session = BASE.with_overrides([], [session()])
    assert open_session.decide("http://bet-ace.test/", group="learner_byod", at=when(9, 30),
                               hours=BYOD_WIFI).rule is Rule.CATEGORY


def test_a_session_limited_to_sites_opens_only_those_sites() -> None:
    policy = BASE.with_overrides([], [session(sites=("bbc.co.uk", "vle.college.test"))])
    bitesize = policy.decide("https://www.bbc.co.uk/bitesize", group="learner_byod",
                             at=when(9, 30), hours=BYOD_WIFI)
    assert bitesize.allowed and bitesize.rule is Rule.CLASS_SESSION
    other = policy.decide("http://news.test/", group="learner_byod", at=when(9, 30),
                          hours=BYOD_WIFI)
    assert other.rule is Rule.OUTSIDE_HOURS
    assert other.reason.startswith("During the lesson opened by t.jones (until 10:00) only "
                                   "these sites are open: bbc.co.uk, vle.college.test. ")
    # Inside a window the network is open anyway: the site list restricts nothing then.
    assert policy.decide("http://news.test/", group="learner_byod", at=when(12, 30),
                         hours=BYOD_WIFI).allowed


def test_a_session_site_lifts_a_block_that_is_not_prohibited() -> None:
    """A neutral category the group blocks (banking here), or a group that may only visit
    approved sites, gives way to a site the tutor listed for the lesson."""
    policy = BASE.with_overrides([], [
        session(sites=("mybank.test",)),
        session(id="cls-2", names=("exam",), sites=("vle.college.test",))])
    bank = policy.decide("http://mybank.test/", group="learner_byod", at=when(9, 30),
                         hours=BYOD_WIFI)
    assert bank.allowed and bank.rule is Rule.CLASS_SESSION and bank.category == "banking"
    exam = policy.decide("http://vle.college.test/", group="exam", at=when(9, 30),
                         hours=ANY_HOUR)
    assert exam.allowed and exam.rule is Rule.CLASS_SESSION
    assert policy.decide("http://news.test/", group="exam", at=when(9, 30),
                         hours=ANY_HOUR).blocked
    assert BASE.decide("http://mybank.test/", group="learner_byod", at=when(12, 30),
                       hours=BYOD_WIFI).blocked


def test_a_session_covers_only_its_group_network_or_learners() -> None:
    network = session(id="cls-2", target=SessionTarget.NETWORK, names=("learner Wi-Fi",))
    learners = session(id="cls-3", target=SessionTarget.LEARNERS, names=("amy",))
    for opened, user, hours, expected in (
            (network, None, BYOD_WIFI, True),
            (network, None, NetworkHours("library Wi-Fi", ("break", "lunch")), False),
            (learners, "amy", BYOD_WIFI, True),
            (learners, "ben", BYOD_WIFI, False)):
        policy = BASE.with_overrides([], [opened])
        decision = policy.decide("http://news.test/", user=user, group="learner_byod",
                                 at=when(9, 30), hours=hours)
        assert decision.allowed is expected, (opened.target, user, hours)
    other_group = BASE.with_overrides([], [session(names=("staff",))])
    assert other_group.decide("http://news.test/", group="learner_byod", at=when(9, 30),
                              hours=BYOD_WIFI).rule is Rule.OUTSIDE_HOURS


def test_the_admin_services_questions_leave_the_hours_and_sessions_out() -> None:
    policy = BASE.with_overrides([], [session(sites=("mybank.test",))])
    assert policy.decide("http://news.test/", group="learner_byod", at=when(8, 0)).allowed
    assert policy.decide("http://mybank.test/", group="learner_byod", at=when(9, 30)).blocked


def test_overrides_keep_the_sessions_and_sessions_keep_the_overrides() -> None:
    with_session = BASE.with_overrides([], [session()])
    override = Override("ovr-1", "news.test", "block", OverrideScope.EVERYONE, None)
    both = with_session.with_overrides([override])
    assert len(both.sessions) == 1
    assert both.decide("http://news.test/", group="learner_byod", at=when(9, 30),
                       hours=BYOD_WIFI).rule is Rule.OVERRIDE


def test_the_policy_copy_keeps_the_sessions_and_reads_a_copy_written_before_them() -> None:
    state = PolicyState(7, (), (session(sites=("bbc.co.uk",)),))
    again = PolicyState.from_json(state.to_json())
    assert again == state
    older = json.loads(state.to_json())
    del older["sessions"]
    assert PolicyState.from_json(json.dumps(older)).sessions == ()
    damaged = json.loads(state.to_json())
    damaged["sessions"].append({"id": "cls-9", "names": []})
    assert PolicyState.from_json(json.dumps(damaged)).sessions == state.sessions


def test_hours_opened_are_counted_per_group_inside_the_period() -> None:
    sessions = [session(),  # 9:00-10:00, the group
                session(id="cls-2", target=SessionTarget.NETWORK, names=("learner Wi-Fi",),
                        starts_at=at(13, 0), ends_at=at(14, 0), ended_at=at(13, 30)),
                session(id="cls-3", target=SessionTarget.LEARNERS, names=("amy", "ben"),
                        starts_at=at(15, 0), ends_at=at(15, 45))]
    hours = hours_by_group(sessions, at(9, 30), at(23, 0), {"learner Wi-Fi": "learner_byod"})
    assert hours == {"learner_byod": 1.0, "(named learners)": 0.75}
