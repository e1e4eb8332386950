"""Policy decisions: precedence, overrides, group profiles and time windows."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from categories.decision import Action, Rule
from categories.definitions import load_definitions
from categories.domain_index import ListInfo, build_index
from categories.list_formats import url_entry
from categories.overrides import Override, OverrideScope, OverrideSet, canonical_target
from categories.policy import Policy, PolicyError
from categories.profiles import GroupProfile, TimeWindow, default_profiles, default_windows, parse_days

CATEGORIES = load_definitions()
LONDON = ZoneInfo("Europe/London")

LISTS = {
    "iwf": ["abuse-images.test", "shared-host.test/abuse/album"],
    "ctiru": ["terror-channel.test"],
    "gambling": ["bet-ace.test", "both-lists.test", "shared-host.test"],
    "liste_blanche": ["both-lists.test", "abuse-images.test", "study-portal.test",
                      "university.test", "learn.casino-group.test", "casino-group.test/responsible",
                      "en.wiki-host.test", "gallery.terror-channel.test"],
    "mixed_adult": ["general-blog.test/adult-corner"],
    "sexual_education": ["general-blog.test/adult-corner/consent"],
    "social_networks": ["friendspace.test", "radical-social.test", "social.university.test"],
    "sect": ["radical-social.test"],
    "bank": ["county-bank.test"],
    "vpn": ["vpn.study-portal.test", "vpn.university.test"],
    "adult": ["198.51.100.23", "[2001:db8::bad]", "picture-host.test/albums/nsfw",
              "university.test/filtertest/adult", "wiki-host.test/adult"],
    "arjel": ["casino-group.test"],
}
# A Monday in winter (GMT) and one in summer (BST).
WINTER_MONDAY = datetime(2026, 1, 12, tzinfo=LONDON)
SUMMER_MONDAY = datetime(2026, 7, 6, tzinfo=LONDON)


def make_policy(**kwargs: object) -> Policy:
    infos: list[ListInfo] = []
    entries = []
    for list_id, (name, values) in enumerate(LISTS.items()):
        infos.append(ListInfo(name, f"test/{name}"))
        for line, value in enumerate(values, start=1):
            entry = url_entry(value)
            assert not isinstance(entry, str)
            entries.append((list_id, entry.kind, entry.value, line))
    return Policy(CATEGORIES, build_index(infos, entries), **kwargs)  # type: ignore[arg-type]


def override(target: str, action: str, scope: str = "everyone", subject: str | None = None,
             expires_at: float | None = None, oid: str = "o1", request_id: str | None = None
             ) -> Override:
    return Override(id=oid, target=canonical_target(target), action=action,
                    scope=OverrideScope(scope), subject=subject, expires_at=expires_at,
                    request_id=request_id)


POLICY = make_policy()
AT = datetime(2026, 1, 12, 9, 0, tzinfo=LONDON)  # Monday 09:00, outside every window


def decide(url: str, policy: Policy = POLICY, **kwargs: object) -> tuple[str, str, str | None]:
    kwargs.setdefault("at", AT)
    d = policy.decide(url, **kwargs)  # type: ignore[arg-type]
    return d.action.value, d.rule.value, d.category


# -- 1. illegal lists -------------------------------------------------------------------------

def test_illegal_list_blocks_with_a_safeguarding_alert_and_names_the_source() -> None:
    d = POLICY.decide("http://abuse-images.test/x", at=AT)
    assert (d.action, d.rule, d.category) == (Action.BLOCK, Rule.ILLEGAL_LIST, "child_abuse")
    assert d.safeguarding_alert and d.severity == "critical"
    assert (d.matched, d.source, d.line) == ("abuse-images.test", "test/iwf", 1)
    assert "can never be unblocked" in d.reason
    assert decide("http://terror-channel.test/") == ("block", "illegal-list", "terrorism_illegal")


def test_illegal_list_beats_overrides_allow_lists_and_group_allowances() -> None:
    policy = make_policy().with_overrides([
        override("abuse-images.test", "allow"),
        override("abuse-images.test", "allow", "user", "alice", oid="o2"),
        override("abuse-images.test", "allow", "group", "staff", oid="o3"),
    ])
    for kwargs in ({}, {"user": "alice"}, {"group": "staff"}, {"user": "alice", "group": "staff"}):
        assert decide("http://www.abuse-images.test/", policy, **kwargs) == (
            "block", "illegal-list", "child_abuse")


def test_illegal_url_entry_beats_an_allowed_host() -> None:
    policy = POLICY.with_overrides([override("shared-host.test", "allow")])
    assert decide("http://shared-host.test/", policy)[:2] == ("allow", "override")
    assert decide("http://shared-host.test/abuse/album/1", policy)[:2] == ("block", "illegal-list")


# -- 2. overrides and approved unblocks -------------------------------------------------------

def test_allow_override_unblocks_a_block_category_for_everyone() -> None:
    policy = POLICY.with_overrides([override("bet-ace.test", "allow")])
    d = policy.decide("http://www.bet-ace.test/", at=AT)
    assert (d.action, d.rule, d.override_id, d.matched) == (Action.ALLOW, Rule.OVERRIDE, "o1", "bet-ace.test")
    assert d.category == "gambling"  # still says what the site is
    assert decide("http://bet-ace.test/") == ("block", "category", "gambling")  # without it


def test_block_override_beats_allow_categories_and_uncategorised_sites() -> None:
    policy = POLICY.with_overrides([override("study-portal.test", "block"),
                                    override("harmless-site.test", "block", oid="o2")])
    assert decide("http://study-portal.test/", policy)[:2] == ("block", "override")
    assert decide("http://harmless-site.test/", policy) == ("block", "override", None)
    assert decide("http://harmless-site.test/") == ("allow", "default", None)


def test_user_override_beats_group_which_beats_everyone() -> None:
    policy = POLICY.with_overrides([
        override("bet-ace.test", "block", "everyone", oid="everyone"),
        override("bet-ace.test", "allow", "group", "staff", oid="group"),
        override("bet-ace.test", "block", "user", "bob", oid="user"),
    ])

    def who(**kwargs: object) -> tuple[str, str | None]:
        d = policy.decide("http://bet-ace.test/", at=AT, **kwargs)  # type: ignore[arg-type]
        return d.action.value, d.override_id

    assert who() == ("block", "everyone")
    assert who(group="staff") == ("allow", "group")
    assert who(user="alice", group="staff") == ("allow", "group")
    assert who(user="bob", group="staff") == ("block", "user")
    assert who(user="bob", group="learner") == ("block", "user")
    assert who(group="learner") == ("block", "everyone")


def test_approved_unblock_for_one_user_only_helps_that_user() -> None:
    approved = override("bet-ace.test/results", "allow", "user", "alice", oid="unblock-7",
                        request_id="request-7", expires_at=(AT + timedelta(hours=2)).timestamp())
    policy = POLICY.with_overrides([approved])
    d = policy.decide("http://bet-ace.test/results/today", user="alice", group="learner", at=AT)
    assert (d.action, d.rule, d.override_id, d.matched) == (
        Action.ALLOW, Rule.OVERRIDE, "unblock-7", "bet-ace.test/results")
    assert "approved" in d.reason
    assert decide("http://bet-ace.test/results", policy, user="alice", at=AT + timedelta(hours=3))[:2] == (
        "block", "category")
    assert decide("http://bet-ace.test/", policy, user="alice", group="learner")[:2] == ("block", "category")
    policy = POLICY.with_overrides([override("bet-ace.test", "allow", "user", "alice")])
    assert decide("http://bet-ace.test/", policy, user="alice", group="learner")[:2] == ("allow", "override")
    assert decide("http://bet-ace.test/", policy, user="bob", group="learner")[:2] == ("block", "category")
    assert decide("http://bet-ace.test/", policy, group="learner")[:2] == ("block", "category")


def test_group_override_needs_the_group() -> None:
    policy = POLICY.with_overrides([override("bet-ace.test", "allow", "group", "learner")])
    assert decide("http://bet-ace.test/", policy, group="learner")[:2] == ("allow", "override")
    assert decide("http://bet-ace.test/", policy, group="staff")[:2] == ("block", "category")
    assert decide("http://bet-ace.test/", policy)[:2] == ("block", "category")


def test_overrides_expire_at_their_expiry_time() -> None:
    expiry = datetime(2026, 1, 12, 15, 0, tzinfo=UTC)
    policy = POLICY.with_overrides([override("bet-ace.test", "allow", expires_at=expiry.timestamp())])
    just_before = expiry - timedelta(seconds=1)
    assert decide("http://bet-ace.test/", policy, at=just_before)[:2] == ("allow", "override")
    assert decide("http://bet-ace.test/", policy, at=expiry)[:2] == ("block", "category")
    assert decide("http://bet-ace.test/", policy, at=expiry + timedelta(days=1))[:2] == (
        "block", "category")


def test_path_override_covers_its_path_segment_only() -> None:
    policy = POLICY.with_overrides([override("bet-ace.test/responsible-gambling", "allow")])
    assert decide("http://bet-ace.test/responsible-gambling", policy)[:2] == ("allow", "override")
    assert decide("http://bet-ace.test/Responsible-Gambling/help?x=1", policy)[:2] == (
        "allow", "override")
    assert decide("http://bet-ace.test/responsible-gambling-bonus", policy)[:2] == ("block", "category")
    assert decide("http://bet-ace.test/", policy)[:2] == ("block", "category")
    assert policy.needs_path("bet-ace.test") and not POLICY.needs_path("bet-ace.test")


def test_longer_override_target_wins_within_one_scope() -> None:
    policy = POLICY.with_overrides([override("bet-ace.test", "allow", oid="host"),
                                    override("casino.bet-ace.test", "block", oid="sub")])
    assert policy.decide("http://casino.bet-ace.test/", at=AT).override_id == "sub"
    assert policy.decide("http://www.bet-ace.test/", at=AT).override_id == "host"


def test_override_set_round_trips_through_dicts() -> None:
    original = override("bet-ace.test/x", "allow", "user", "alice", expires_at=5.0)
    assert Override.from_dict(original.to_dict()) == original
    assert len(OverrideSet([original])) == 1


@pytest.mark.parametrize("target", ["not a site", "http://www.1.2.3.4/", ""])
def test_override_targets_must_be_sites(target: str) -> None:
    with pytest.raises(ValueError, match="not a valid site"):
        canonical_target(target)


# -- 3. allow categories ----------------------------------------------------------------------

def test_allow_entry_beats_less_specific_block_entries_only() -> None:
    d = POLICY.decide("http://study-portal.test/courses", at=AT)
    assert (d.action, d.rule, d.category) == (Action.ALLOW, Rule.ALLOW_LIST, "allowlist")
    # vpn.study-portal.test is listed in vpn: more specific than the allowed study-portal.test.
    d = POLICY.decide("http://vpn.study-portal.test/", at=AT)
    assert (d.action, d.rule, d.category) == (Action.BLOCK, Rule.CATEGORY, "circumvention")
    assert set(d.categories) == {"allowlist", "circumvention"}


def test_a_more_specific_block_domain_beats_an_allowed_parent_and_says_so() -> None:
    d = POLICY.decide("http://vpn.university.test/connect", at=AT)
    assert (d.action, d.rule, d.category) == (Action.BLOCK, Rule.CATEGORY, "circumvention")
    assert (d.matched, d.source, d.line) == ("vpn.university.test", "test/vpn", 2)
    explanation = d.explain()
    assert explanation.startswith(
        "Blocked (category): vpn.university.test matches vpn.university.test in test/vpn line 2.")
    assert ("The block entry vpn.university.test (test/vpn) is more specific than the "
            "allow-list entry university.test (test/liste_blanche), so it wins.") in explanation
    assert decide("http://x.vpn.university.test/")[:2] == ("block", "category")
    assert decide("http://www.university.test/") == ("allow", "allow-list", "allowlist")
    assert decide("http://university.test/") == ("allow", "allow-list", "allowlist")


def test_a_block_url_entry_under_an_allowed_host_blocks_that_path_only() -> None:
    """UT1's own filter-test pages under an allowed university host stay blocked."""
    d = POLICY.decide("https://university.test/filtertest/adult/index.html", at=AT)
    assert (d.action, d.rule, d.category) == (Action.BLOCK, Rule.CATEGORY, "pornography")
    assert d.matched == "university.test/filtertest/adult"
    assert ("The block entry university.test/filtertest/adult (test/adult) is more specific "
            "than the allow-list entry university.test (test/liste_blanche)") in d.explain()
    assert decide("https://www.university.test/filtertest/adult?x=1")[:2] == ("block", "category")
    assert decide("https://university.test/filtertest/adultery")[:2] == ("allow", "allow-list")
    assert decide("https://university.test/filtertest/")[:2] == ("allow", "allow-list")
    assert POLICY.needs_path("university.test")


