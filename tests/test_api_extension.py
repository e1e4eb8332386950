"""The browser extension's backend routes: off-network rules, checks and off-network hits."""

from __future__ import annotations

import time
import uuid
from typing import Any

from admin_api.extension_rules import MAX_DOMAINS_PER_RULE, build_ruleset, category_hosts
from categories.profiles import GroupProfile
from esafety.cli import import_path
from store.records import new_hit_id
from tests.api_harness import TZ, Api, ApiFactory, import_list

RULES = "/api/v1/extension/rules"
CHECK = "/api/v1/extension/check"
HITS = "/api/v1/extension/hits"
# No time windows, so the answers do not depend on the time of day the tests run.
PROFILES = {"learner": GroupProfile("learner"),
            "staff": GroupProfile("staff", allow=frozenset({"social_networks"}),
                                  block_ip_literals=False),
            "guest": GroupProfile("guest")}


async def _api(make_api: ApiFactory) -> Api:
    # Without the background workers: the log feeder is caught up by hand.
    api = await make_api(profiles=PROFILES, run_workers=False)
    import_list(api, "gambling", ["casino.example", "www.casino.example", "bet.example"])
    import_list(api, "social_networks", ["friendface.example"])
    return api


def _rule_for(body: dict[str, Any], category: str) -> dict[str, Any] | None:
    return next((r for r in body["rules"] if r["category"] == category), None)


async def test_every_extension_route_needs_a_signed_in_user(make_api: ApiFactory) -> None:
    api = await _api(make_api)
    for method, path, kwargs in (("GET", RULES, {}), ("GET", CHECK + "?url=http://a.example/", {}),
                                 ("POST", HITS, {"json": {}})):
        status, body = await api.call(method, path, **kwargs)
        assert status == 401, path
        assert body["error"]["code"] == "unauthorised"


