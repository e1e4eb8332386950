"""Unblock requests end to end through the API, overrides, expiry, and the audit log."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from admin_api.workers.housekeeping import remove_expired_overrides
from categories.decision import Action
from esafety.cli import import_path
from store.policy_state import read_overrides, read_version
from tests.harness.api import Api, hit, import_list

CASINO = "http://casino.example/slots"


async def _setup(api: Api) -> dict[str, str]:
    import_list(api, "gambling", ["casino.example"])
    import_list(api, "iwf", ["abuse.example"])
    tokens = {"l1": await api.user("l1", "learner"), "l2": await api.user("l2", "learner"),
              "it": await api.user("it1", "it_support"), "boss": await api.user("boss", "manager")}
    return tokens


async def _decide(api: Api, url: str, user: str, at: datetime | None = None) -> Action:
    policy = api.state.settings.instance.load_policy().with_overrides(
        await read_overrides(api.redis, api.keys))
    return policy.decide(url, user=user, group="learner", at=at).action


async def test_approval_for_one_user_allows_only_that_user(api: Api) -> None:
    t = await _setup(api)
    blocked = hit("l1", host="casino.example", path="/slots")
    await api.write_hits([blocked])
    status, body = await api.call("POST", "/api/v1/unblock-requests", t["l1"], json={
        "url": CASINO, "reason": "Business studies case study on gambling firms",
        "hit_id": blocked.id})
    assert status == 201
    request_id = body["id"]
    # The site is listed as a whole, so approving opens the site, not just the page.
    assert body["request"]["status"] == "open" and body["request"]["target"] == "casino.example"

    status, detail = await api.call("GET", f"/api/v1/unblock-requests/{request_id}", t["it"])
    assert status == 200
    assert detail["decision"]["action"] == "block"
    assert detail["decision"]["category"] == "gambling"
    assert "casino.example" in detail["decision"]["explanation"]
    assert detail["hit"]["id"] == blocked.id and detail["hit"]["user"] == "l1"
    assert detail["earlier_requests"] == []

    version_before = await read_version(api.redis, api.keys)
    status, body = await api.call("POST", f"/api/v1/unblock-requests/{request_id}/approve",
                                  t["it"], json={"scope": "user", "note": "Fine for coursework"})
    assert status == 200, body
    assert body["policy_version"] > version_before
    assert body["override"]["subject"] == "l1" and body["override"]["action"] == "allow"
    assert await _decide(api, CASINO, "l1") is Action.ALLOW
    assert await _decide(api, CASINO, "l2") is Action.BLOCK

    status, mine = await api.call("GET", f"/api/v1/unblock-requests/{request_id}", t["l1"])
    request = mine["request"]
    assert request["status"] == "approved" and request["note"] == "Fine for coursework"
    assert request["decided_by"] == "it1" and request["turnaround_seconds"] >= 0
    assert request["decided_at"] >= request["created_at"]

    status, again = await api.call("POST", f"/api/v1/unblock-requests/{request_id}/deny",
                                   t["it"], json={"note": "changed my mind"})
    assert status == 409 and again["error"]["code"] == "already_decided"

    status, audit = await api.call("GET", "/api/v1/audit?action=unblock.approve", t["boss"])
    assert status == 200
    [entry] = audit["items"]
    assert entry["actor"] == "it1" and entry["target"] == request_id
    assert entry["before"]["status"] == "open"
    assert entry["after"]["request"]["status"] == "approved"
    assert entry["after"]["override"]["subject"] == "l1"


async def test_group_and_everyone_scopes(api: Api) -> None:
    t = await _setup(api)
    _, body = await api.call("POST", "/api/v1/unblock-requests", t["l1"],
                             json={"url": CASINO, "reason": "class project"})
    status, out = await api.call("POST", f"/api/v1/unblock-requests/{body['id']}/approve",
                                 t["it"], json={"scope": "group"})
    assert status == 200 and out["override"]["subject"] == "learner"
    assert await _decide(api, CASINO, "l2") is Action.ALLOW


async def test_duplicate_open_requests_are_merged(api: Api) -> None:
    t = await _setup(api)
    _, first = await api.call("POST", "/api/v1/unblock-requests", t["l1"],
                              json={"url": CASINO, "reason": "first"})
    status, second = await api.call("POST", "/api/v1/unblock-requests", t["l1"],
                                    json={"url": "casino.example/slots", "reason": "second"})
    assert status == 200 and second["merged"] and second["id"] == first["id"]
    assert second["request"]["reasons"] == ["first", "second"]
    assert second["request"]["request_count"] == 2
    status, other = await api.call("POST", "/api/v1/unblock-requests", t["l2"],
                                   json={"url": CASINO, "reason": "me too"})
    assert status == 201 and other["id"] != first["id"]
    _, listing = await api.call("GET", "/api/v1/unblock-requests?status=open", t["it"])
    assert len(listing["items"]) == 2
    _, detail = await api.call("GET", f"/api/v1/unblock-requests/{other['id']}", t["it"])
    assert [e["id"] for e in detail["earlier_requests"]] == [first["id"]]


async def test_sites_on_illegal_lists_can_never_be_approved(api: Api) -> None:
    t = await _setup(api)
    _, body = await api.call("POST", "/api/v1/unblock-requests", t["l1"],
                             json={"url": "http://abuse.example/", "reason": "?"})
    status, out = await api.call("POST", f"/api/v1/unblock-requests/{body['id']}/approve",
                                 t["it"], json={"scope": "everyone"})
    assert status == 409 and out["error"]["code"] == "not_overridable"
    assert "never be unblocked" in out["error"]["message"]
    assert await read_overrides(api.redis, api.keys) == []
    status, out = await api.call("POST", "/api/v1/overrides", t["it"],
                                 json={"target": "abuse.example", "action": "allow"})
    assert status == 409
    status, _ = await api.call("POST", "/api/v1/overrides", t["it"],
                                 json={"target": "abuse.example", "action": "block"})
    assert status == 201  # blocking more is always allowed


async def test_deny_tells_the_requester_why(api: Api) -> None:
    t = await _setup(api)
    _, body = await api.call("POST", "/api/v1/unblock-requests", t["l1"],
                             json={"url": CASINO, "reason": "bored"})
    status, _ = await api.call("POST", f"/api/v1/unblock-requests/{body['id']}/deny", t["it"],
                               json={})
    assert status == 400  # a note is required
    status, _ = await api.call("POST", f"/api/v1/unblock-requests/{body['id']}/deny",
                                 t["it"], json={"note": "Not needed for your course"})
    assert status == 200
    _, mine = await api.call("GET", "/api/v1/unblock-requests", t["l1"])
    assert [(r["status"], r["note"]) for r in mine["items"]] == [
        ("denied", "Not needed for your course")]
    assert await _decide(api, CASINO, "l1") is Action.BLOCK


async def test_an_expired_approval_stops_applying(api: Api) -> None:
    t = await _setup(api)
    _, body = await api.call("POST", "/api/v1/unblock-requests", t["l1"],
                             json={"url": CASINO, "reason": "one lesson"})
    expires = int(time.time()) + 3600
    status, out = await api.call(
        "POST", f"/api/v1/unblock-requests/{body['id']}/approve", t["it"],
        json={"scope": "user", "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()})
    assert status == 200 and out["override"]["expires_at"] == expires
    before = datetime.fromtimestamp(expires - 60, UTC)
    after = datetime.fromtimestamp(expires + 1, UTC)
    assert await _decide(api, CASINO, "l1", at=before) is Action.ALLOW
    assert await _decide(api, CASINO, "l1", at=after) is Action.BLOCK
    # housekeeping then removes it and marks the request expired
    assert await remove_expired_overrides(api.state, now=expires + 1) == [f"req-{body['id']}"]
    assert await read_overrides(api.redis, api.keys) == []
    _, mine = await api.call("GET", f"/api/v1/unblock-requests/{body['id']}", t["l1"])
    assert mine["request"]["status"] == "expired"


async def test_overrides_api_lists_adds_and_deletes(api: Api) -> None:
    t = await _setup(api)
    status, out = await api.call("POST", "/api/v1/overrides", t["it"], json={
        "target": "https://casino.example/", "action": "allow", "scope": "user",
        "subject": "l2", "note": "exam practice"})
    assert status == 201
    override_id = out["override"]["id"]
    assert await _decide(api, CASINO, "l2") is Action.ALLOW
    _, listing = await api.call("GET", "/api/v1/overrides", t["it"])
    assert [o["id"] for o in listing["items"]] == [override_id]
    status, _ = await api.call("DELETE", f"/api/v1/overrides/{override_id}", t["it"])
    assert status == 200
    assert await _decide(api, CASINO, "l2") is Action.BLOCK
    _, audit = await api.call("GET", "/api/v1/audit", t["boss"])
    actions = [e["action"] for e in audit["items"]]
    assert actions[:2] == ["override.delete", "override.create"]


async def test_the_audit_log_cannot_be_changed_through_the_api(api: Api) -> None:
    t = await _setup(api)
    admin = await api.user("root", "admin")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        status, _ = await api.call(method, "/api/v1/audit", admin, json={})
        assert status == 405
    status, _ = await api.call("GET", "/api/v1/audit", t["it"])
    assert status == 403
    app = api.client.server.app  # type: ignore[union-attr]
    audit_routes = [r for r in app.router.routes() if "audit" in r.resource.canonical]
    assert {r.method for r in audit_routes} <= {"GET", "HEAD"}


async def test_a_page_blocked_by_a_url_entry_is_opened_only_below_that_entry(api: Api) -> None:
    """The request's target is the entry that blocks it: a URL entry keeps its path, so the
    approval does not open the rest of a mixed site."""
    source = api.data_dir.parent / "adult-urls.txt"
    source.write_text("mixed.example/adult-section\n")
    import_path(api.state.settings.instance, source, "test-adult-urls", "adult", "urls")
    learner = await api.user("l9", "learner")
    status, body = await api.call("POST", "/api/v1/unblock-requests", learner, json={
        "url": "https://mixed.example/adult-section/page3?x=1", "reason": "Health course"})
    assert status == 201
    assert body["request"]["target"] == "mixed.example/adult-section"


def import_urls(api: Api, list_name: str, urls: list[str]) -> None:
    source = api.data_dir.parent / f"{list_name}-urls.txt"
    source.write_text("\n".join(urls) + "\n")
    import_path(api.state.settings.instance, source, f"test-{list_name}-urls", list_name, "urls")


async def test_a_request_for_an_address_that_is_not_blocked_is_answered_and_never_filed(
        api: Api) -> None:
    """The listed paths of a site are blocked while its front page is allowed by default: a
    request for the front page is answered "not blocked", so it can never be approved into a
    host override that would open the listed paths too."""
    import_urls(api, "adult", ["mixed.example/adult-section"])
    learner = await api.user("l1", "learner")
    it = await api.user("it1", "it_support")
    boss = await api.user("boss", "manager")
    status, body = await api.call("POST", "/api/v1/unblock-requests", learner, json={
        "url": "https://mixed.example/", "reason": "Health course"})
    assert status == 409, body
    assert body["error"]["code"] == "not_blocked" and body["error"]["field"] == "url"
    assert "is not blocked for you" in body["error"]["message"]
    _, listing = await api.call("GET", "/api/v1/unblock-requests", it)
    assert listing["items"] == []
    _, audit = await api.call("GET", "/api/v1/audit?action=unblock.file", boss)
    assert audit["items"] == []
    assert await read_overrides(api.redis, api.keys) == []
    assert await _decide(api, "https://mixed.example/adult-section/1", "l1") is Action.BLOCK

    # The blocked page itself can be asked for; approving it opens only below its entry.
    status, body = await api.call("POST", "/api/v1/unblock-requests", learner, json={
        "url": "https://mixed.example/adult-section/page", "reason": "Health course"})
    assert status == 201 and body["request"]["target"] == "mixed.example/adult-section"
    _, detail = await api.call("GET", f"/api/v1/unblock-requests/{body['id']}", it)
    assert detail["approval"]["wider"] is False
    assert detail["approval"]["message"] == (
        "This opens mixed.example/adult-section and every page below it.")


async def test_approving_a_site_that_holds_other_listed_entries_says_what_it_opens(
        api: Api) -> None:
    import_list(api, "gambling", ["casino.example"])
    import_list(api, "vpn", ["vpn.casino.example"])
    import_urls(api, "adult", ["casino.example/x/rated", "casino.example/adult-corner"])
    import_urls(api, "iwf", ["casino.example/abuse"])
    learner = await api.user("l1", "learner")
    it = await api.user("it1", "it_support")
    status, filed = await api.call("POST", "/api/v1/unblock-requests", learner, json={
        "url": CASINO, "reason": "Business studies"})
    assert status == 201 and filed["request"]["target"] == "casino.example"
    request_id = filed["id"]
    expected = ("This opens the whole site casino.example, every page and subdomain of it, "
                "including 2 listed paths: casino.example/adult-corner (Pornography and sexual "
                "content), casino.example/x/rated (Pornography and sexual content) and 1 listed "
                "subdomain: vpn.casino.example (VPNs, proxies and filter circumvention). Those 3 "
                "entries are each blocked by their own list entry today, not by the entry this "
                "request is about.")
    _, detail = await api.call("GET", f"/api/v1/unblock-requests/{request_id}", it)
    approval = detail["approval"]
    assert approval["wider"] is True and approval["message"] == expected
    assert approval["blocked_by"] == "casino.example" and approval["also_opens_count"] == 3
    assert "casino.example/abuse" not in str(approval)  # an illegal entry is never opened

    status, out = await api.call("POST", f"/api/v1/unblock-requests/{request_id}/approve", it,
                                 json={"scope": "user"})
    assert status == 409 and out["error"]["code"] == "confirm_wider"
    assert out["error"]["message"].startswith(expected)
    assert await read_overrides(api.redis, api.keys) == []
    _, still = await api.call("GET", f"/api/v1/unblock-requests/{request_id}", it)
    assert still["request"]["status"] == "open"
    assert await _decide(api, "http://casino.example/adult-corner", "l1") is Action.BLOCK

    status, out = await api.call("POST", f"/api/v1/unblock-requests/{request_id}/approve", it,
                                 json={"scope": "user", "confirm_wider": True})
    assert status == 200, out
    assert out["opens"]["message"] == expected
    for url in (CASINO, "http://casino.example/adult-corner", "http://vpn.casino.example/"):
        assert await _decide(api, url, "l1") is Action.ALLOW, url
    assert await _decide(api, "http://casino.example/abuse/1", "l1") is Action.BLOCK


async def test_a_host_blocked_by_an_override_shows_the_listed_paths_an_approval_opens(
        api: Api) -> None:
    """The centre blocked a mixed site for learners; approving one learner's request for it
    would open its listed paths as well, and the reviewer is told so."""
    import_urls(api, "adult", ["mixed.example/adult-section"])
    learner = await api.user("l1", "learner")
    it = await api.user("it1", "it_support")
    status, _ = await api.call("POST", "/api/v1/overrides", it, json={
        "target": "mixed.example", "action": "block", "scope": "group", "subject": "learner"})
    assert status == 201
    status, filed = await api.call("POST", "/api/v1/unblock-requests", learner, json={
        "url": "https://mixed.example/", "reason": "Health course"})
    assert status == 201 and filed["request"]["target"] == "mixed.example"
    _, detail = await api.call("GET", f"/api/v1/unblock-requests/{filed['id']}", it)
    assert detail["approval"]["wider"] is True
    assert detail["approval"]["message"] == (
        "This opens the whole site mixed.example, every page and subdomain of it, including "
        "1 listed path: mixed.example/adult-section (Pornography and sexual content). That "
        "entry is blocked by its own list entry today, not by the entry this request is about.")
    status, out = await api.call("POST", f"/api/v1/unblock-requests/{filed['id']}/approve",
                                 it, json={"scope": "user"})
    assert status == 409 and out["error"]["code"] == "confirm_wider"


async def test_a_request_that_is_no_longer_blocked_cannot_be_approved(api: Api) -> None:
    t = await _setup(api)
    _, filed = await api.call("POST", "/api/v1/unblock-requests", t["l1"],
                              json={"url": CASINO, "reason": "project"})
    status, _ = await api.call("POST", "/api/v1/overrides", t["it"], json={
        "target": "casino.example", "action": "allow", "scope": "user", "subject": "l1"})
    assert status == 201
    status, out = await api.call("POST", f"/api/v1/unblock-requests/{filed['id']}/approve",
                                 t["it"], json={"scope": "everyone", "confirm_wider": True})
    assert status == 409 and out["error"]["code"] == "not_blocked"
    assert "no longer blocked for l1" in out["error"]["message"]
    assert [o.id for o in await read_overrides(api.redis, api.keys)] != [f"req-{filed['id']}"]
    assert await _decide(api, CASINO, "l2") is Action.BLOCK


async def test_where_the_admin_has_no_rule_a_block_the_proxy_logged_for_that_learner_counts(
        api: Api) -> None:
    """An admin installed without the proxies' lists cannot tell what they block: the
    learner's own logged block of the very address is the evidence, and nothing else is."""
    learner = await api.user("l1", "learner")
    it = await api.user("it1", "it_support")
    mine = hit("l1", host="casino.example", path="/slots")
    theirs = hit("l2", host="casino.example", path="/slots")
    await api.write_hits([mine, theirs])
    for url, hit_id in ((CASINO, theirs.id), ("http://casino.example/", mine.id),
                        ("http://other.example/slots", mine.id)):
        status, body = await api.call("POST", "/api/v1/unblock-requests", learner, json={
            "url": url, "reason": "project", "hit_id": hit_id})
        assert status == 409 and body["error"]["code"] == "not_blocked", (url, body)
    status, body = await api.call("POST", "/api/v1/unblock-requests", learner, json={
        "url": CASINO, "reason": "project", "hit_id": mine.id})
    assert status == 201 and body["request"]["target"] == "casino.example"
    status, out = await api.call("POST", f"/api/v1/unblock-requests/{body['id']}/approve", it,
                                 json={"scope": "user"})
    assert status == 200, out