def test_a_more_specific_allow_entry_beats_a_listed_parent_and_says_so() -> None:
    d = POLICY.decide("http://learn.casino-group.test/", at=AT)
    assert (d.action, d.rule, d.category) == (Action.ALLOW, Rule.ALLOW_LIST, "allowlist")
    assert d.matched == "learn.casino-group.test"
    assert ("The allow-list entry learn.casino-group.test (test/liste_blanche) is more specific "
            "than the block entry casino-group.test (test/arjel), so it wins."
            ) in d.explain()
    # An allow URL entry beats the domain entry of its host, on path-segment boundaries only.
    assert decide("http://casino-group.test/responsible/help")[:2] == ("allow", "allow-list")
    assert decide("http://casino-group.test/responsible-bets")[:2] == ("block", "category")
    assert decide("http://casino-group.test/")[:2] == ("block", "category")
    assert decide("http://www.casino-group.test/")[:2] == ("block", "category")


def test_host_labels_count_before_paths() -> None:
    """A domain entry for the very host (more labels) beats a URL entry under its parent."""
    assert decide("http://en.wiki-host.test/adult/page")[:2] == ("allow", "allow-list")
    assert decide("http://fr.wiki-host.test/adult/page") == ("block", "category", "pornography")


def test_a_tie_between_an_allow_and_a_block_entry_blocks() -> None:
    d = POLICY.decide("http://both-lists.test/", at=AT)
    assert (d.action, d.rule, d.category) == (Action.BLOCK, Rule.CATEGORY, "gambling")
    assert set(d.categories) == {"allowlist", "gambling"}
    assert ("The block entry both-lists.test (test/gambling) is as specific as the allow-list "
            "entry both-lists.test (test/liste_blanche), and a tie blocks.") in d.explain()


