"""The browser extension's backend routes: off-network rules, checks and off-network hits."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from admin_api.extension_rules import (
    MAX_DOMAINS_PER_RULE,
    build_ruleset,
    category_hosts,
    category_url_prefixes,
    chrome_rules,
)
from categories.profiles import GroupProfile
from categories.validated_yaml import ValidationFailed
from deployment.config import load_config
from esafety.cli import import_path
from store.extension_devices import navigation_token
from store.probe_key import probe_key_path, public_probe_key
from store.records import new_hit_id
from tests.harness.api import TZ, Api, ApiFactory, import_list

RULES = "/api/v1/extension/rules"
UNSIGNED_RULES = "/api/v1/extension/unsigned-rules"
CHECK = "/api/v1/extension/check"
HITS = "/api/v1/extension/hits"
DEVICES = "/api/v1/extension/devices"
SESSION = "/api/v1/extension/session"
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
    # www.casino.example is covered by casino.example, so it is not sent twice; the built-in
    # starter list comes with the imported one
    assert {"bet.example", "casino.example", "bet365.com"} <= set(gambling["domains"])
    assert "www.casino.example" not in gambling["domains"]
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


def _hit(url: str, category: str = "gambling", ts: float | None = None,
         key: bytes = b"") -> dict[str, Any]:
    ts = round(time.time() if ts is None else ts, 3)
    hit_id = new_hit_id(ts, TZ)
    return {"id": hit_id, "ts": ts, "url": url, "category": category,
            "nav_token": navigation_token(key, hit_id, ts, url) if key else "0" * 64}


DEVICE_KEYS: dict[str, ec.EllipticCurvePrivateKey] = {}
"""Each test install's device key (the extension keeps it in WebCrypto, unexportable)."""


async def _device(api: Api, token: str) -> tuple[str, bytes, dict[str, Any]]:
    """Register an install as the extension does at sign-in: (device id, hit key, grant)."""
    device_id = uuid.uuid4().hex
    key = ec.generate_private_key(ec.SECP256R1())
    DEVICE_KEYS[device_id] = key
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint).hex()
    status, grant = await api.call("POST", DEVICES, token,
                                   json={"device_id": device_id, "public_key": public})
    assert status == 201, grant
    return device_id, bytes.fromhex(grant["hit_key"]), grant


