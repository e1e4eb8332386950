"""Property-based fuzzing of the normaliser and the matcher (Hypothesis).

Properties: no input raises out of ``Policy.decide``; any spelling of a URL whose host is, or
is under, a blocked domain is blocked; canonical forms are stable (canonicalising a canonical
URL changes nothing)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from categories import Policy, URLError, canonical_url, load_definitions
from categories.domain_index import ListInfo, build_index
from categories.list_formats import EntryKind

BLOCKED = ["casino-royale.test", "bet-now.test", "gunbroker.com", "hatesite.test",
           "sub.warez-site.test", "dns.google"]
EXAMPLES = 2500
COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def policy() -> Policy:
    lists = [ListInfo("gambling", "fuzz/gambling"), ListInfo("agressif", "fuzz/agressif"),
             ListInfo("warez", "fuzz/warez")]
    entries = [(0, EntryKind.DOMAIN, "casino-royale.test", 1),
               (0, EntryKind.DOMAIN, "bet-now.test", 2),
               (1, EntryKind.DOMAIN, "hatesite.test", 1),
               (2, EntryKind.DOMAIN, "sub.warez-site.test", 1)]
    return Policy(load_definitions(), build_index(lists, entries))


def _percent_some(text: str, mask: list[bool]) -> str:
    return "".join(f"%{ord(c):02x}" if m and c.isascii() and c != "." else c
                   for c, m in zip(text, mask + [False] * len(text), strict=False))


@st.composite
def blocked_spellings(draw: st.DrawFn) -> str:
    domain = draw(st.sampled_from(BLOCKED))
    cases = draw(st.lists(st.booleans(), min_size=len(domain), max_size=len(domain)))
    host = "".join(c.upper() if up else c for c, up in zip(domain, cases, strict=True))
    labels = draw(st.lists(st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?",
                                         fullmatch=True), max_size=3))
    host = ".".join([*labels, host])
    host += draw(st.sampled_from(["", ".", ".."]))[:1]
    host = _percent_some(host, draw(st.lists(st.booleans(), max_size=len(host))))
    userinfo = draw(st.sampled_from(["", "user@", "user:pw@", "allowed.test@", "a%40b:x@"]))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080", ":65535"]))
    pieces = st.sampled_from([*"/\\.%;?#&=abcXYZ09-_~ é", "%2e", "%2f", "..", "//"])
    path = "".join(draw(st.lists(pieces, max_size=20)))
    scheme = draw(st.sampled_from(["http://", "https://", "HTTP://", "hTTps://", "//", "",
                                   "http:\\\\", "ws://"]))
    if scheme == "" and userinfo:
        scheme = "http://"
    separator = "/" if path and path[0] not in "/\\?#" else ""
    return f"{scheme}{userinfo}{host}{port}{separator}{path}"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=blocked_spellings())
def test_every_spelling_of_a_blocked_host_is_blocked(policy: Policy, url: str) -> None:
    COUNTS["blocked spellings"] += 1
    for group in ("learner", "staff", None):
        decision = policy.decide(url, group=group)
        assert decision.blocked, (url, decision)


@settings(max_examples=EXAMPLES, deadline=None)
@given(text=st.text(max_size=300))
def test_no_input_raises_out_of_decide(policy: Policy, text: str) -> None:
    COUNTS["arbitrary text"] += 1
    decision = policy.decide(text, group="learner")
    assert decision.action.value in ("allow", "block")
    if decision.rule.value == "invalid-url":
        assert decision.blocked


@settings(max_examples=EXAMPLES, deadline=None)
@given(url=st.one_of(blocked_spellings(),
                     st.from_regex(r"https?://[a-zA-Z0-9.\-%@:\[\]]{1,40}(/[ -~]{0,40})?",
                                   fullmatch=True)))
def test_canonical_forms_are_stable(url: str) -> None:
    COUNTS["canonical stability"] += 1
    try:
        first = canonical_url(url)
    except URLError:
        return
    again = canonical_url(f"{first.scheme}://{_bracket(first.host)}{first.path}")
    assert (again.host, again.path) == (first.host, first.path), url


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def test_report_fuzz_figures(security_figures: dict[str, str]) -> None:
    """Runs after the properties above (file order) and reports how many inputs each took."""
    assert sum(COUNTS.values()) >= EXAMPLES  # the properties really ran
    security_figures["fuzz inputs: normaliser and matcher"] = ", ".join(
        f"{name} {count}" for name, count in sorted(COUNTS.items())) + "; crashes 0"
    assert Path(__file__).exists()