def test_illegal_lists_beat_even_a_more_specific_allow_entry() -> None:
    d = POLICY.decide("http://gallery.terror-channel.test/", at=AT)
    assert (d.action, d.rule, d.category) == (
        Action.BLOCK, Rule.ILLEGAL_LIST, "terrorism_illegal")


def test_group_allowances_still_apply_to_a_more_specific_block_entry() -> None:
    """social.university.test (social networks) beats the allowed university.test; staff may
    use social networks, learners only in their windows."""
    assert decide("http://social.university.test/", group="staff") == (
        "allow", "group-allow", "social_networks")
    assert decide("http://social.university.test/", group="learner") == (
        "block", "category", "social_networks")


def test_an_allow_listed_site_is_not_blocked_by_a_content_verdict() -> None:
    assert decide("http://study-portal.test/", verdicts=("self_harm",)) == (
        "allow", "allow-list", "allowlist")


def test_allow_url_entry_beats_a_shorter_block_url_entry() -> None:
    assert decide("http://general-blog.test/adult-corner/consent/page") == (
        "allow", "allow-list", "sexual_education")
    assert decide("http://general-blog.test/adult-corner/other") == ("block", "category", "pornography")
    assert decide("http://general-blog.test/") == ("allow", "default", None)


def test_curated_allow_entries_from_the_definitions_apply() -> None:
    d = POLICY.decide("https://www.gov.uk/", at=AT)
    assert (d.rule, d.source) == (Rule.ALLOW_LIST, "built-in categories/definitions/allowlist.yaml")