def _proof(device_id: str, ts: int | None = None,
           key: ec.EllipticCurvePrivateKey | None = None) -> dict[str, Any]:
    """What the extension's device_key.js sends with a session request."""
    ts = int(time.time()) if ts is None else ts
    der = (key or DEVICE_KEYS[device_id]).sign(
        f"esafety-session-v1\n{device_id}\n{ts}".encode(), ec.ECDSA(SHA256()))
    r, s = decode_dss_signature(der)
    return {"ts": ts, "sig": (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()}


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
    device, key, _grant = await _device(api, learner)
    batch = {"batch_id": uuid.uuid4().hex, "device_id": device,
             "hits": [_hit("https://casino.example/roulette?x=1", key=key),
                      _hit("https://bet.example/", category="pornography", key=key),
                      _hit("https://news.example/", category="self_harm", key=key)]}
    status, body = await api.call("POST", HITS, learner, json=batch)
    assert status == 200 and body["written"] == 3 and body["duplicate"] is False
    status, body = await api.call("POST", HITS, learner, json=batch)  # a resend after a lost reply
    assert status == 200 and body["written"] == 0 and body["duplicate"] is True
    logged = await _logged(api, learner)
    assert sorted(h["id"] for h in logged) == sorted(h["id"] for h in batch["hits"])
    by_host = {h["host"]: h for h in logged}
    assert by_host["casino.example"]["path"] == "/roulette"
    assert all(h["user"] == "learner1" and h["group"] == "learner" and h["action"] == "block"
               for h in logged)
    # the category is the server's own decision, never what the client claimed
    assert by_host["bet.example"]["category"] == "gambling"
    # a block the server would not make raises nothing, whatever category the client named
    assert by_host["news.example"]["category"] == "" and by_host["news.example"]["alert"] is False
    status, alerts = await api.call("GET", "/api/v1/alerts", await api.user("dsl1", "dsl"))
    assert status == 200 and alerts["items"] == []
    # the exactly-once marker is per user: another learner's batch id is their own
    other_device, other_key, _ = await _device(api, other)
    status, body = await api.call("POST", HITS, other, json={
        "batch_id": batch["batch_id"], "device_id": other_device,
        "hits": [_hit("https://casino.example/", key=other_key)]})
    assert status == 200 and body["written"] == 1
    assert [h["user"] for h in await _logged(api, other)] == ["learner2"]


async def test_a_hit_without_this_installs_navigation_token_is_refused(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    other = await api.user("learner2", "learner")
    device, key, _ = await _device(api, learner)
    other_device, other_key, _ = await _device(api, other)
    hit = _hit("https://casino.example/", key=key)
    cases = [
        # a token someone made up, or made for another address or time
        {"device_id": device, "hits": [{**hit, "nav_token": "ab" * 32}]},
        {"device_id": device, "hits": [{**hit, "url": "https://extremist.example/"}]},
        {"device_id": device, "hits": [{**hit, "ts": hit["ts"] - 1}]},
        # another learner's install and key: neither is this user's
        {"device_id": other_device, "hits": [hit]},
        {"device_id": device, "hits": [_hit("https://casino.example/", key=other_key)]},
        # no install at all
        {"device_id": uuid.uuid4().hex, "hits": [hit]},
    ]
    for case in cases:
        status, answer = await api.call("POST", HITS, learner,
                                        json={"batch_id": uuid.uuid4().hex, **case})
        assert status in (400, 403), (case, answer)
    status, answer = await api.call("POST", HITS, learner, json={
        "batch_id": uuid.uuid4().hex, "hits": [hit]})
    assert status == 400 and answer["error"]["field"] == "device_id"
    assert await _logged(api, learner) == []


async def test_an_install_keeps_its_sign_in_across_restarts_until_it_signs_out(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    device, _key, grant = await _device(api, learner)
    assert len(grant["probe_key"]) == 64
    assert grant["offnetwork_unsigned"] == "block_prohibited"
    key_file = probe_key_path(api.state.settings.data_dir)
    private = bytes.fromhex(key_file.read_text().strip())
    # only the public half leaves the server: nobody signed in can sign a probe answer
    assert grant["probe_key"] == public_probe_key(private).hex() != private.hex()
    assert key_file.stat().st_mode & 0o777 == 0o600
    # a browser restart: the refresh token, signed for with the device key, gives a session
    refresh = {"device_id": device, "refresh_token": grant["refresh_token"]}
    proof = _proof(device)
    status, session = await api.call("POST", SESSION, json={**refresh, **proof})
    assert status == 200 and session["user"]["name"] == "learner1"
    status, rules = await api.call("GET", RULES, session["token"])
    assert status == 200 and rules["group"] == "learner"
    # the refresh token is bound to its install: its id, its key, a fresh proof each time
    status, _ = await api.call("POST", SESSION, json={**refresh, **proof})  # replayed
    assert status == 401
    status, _ = await api.call("POST", SESSION, json={
        **refresh, **_proof(device, ts=proof["ts"] + 1, key=ec.generate_private_key(
            ec.SECP256R1()))})  # copied elsewhere: another browser's key
    assert status == 401
    status, _ = await api.call("POST", SESSION, json={
        **refresh, **_proof(device, ts=proof["ts"] - 3600)})  # an old proof
    assert status == 401
    status, _ = await api.call("POST", SESSION, json={
        **refresh, "device_id": uuid.uuid4().hex, **_proof(device, ts=proof["ts"] + 2)})
    assert status == 401
    status, answer = await api.call("POST", SESSION, json=refresh)  # no proof at all
    assert status == 400 and answer["error"]["field"] == "ts"
    status, session = await api.call("POST", SESSION, json={
        **refresh, **_proof(device, ts=proof["ts"] + 3)})
    assert status == 200
    # signing out revokes it (and the bearer token)
    status, _ = await api.call("DELETE", DEVICES + "/current", session["token"],
                               headers={"X-Esafety-Device": device})
    assert status == 200
    status, _ = await api.call("POST", SESSION, json={
        "device_id": device, "refresh_token": grant["refresh_token"],
        **_proof(device, ts=int(time.time()) + 10)})
    assert status == 401
    status, _ = await api.call("GET", RULES, session["token"])
    assert status == 401


async def test_a_disabled_account_cannot_refresh_its_install(make_api: ApiFactory) -> None:
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    admin = await api.user("admin1", "admin")
    device, _key, grant = await _device(api, learner)
    status, body = await api.call("POST", "/api/v1/users/learner1/disable", admin)
    assert status == 200, body
    status, _ = await api.call("POST", SESSION, json={
        "device_id": device, "refresh_token": grant["refresh_token"], **_proof(device)})
    assert status == 401


async def test_the_unsigned_rules_need_no_sign_in_and_hold_the_strictest_profile(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    status, body = await api.call("GET", UNSIGNED_RULES)
    assert status == 200 and body["signed_in"] is False
    assert body["group"] == "guest" and body["offnetwork_unsigned"] == "block_prohibited"
    assert len(body["probe_key"]) == 64  # public: lets an unsigned install prove the centre
    gambling = _rule_for(body, "gambling")
    assert gambling is not None and gambling["action"] == "block"
    assert _rule_for(body, "social_networks") is not None
    status, again = await api.call("GET", f"{UNSIGNED_RULES}?since={body['version']}")
    assert status == 200 and again["unchanged"] is True


async def test_most_specific_entry_wins_and_url_prefixes_become_rules(
        make_api: ApiFactory) -> None:
    api = await _api(make_api)
    import_list(api, "allowlist", ["example.org"])
    import_list(api, "gambling", ["bets.example.org"])
    learner = await api.user("learner1", "learner")
    _, body = await api.call("GET", RULES, learner)
    def priority(category: str, domain: str) -> int:
        return next(r["priority"] for r in body["rules"]
                    if r["category"] == category and domain in r["domains"])
    # a longer block entry beats a shorter allow entry; a longer allow beats a shorter block
    assert priority("gambling", "bets.example.org") > priority("allowlist", "example.org")
    policy = api.state.policy.base()
    prefixes = category_url_prefixes(policy)
    ruleset = build_ruleset(policy, category_hosts(policy), user="learner1", group="learner",
                            prefixes={"gambling": ("casino.example/spin",)})
    url_rules = [r for r in ruleset.rules if r.match == "url-prefix"]
    assert [(r.category, r.prefixes) for r in url_rules] == [("gambling", ("casino.example/spin",))]
    host_rules = [r for r in ruleset.rules if r.match == "domains" and r.action == "allow"]
    assert all(url_rules[0].priority > r.priority for r in host_rules)
    assert isinstance(prefixes, dict)
    # more listed paths than Chrome's regex budget: their hosts are held for a check
    many = tuple(f"host{n % 7}.example/page{n}" for n in range(450))
    ruleset = build_ruleset(policy, category_hosts(policy), user="learner1", group="learner",
                            prefixes={"gambling": many})
    expressed = [p for r in ruleset.rules if r.match == "url-prefix" for p in r.prefixes]
    checks = [r for r in ruleset.rules if r.action == "check"]
    assert len(expressed) == 200 and ruleset.unexpressed_prefixes == 250
    assert [(r.category, r.domains) for r in checks] == [
        ("gambling", tuple(sorted({p.split("/")[0] for p in many[200:]})))]
    assert chrome_rules(checks[0])[0]["condition"]["resourceTypes"] == ["main_frame"]
    assert len(chrome_rules(checks[0])) == 1  # the site's images and scripts are not held


async def test_the_rule_set_for_the_list_snapshot_fits_chromes_limits(
        make_api: ApiFactory, ut1_dir: Any) -> None:
    api = await make_api(profiles=PROFILES, run_workers=False)
    import_path(api.state.settings.instance, ut1_dir, "ut1", None, None)
    policy = api.state.policy.base()
    ruleset = build_ruleset(policy, category_hosts(policy), user="learner1", group="learner",
                            prefixes=category_url_prefixes(policy))
    domains = sum(len(r.domains) for r in ruleset.rules)
    assert domains > 0
    assert all(len(r.domains) <= MAX_DOMAINS_PER_RULE for r in ruleset.rules)
    # each host rule becomes two Chrome rules; url-prefix and IP rules two regex rules each
    assert 2 * len(ruleset.rules) <= 30_000
    regex_rules = [r for r in ruleset.rules if r.match in ("url-prefix", "ip-literal")]
    assert 2 * len(regex_rules) <= 990



async def test_the_configured_offnetwork_policy_reaches_unsigned_installs(
        make_api: ApiFactory, tmp_path: Path) -> None:
    """`extension.offnetwork_unsigned: block_all` in the config is what an install with nobody
    signed in is told; a value the schema does not know is a config error naming the key."""
    config_file = tmp_path / "esafety.yaml"
    config_file.write_text("extension:\n  offnetwork_unsigned: block_all\n")
    assert load_config(config_file).offnetwork_unsigned == "block_all"
    api = await make_api(profiles=PROFILES, run_workers=False, offnetwork_unsigned="block_all")
    status, body = await api.call("GET", UNSIGNED_RULES)
    assert status == 200 and body["offnetwork_unsigned"] == "block_all"
    config_file.write_text("extension:\n  offnetwork_unsigned: allow_everything\n")
    with pytest.raises(ValidationFailed) as failed:
        load_config(config_file)
    assert "extension.offnetwork_unsigned" in str(failed.value)


async def test_revoking_a_users_tokens_ends_their_installs_sign_in(make_api: ApiFactory) -> None:
    """IT's "end all sessions" reaches the extension too: the install's refresh token stops
    working, so a lost laptop keeps only the unsigned (strictest) rules."""
    api = await _api(make_api)
    learner = await api.user("learner1", "learner")
    admin = await api.user("admin1", "admin")
    device, _key, grant = await _device(api, learner)
    status, body = await api.call("POST", "/api/v1/users/learner1/revoke-tokens", admin)
    assert status == 200, body
    status, _ = await api.call("POST", SESSION, json={
        "device_id": device, "refresh_token": grant["refresh_token"], **_proof(device)})
    assert status == 401
