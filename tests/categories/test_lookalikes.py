"""Look-alike (homoglyph) names of listed sites are blocked in the listed site's category."""

from __future__ import annotations

import pytest

from categories import Policy, load_definitions
from categories.lookalikes import ascii_lookalikes, skeleton


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy(load_definitions())


@pytest.mark.parametrize("spoof", [
    "gunbrοker.com",      # Greek omicron
    "gunbrоker.com",      # Cyrillic o
    "gսnbroker.com",      # Armenian u
    "gùnbroker.com",      # accent
    "GUNBRΟKER.COM",      # upper case with a Greek capital omicron
    "www.gunbrοker.com",  # subdomain of a look-alike
])
def test_lookalikes_of_a_listed_domain_are_blocked(policy: Policy, spoof: str) -> None:
    decision = policy.decide(f"https://{spoof}/shop", group="staff")
    assert decision.blocked
    assert decision.category == "weapons"
    assert decision.matched == "gunbroker.com"
    assert "imitates gunbroker.com" in decision.reason


def test_full_width_letters_are_the_listed_name_itself(policy: Policy) -> None:
    decision = policy.decide("https://ｇｕｎｂｒｏｋｅｒ.com/shop", group="staff")
    assert decision.blocked and decision.rule.value == "category"
    assert decision.host == "gunbroker.com"


def test_genuine_international_names_are_not_caught(policy: Policy) -> None:
    for host in ("münchen.de", "bücher.example", "россия.рф", "παράδειγμα.δοκιμή"):
        assert not policy.decide(f"http://{host}/", group="staff").blocked, host


def test_a_lookalike_of_an_allowed_site_gains_nothing(policy: Policy) -> None:
    # brook.org.uk is on the sex-education allow-list; its look-alike is not.
    decision = policy.decide("http://brοok.org.uk/", group="learner")
    assert decision.rule.value == "default"
    assert decision.category is None


def test_skeleton_and_lookalike_helpers() -> None:
    assert skeleton("Pаypal") == "paypal"
    assert ascii_lookalikes("example.com") == []
    assert ascii_lookalikes("xn--mnchen-3ya.de") == ["munchen.de"]
    assert ascii_lookalikes("xn--raist-forum-mgi.test") == ["racist-forum.test",
                                                            "raoist-forum.test"]