# -- 4. block categories ----------------------------------------------------------------------

def test_most_severe_block_category_decides() -> None:
    d = POLICY.decide("http://radical-social.test/", at=AT, group="staff")
    assert (d.action, d.category, d.severity) == (Action.BLOCK, "extremism", "critical")
    assert d.safeguarding_alert
    assert set(d.categories) == {"social_networks", "extremism"}


def test_curated_block_entries_and_content_verdicts_block() -> None:
    d = POLICY.decide("http://dns.google/", at=AT)
    assert (d.rule, d.category, d.source) == (
        Rule.CATEGORY, "dns_over_https", "built-in categories/definitions/dns_over_https.yaml")
    assert decide("http://harmless-site.test/", verdicts=("self_harm",)) == (
        "block", "content-verdict", "self_harm")


def test_staff_may_use_social_networks_but_guests_may_not() -> None:
    assert decide("http://friendspace.test/", group="staff") == ("allow", "group-allow", "social_networks")
    assert decide("http://friendspace.test/", group="guest") == ("block", "category", "social_networks")


def test_unknown_or_missing_group_gets_the_unidentified_profile() -> None:
    assert decide("http://friendspace.test/", group="no-such-group")[:2] == ("block", "category")
    assert decide("http://198.51.100.7/", group="no-such-group")[:2] == ("block", "ip-literal")