async def test_a_learner_gets_their_own_groups_rules_one_rule_per_category(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    staff = await api.user("staff1", "staff")
    status, body = await api.call("GET", RULES, learner)
    assert status == 200 and body["group"] == "learner" and body["full"] is True
    gambling = _rule_for(body, "gambling")
    assert gambling is not None and gambling["action"] == "block"
    # www.casino.example is covered by casino.example, so it is not sent twice
    assert gambling["domains"] == ["bet.example", "casino.example"]
    assert gambling["title"] == "Gambling" and gambling["reason"]
    assert _rule_for(body, "social_networks") is not None
    status, staff_body = await api.call("GET", RULES, staff)
    assert status == 200 and staff_body["group"] == "staff"
    assert _rule_for(staff_body, "social_networks") is None  # staff may use social networks
    assert _rule_for(staff_body, "gambling") is not None
    # nobody can ask for another group's (or user's) rules
    status, refused = await api.call("GET", RULES + "?group=staff", learner)
    assert status == 400 and refused["error"]["field"] == "group"


async def test_since_skips_an_unchanged_set_and_sends_only_what_an_approval_changed(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    other = await api.user("learner2", "learner")
    it = await api.user("it1", "it_support")
    _, first = await api.call("GET", RULES, learner)
    status, again = await api.call("GET", f"{RULES}?since={first['version']}", learner)
    assert status == 200 and again["unchanged"] is True and again["rules"] == []
    assert again["version"] == first["version"]

    status, filed = await api.call("POST", "/api/v1/unblock-requests", learner,
                                   json={"url": "https://casino.example/", "reason": "project"})
    assert status == 201
    # The host override also opens the separately listed www.casino.example: IT confirms.
    status, _ = await api.call("POST", f"/api/v1/unblock-requests/{filed['id']}/approve", it,
                               json={"scope": "user"})
    assert status == 409
    status, _ = await api.call("POST", f"/api/v1/unblock-requests/{filed['id']}/approve", it,
                               json={"scope": "user", "confirm_wider": True})
    assert status == 200
    status, delta = await api.call("GET", f"{RULES}?since={first['version']}", learner)
    assert status == 200 and delta["full"] is False and delta["unchanged"] is False
    assert delta["version"] != first["version"] and delta["remove"] == []
    assert [(r["category"], r["action"], r["domains"]) for r in delta["rules"]] == [
        ("override", "allow", ["casino.example"])]
    allow = delta["rules"][0]
    assert allow["priority"] > _rule_for(first, "gambling")["priority"]  # type: ignore[index]
    # the approval was for learner1 only
    _, others = await api.call("GET", RULES, other)
    assert _rule_for(others, "override") is None
    # a version this server never gave out gets the whole set
    status, full = await api.call("GET", f"{RULES}?since={'0' * 20}", learner)
    assert status == 200 and full["full"] is True
    status, bad = await api.call("GET", f"{RULES}?since=not-a-version", learner)
    assert status == 400 and bad["error"]["field"] == "since"


async def test_check_answers_for_the_signed_in_user_and_refuses_bad_urls(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    status, body = await api.call("GET", CHECK, learner,
                                  params={"url": "https://www.casino.example/spin"})
    assert status == 200
    assert body["blocked"] is True and body["category"] == "gambling"
    assert body["category_title"] == "Gambling" and body["cache_seconds"] > 0
    status, body = await api.call("GET", CHECK, learner, params={"url": "https://news.example/"})
    assert status == 200 and body["blocked"] is False
    for bad in ("javascript:alert(1)", "ftp://files.example/", "https://" + "a" * 2100,
                "http://exa mple.com/"):
        status, body = await api.call("GET", CHECK, learner, params={"url": bad})
        assert status == 400, bad
        assert body["error"]["code"] == "invalid_input" and body["error"]["field"] == "url"
    status, body = await api.call("GET", CHECK, learner)
    assert status == 400 and body["error"]["field"] == "url"


def _hit(url: str, category: str = "gambling", ts: float | None = None) -> dict[str, Any]:
    ts = time.time() if ts is None else ts
    return {"id": new_hit_id(ts, TZ), "ts": ts, "url": url, "category": category}


async def _logged(api: Api, token: str) -> list[dict[str, Any]]:
    await api.state.feeder.catch_up()
    status, body = await api.call("GET", "/api/v1/hits", token,
                                  params={"site": "off-network"})
    assert status == 200
    return list(body["items"])


async def test_off_network_hits_are_written_once_per_batch_as_the_signed_in_user(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    other = await api.user("learner2", "learner")
    batch = {"batch_id": uuid.uuid4().hex,
             "hits": [_hit("https://casino.example/roulette?x=1"),
                      _hit("https://bet.example/", category="pornography")]}
    status, body = await api.call("POST", HITS, learner, json=batch)
    assert status == 200 and body["written"] == 2 and body["duplicate"] is False
    status, body = await api.call("POST", HITS, learner, json=batch)  # a resend after a lost reply
    assert status == 200 and body["written"] == 0 and body["duplicate"] is True
    logged = await _logged(api, learner)
    assert sorted(h["id"] for h in logged) == sorted(h["id"] for h in batch["hits"])
    by_host = {h["host"]: h for h in logged}
    assert by_host["casino.example"]["path"] == "/roulette"
    assert all(h["user"] == "learner1" and h["group"] == "learner" and h["action"] == "block"
               for h in logged)
    # the category is the server's decision, not what the client claimed
    assert by_host["bet.example"]["category"] == "gambling"
    # the exactly-once marker is per user: another learner's batch id is their own
    status, body = await api.call("POST", HITS, other, json={
        "batch_id": batch["batch_id"], "hits": [_hit("https://casino.example/")]})
    assert status == 200 and body["written"] == 1
    assert [h["user"] for h in await _logged(api, other)] == ["learner2"]


async def test_forged_or_malformed_hits_are_refused_with_json_errors(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    good = _hit("https://casino.example/")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"batch_id": "x", "hits": [good]}, "batch_id"),
        ({"batch_id": "batch-0001", "hits": []}, "hits"),
        ({"batch_id": "batch-0001", "hits": [{**good, "user": "learner2"}]}, "hits[0]"),
        ({"batch_id": "batch-0001", "hits": [{**good, "id": "not-an-id"}]}, "hits[0].id"),
        ({"batch_id": "batch-0001", "hits": [{**good, "ts": time.time() + 86400}]}, "hits[0].ts"),
        ({"batch_id": "batch-0001", "hits": [{**good, "url": "javascript:alert(1)"}]},
         "hits[0].url"),
        ({"batch_id": "batch-0001", "hits": [good, good]}, "hits[1].id"),
        ({"batch_id": "batch-0001", "hits": [good] * 101}, "hits"),
        ({"batch_id": "batch-0001", "site": "main", "hits": [good]}, "site"),
    ]
    for body, field in cases:
        status, answer = await api.call("POST", HITS, learner, json=body)
        assert status == 400, (field, answer)
        assert answer["error"]["field"] == field
    stale = time.time() - 3 * 86400
    status, answer = await api.call("POST", HITS, learner, json={
        "batch_id": "batch-0002", "hits": [{**good, "ts": stale}]})  # id's day is today
    assert status == 400 and "time" in answer["error"]["message"]
    status, answer = await api.call("POST", HITS, learner, data=b"x" * (70 * 1024),
                                    headers={"Content-Type": "application/json"})
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    status, answer = await api.call("POST", HITS, learner, data=b"{not json",
                                    headers={"Content-Type": "application/json"})
    assert status == 400 and answer["error"]["code"] == "bad_json"
    assert await _logged(api, learner) == []


async def test_the_rule_set_for_the_list_snapshot_fits_chromes_limits(
        make_api: ApiFactory, ut1_dir: Any) -> None:
    api = await make_api(profiles=PROFILES, run_workers=False)
    import_path(api.state.settings.instance, ut1_dir, "ut1", None, None)
    policy = api.state.policy.base()
    ruleset = build_ruleset(policy, category_hosts(policy), user="learner1", group="learner")
    domains = sum(len(r.domains) for r in ruleset.rules)
    assert domains > 0
    assert all(len(r.domains) <= MAX_DOMAINS_PER_RULE for r in ruleset.rules)
    # each host rule becomes two Chrome rules, one of them a redirect ("unsafe")
    assert 2 * len(ruleset.rules) <= 30_000 and len(ruleset.rules) <= 5_000

