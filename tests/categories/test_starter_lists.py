"""The built-in starter lists: a fresh install, with no list imported, blocks the best-known
sites of each prohibited category; an imported list adds to them; overrides still win; the
browser extension carries them; and ``categories.coverage`` says which categories have
nothing but them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from admin_api.extension_rules import build_ruleset, category_hosts
from categories.coverage import category_coverage, starter_only_categories
from categories.decision import Action, Rule
from categories.definitions import CategoryKind, load_definitions
from categories.domain_index import ListInfo, build_index
from categories.list_formats import EntryKind
from categories.overrides import Override, OverrideScope
from categories.policy import Policy

CATEGORIES = load_definitions()
FRESH = Policy(CATEGORIES)
AT = datetime(2026, 1, 12, 9, 0, tzinfo=ZoneInfo("Europe/London"))  # a Monday morning
REPO = Path(__file__).resolve().parent.parent.parent

WELL_KNOWN = [
    ("https://www.pornhub.com/view_video.php", "pornography"),
    ("http://xvideos.com/", "pornography"),
    ("https://www.bet365.com/", "gambling"),
    ("https://sports.williamhill.com/betting", "gambling"),
    ("https://tinder.com/", "dating"),
    ("https://www.leafly.com/strains", "drugs"),
    ("https://www.gunbroker.com/", "weapons"),
    ("https://www.stormfront.org/forum/", "hate_discrimination"),
    ("https://hackforums.net/", "malware_hacking"),
    ("https://thepiratebay.org/", "piracy"),
    ("https://sanctioned-suicide.net/", "self_harm"),
    ("https://nordvpn.com/download/", "circumvention"),
    ("https://dns.google/dns-query", "dns_over_https"),
    ("https://bestgore.com/", "violence"),
]

NEVER_STARTER = [
    "https://www.google.com/", "https://www.reddit.com/", "https://www.youtube.com/",
    "https://en.wikipedia.org/", "https://www.bbc.co.uk/", "https://www.nhs.uk/",
    "https://www.talktofrank.com/", "https://www.gov.uk/", "https://github.com/",
    "https://www.amazon.co.uk/", "https://proton.me/", "https://www.mozilla.org/",
    "https://www.childline.org.uk/", "https://www.samaritans.org/",
]


@pytest.mark.parametrize(("url", "category"), WELL_KNOWN)
def test_with_no_list_imported_the_best_known_sites_are_blocked(url: str, category: str) -> None:
    decision = FRESH.decide(url, group="learner", at=AT)
    assert (decision.action, decision.rule, decision.category) == (
        Action.BLOCK, Rule.CATEGORY, category)
    assert decision.source == f"built-in categories/definitions/{category}.yaml"


@pytest.mark.parametrize("url", NEVER_STARTER)
def test_everyday_and_support_sites_are_not_on_any_starter_list(url: str) -> None:
    assert FRESH.decide(url, group="learner", at=AT).action is Action.ALLOW


def test_every_prohibited_category_has_starter_entries_except_the_illegal_lists() -> None:
    for category in CATEGORIES.values():
        if category.kind is not CategoryKind.BLOCK or category.id == "social_networks":
            continue
        if category.illegal:
            # Child abuse (IWF) and unlawful terrorist content (CTIRU) are never written by hand.
            assert category.entries == (), category.id
        else:
            big = category.id in ("pornography", "gambling", "circumvention", "piracy", "dating")
            assert len(category.entries) >= (20 if big else 1), category.id


def test_no_starter_site_is_listed_twice_or_under_the_allow_list() -> None:
    owner: dict[str, str] = {}
    allowed = {e.value for e in CATEGORIES["allowlist"].entries}
    for category in CATEGORIES.values():
        if category.kind is not CategoryKind.BLOCK:
            continue
        for entry in category.entries:
            assert entry.value not in owner, (entry.value, owner.get(entry.value), category.id)
            owner[entry.value] = category.id
            assert not any(entry.value == a or entry.value.endswith("." + a) for a in allowed)


def test_esafety_check_on_a_fresh_data_dir_blocks_a_starter_site(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "esafety.cli", "--data-dir", str(tmp_path / "data"), "check",
         "http://pornhub.com/", "https://www.bbc.co.uk/"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    blocked = next(line for line in lines if "pornhub.com" in line)
    assert blocked.startswith("BLOCK http://pornhub.com/ category=pornography rule=category")
    assert "matched=pornhub.com (built-in categories/definitions/pornography.yaml:" in blocked
    assert next(line for line in lines if "bbc.co.uk" in line).startswith("ALLOW")


def _snapshot(lists: dict[str, list[str]]) -> Policy:
    infos = [ListInfo(name, f"ut1/{name}") for name in lists]
    entries = [(list_id, EntryKind.DOMAIN, domain, line)
               for list_id, domains in enumerate(lists.values())
               for line, domain in enumerate(domains, start=1)]
    return Policy(CATEGORIES, build_index(infos, entries))


def test_an_imported_list_adds_to_the_starter_entries_and_overrides_still_win() -> None:
    policy = _snapshot({"gambling": ["bet-ace.test"]})
    assert policy.decide("https://bet-ace.test/", at=AT).source == "ut1/gambling"
    assert policy.decide("https://www.bet365.com/", at=AT).source == (
        "built-in categories/definitions/gambling.yaml")
    allowed = policy.with_overrides([Override("o1", "bet365.com", "allow",
                                              OverrideScope.EVERYONE, None)])
    decision = allowed.decide("https://www.bet365.com/", at=AT)
    assert (decision.action, decision.rule) == (Action.ALLOW, Rule.OVERRIDE)


def test_coverage_names_the_categories_no_imported_list_feeds() -> None:
    fresh = starter_only_categories(CATEGORIES, None)
    assert "gambling" in fresh and "pornography" in fresh and "child_abuse" in fresh
    assert "banking" not in fresh and "allowlist" not in fresh  # not prohibited categories
    imported = _snapshot({"gambling": ["bet-ace.test"], "adult": ["adult.test"]})
    after = starter_only_categories(CATEGORIES, imported.snapshot)
    assert "gambling" not in after and "pornography" not in after
    assert "child_abuse" in after and "dating" in after
    by_id = {c.category: c for c in category_coverage(CATEGORIES, imported.snapshot)}
    assert by_id["gambling"].imported_lists == ("ut1/gambling",)
    assert by_id["gambling"].starter_entries == len(CATEGORIES["gambling"].entries)
    assert by_id["child_abuse"].starter_entries == 0 and by_id["child_abuse"].illegal


def test_the_extension_rules_carry_the_starter_entries() -> None:
    hosts = category_hosts(FRESH)
    ruleset = build_ruleset(FRESH, hosts, user="", group="guest", at=AT)
    blocking = {domain: rule.category for rule in ruleset.rules if rule.action == "block"
                for domain in rule.domains}
    assert blocking["pornhub.com"] == "pornography"
    assert blocking["bet365.com"] == "gambling"
    assert blocking["thepiratebay.org"] == "piracy"