def test_neutral_category_is_blocked_only_for_groups_that_block_it() -> None:
    profiles = {**default_profiles(), "exam": GroupProfile("exam", block=frozenset({"banking"}))}
    policy = make_policy(profiles=profiles)
    assert decide("http://county-bank.test/", policy) == ("allow", "default", None)
    assert decide("http://county-bank.test/", policy, group="exam") == ("block", "category", "banking")
    assert POLICY.decide("http://county-bank.test/", at=AT).no_decrypt


@pytest.mark.parametrize(
    "url",
    ["http://3325256727/", "http://0xc6.0x33.0x64.0x17/", "http://198.51.25623/",
     "http://[::ffff:198.51.100.23]/", "http://[2001:DB8:0:0:0:0:0:BAD]/", "http://[2001:db8::0bad]:81/x",
     "http://PICTURE-HOST.test/albums/%6Esfw/2", "http://picture-host.test//albums/x/../nsfw"],
)
def test_ip_literal_and_path_entries_match_every_spelling_for_every_group(url: str) -> None:
    for group in ("staff", "learner", None):
        assert decide(url, group=group) == ("block", "category", "pornography")


# -- 5. default ---------------------------------------------------------------------------------

def test_uncategorised_sites_are_allowed_and_ip_literals_blocked_for_learners() -> None:
    assert decide("http://harmless-site.test/", group="learner") == ("allow", "default", None)
    assert decide("http://198.51.100.7/", group="learner") == ("block", "ip-literal", "circumvention")
    assert decide("http://[2001:db8::7]/", group="learner")[:2] == ("block", "ip-literal")
    assert decide("http://198.51.100.7/", group="staff") == ("allow", "default", None)