async def test_an_allow_rule_never_opens_a_whole_public_suffix(api: Api) -> None:
    """``co.uk`` or ``github.io`` is not a site: allowing it would open every site under it.
    A list that names one (``github.io``) still gets approvals for the one site asked for."""
    import_list(api, "gambling", ["casino.example", "github.io"])
    it = await api.user("it1", "it_support")
    for target in ("co.uk", "https://github.io/", "github.io/some/path", "CO.UK.", ".ac.uk",
                   "https://user@co.uk:443/"):
        status, out = await api.call("POST", "/api/v1/overrides", it, json={
            "target": target, "action": "allow", "scope": "everyone"})
        assert status == 400 and "public suffix" in out["error"]["message"], (target, out)
    assert await read_overrides(api.redis, api.keys) == []
    # Blocking under a public suffix is the centre's choice, and stays possible.
    status, _ = await api.call("POST", "/api/v1/overrides", it, json={
        "target": "co.uk", "action": "block", "scope": "everyone"})
    assert status == 201

    learner = await api.user("l1", "learner")
    wanted = "https://coursework-site.github.io/notes"
    assert await _decide(api, wanted, "l1") is Action.BLOCK
    status, filed = await api.call("POST", "/api/v1/unblock-requests", learner, json={
        "url": wanted, "reason": "My tutor's course notes"})
    assert status == 201 and filed["request"]["target"] == "coursework-site.github.io"
    status, body = await api.call(
        "POST", f"/api/v1/unblock-requests/{filed['id']}/approve", it,
        json={"scope": "user", "note": "Course notes", "confirm_wider": True})
    assert status == 200, body
    assert await _decide(api, wanted, "l1") is Action.ALLOW
    assert await _decide(api, "https://another-site.github.io/", "l1") is Action.BLOCK