def test_block_uncategorised_profile_allows_only_listed_allow_sites() -> None:
    profiles = {**default_profiles(), "kiosk": GroupProfile("kiosk", block_uncategorised=True)}
    policy = make_policy(profiles=profiles)
    assert decide("http://harmless-site.test/", policy, group="kiosk")[:2] == ("block", "default")
    assert decide("http://study-portal.test/", policy, group="kiosk")[:2] == ("allow", "allow-list")


@pytest.mark.parametrize(
    "url", ["http://www.1.2.3.4/", "http://bad site.test/", "", "http://[::1/", "http://%ff.test/"])
def test_unreadable_addresses_are_blocked(url: str) -> None:
    d = POLICY.decide(url, group="staff", at=AT)
    assert (d.action, d.rule) == (Action.BLOCK, Rule.INVALID_URL)
    assert "could not be read" in d.reason


def test_decision_explains_itself() -> None:
    d = POLICY.decide("http://bet-ace.test/", at=AT)
    assert d.explain().startswith(
        "Blocked (category): bet-ace.test matches bet-ace.test in test/gambling line 1.")
    data = d.to_dict()
    assert (data["action"], data["rule"], data["category"]) == ("block", "category", "gambling")


# -- group profiles and time windows ----------------------------------------------------------

@pytest.mark.parametrize(
    ("local", "allowed"),
    [
        (time(10, 29, 59), False),
        (time(10, 30), True),  # break starts (inclusive)
        (time(10, 44, 59), True),
        (time(10, 45), False),  # break ends (exclusive)
        (time(11, 59), False),
        (time(12, 0), True),  # lunch
        (time(12, 59, 59), True),
        (time(13, 0), False),
        (time(9, 0), False),
    ],
)
@pytest.mark.parametrize("day", [WINTER_MONDAY, SUMMER_MONDAY], ids=["GMT", "BST"])
def test_learners_may_use_social_networks_only_in_break_and_lunch(
        day: datetime, local: time, allowed: bool) -> None:
    at = day.replace(hour=local.hour, minute=local.minute, second=local.second)
    d = POLICY.decide("http://friendspace.test/", group="learner", at=at.astimezone(UTC))
    assert (d.action is Action.ALLOW) is allowed
    assert d.rule is (Rule.TIME_WINDOW if allowed else Rule.CATEGORY)
    if allowed:
        assert "during" in d.reason


def test_time_windows_follow_london_time_across_the_clock_change() -> None:
    # Friday 27 March 2026 is GMT; Monday 30 March 2026 is BST (clocks went forward on the 29th).
    def learner(at: datetime) -> str:
        return POLICY.decide("http://friendspace.test/", group="learner", at=at).action.value

    assert learner(datetime(2026, 3, 27, 12, 15, tzinfo=UTC)) == "allow"  # 12:15 GMT
    assert learner(datetime(2026, 3, 30, 12, 15, tzinfo=UTC)) == "block"  # 13:15 BST
    assert learner(datetime(2026, 3, 30, 11, 15, tzinfo=UTC)) == "allow"  # 12:15 BST
    assert learner(datetime(2026, 3, 30, 11, 0, tzinfo=UTC)) == "allow"  # 12:00 BST, the first minute
    assert learner(datetime(2026, 3, 30, 10, 59, tzinfo=UTC)) == "block"  # 11:59 BST
    # Clocks go back on Sunday 25 October 2026.
    assert learner(datetime(2026, 10, 23, 11, 30, tzinfo=UTC)) == "allow"  # 12:30 BST
    assert learner(datetime(2026, 10, 26, 11, 30, tzinfo=UTC)) == "block"  # 11:30 GMT
    assert learner(datetime(2026, 10, 26, 12, 30, tzinfo=UTC)) == "allow"  # 12:30 GMT


def test_no_windows_at_the_weekend() -> None:
    saturday_lunch = datetime(2026, 1, 17, 12, 30, tzinfo=LONDON)
    assert decide("http://friendspace.test/", group="learner", at=saturday_lunch)[:2] == (
        "block", "category")


def test_time_windows_never_unlock_other_block_categories() -> None:
    lunch = datetime(2026, 1, 12, 12, 30, tzinfo=LONDON)
    assert decide("http://radical-social.test/", group="learner", at=lunch) == (
        "block", "category", "extremism")
    assert decide("http://bet-ace.test/", group="learner", at=lunch)[:2] == ("block", "category")


def test_custom_windows_and_time_zone() -> None:
    windows = {**default_windows(), "evening": TimeWindow("evening", parse_days("sat-sun"),
                                                          time(22, 0), time(2, 0))}
    profiles = {**default_profiles(),
                "residential": GroupProfile("residential", allow_during={"gambling": ("evening",)})}
    policy = make_policy(profiles=profiles, windows=windows, timezone="America/New_York")
    saturday = datetime(2026, 1, 17, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    assert decide("http://bet-ace.test/", policy, group="residential", at=saturday)[:2] == (
        "allow", "time-window")
    assert decide("http://bet-ace.test/", policy, group="residential",
                  at=saturday.replace(hour=21))[:2] == ("block", "category")


def test_parse_days() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days(["sat", "sun"]) == frozenset({5, 6})
    with pytest.raises(ValueError, match="unknown day"):
        parse_days("funday")


# -- policy validation ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profiles": {**default_profiles(), "bad": GroupProfile("bad", allow=frozenset({"child_abuse"}))}},
         "can never be overridden"),
        ({"profiles": {**default_profiles(),
                       "bad": GroupProfile("bad", allow_during={"terrorism_illegal": ("lunch",)})}},
         "can never be overridden"),
        ({"profiles": {**default_profiles(), "bad": GroupProfile("bad", allow=frozenset({"nope"}))}},
         "unknown category 'nope'"),
        ({"profiles": {**default_profiles(),
                       "bad": GroupProfile("bad", allow_during={"gambling": ("teatime",)})}},
         "unknown time window 'teatime'"),
        ({"unidentified_group": "visitors"}, "has no profile"),
    ],
)
def test_profiles_that_contradict_the_definitions_are_refused(
        kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        make_policy(**kwargs)


def test_overnight_windows_belong_to_the_day_they_start() -> None:
    from datetime import datetime, time

    from categories.profiles import TimeWindow, parse_days

    weekend_nights = TimeWindow("late", parse_days("sat-sun"), time(22, 0), time(2, 0))
    assert weekend_nights.contains(datetime(2026, 11, 28, 23, 0))      # Saturday 23:00
    assert weekend_nights.contains(datetime(2026, 11, 29, 1, 0))       # Sunday 01:00 (Sat night)
    assert weekend_nights.contains(datetime(2026, 11, 30, 1, 0))       # Monday 01:00 (Sun night)
    assert not weekend_nights.contains(datetime(2026, 11, 28, 1, 0))   # Saturday 01:00 (Fri night)
    assert not weekend_nights.contains(datetime(2026, 11, 30, 23, 0))  # Monday 23:00


# -- what an allow override would open ----------------------------------------------------------

def test_block_entries_under_a_host_list_its_listed_paths_and_subdomains_but_no_illegal_ones(
) -> None:
    under = POLICY.block_entries_under("university.test")
    assert [(e.entry, e.category, e.source) for e in under] == [
        ("social.university.test", "social_networks", "test/social_networks"),
        ("university.test/filtertest/adult", "pornography", "test/adult"),
        ("vpn.university.test", "circumvention", "test/vpn")]
    assert [e.entry for e in POLICY.block_entries_under("shared-host.test")] == [
        "shared-host.test"]  # shared-host.test/abuse/album is illegal: no override opens it
    assert [e.entry for e in POLICY.block_entries_under("general-blog.test/adult-corner")] == [
        "general-blog.test/adult-corner"]
    assert POLICY.block_entries_under("general-blog.test/adult") == []  # a segment boundary
    assert POLICY.block_entries_under("harmless-site.test") == []
    assert len(POLICY.block_entries_under("university.test", limit=2)) == 2
