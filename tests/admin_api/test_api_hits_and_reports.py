"""Access logs (filters, cursor pages, CSV export incl. pseudonymised), accidental-hit reports,
the summary and quarterly reports, and retention."""

from __future__ import annotations

import csv
import io
import json
import socket
import stat
import time
from dataclasses import replace
from datetime import datetime
from urllib.parse import urlsplit

from admin_api.pseudonymiser import KEY_FILE
from admin_api.workers.housekeeping import apply_retention
from tests.harness.api import TZ, Api, ApiFactory, hit, import_list

DAY = 86400.0


async def test_filters_and_cursor_pages(api: Api) -> None:
    manager = await api.user("m1", "manager")
    now = time.time()
    hits = [hit(f"l{i % 3}", host=f"site{i}.example", ts=now - i * 60,
                category="gambling" if i % 2 else "games") for i in range(25)]
    hits.append(hit("s1", group="staff", host="old.example", ts=now - 10 * DAY))
    await api.write_hits(hits)

    seen: list[str] = []
    cursor = None
    while True:
        path = "/api/v1/hits?limit=10" + (f"&cursor={cursor}" if cursor else "")
        status, page = await api.call("GET", path, manager)
        assert status == 200
        seen += [h["id"] for h in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [h.id for h in sorted(hits, key=lambda h: -h.ts)]

    _, body = await api.call("GET", "/api/v1/hits?user=l1&category=gambling", manager)
    assert body["items"] and all(h["user"] == "l1" and h["category"] == "gambling"
                                 for h in body["items"])
    _, body = await api.call("GET", "/api/v1/hits?group=staff", manager)
    assert [h["host"] for h in body["items"]] == ["old.example"]
    since = datetime.fromtimestamp(now - 2 * DAY, TZ).strftime("%Y-%m-%d")  # the centre's day
    _, body = await api.call("GET", f"/api/v1/hits?from={since}", manager)
    assert len(body["items"]) == 25
    _, body = await api.call("GET", "/api/v1/hits?q=SITE12", manager)
    assert [h["host"] for h in body["items"]] == ["site12.example"]
    _, body = await api.call("GET", "/api/v1/hits?host=Site3.Example&action=block", manager)
    assert [h["host"] for h in body["items"]] == ["site3.example"]


async def test_csv_export_and_pseudonymised_export(api: Api) -> None:
    manager = await api.user("m1", "manager")
    it = await api.user("it1", "it_support")
    await api.write_hits([hit("l1", host="a.example"), hit("l2", host="b.example"),
                          hit("l1", host="c.example", search_terms="=HYPERLINK(1)")])
    status, _ = await api.call("GET", "/api/v1/hits.csv", it)
    assert status == 403

    async with api.client.get("/api/v1/hits.csv?user=l1", headers=api.auth(manager)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in resp.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert {r["user"] for r in rows} == {"l1"} and len(rows) == 2
    assert {r["host"] for r in rows} == {"a.example", "c.example"}
    formula = next(r for r in rows if r["host"] == "c.example")
    assert formula["search_terms"] == "'=HYPERLINK(1)"  # never a spreadsheet formula

    async with api.client.get("/api/v1/hits.csv?pseudonymise=true",
                              headers=api.auth(manager)) as resp:
        text = await resp.text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert "l1" not in {r["user"] for r in rows} and "10.0.20.5" not in text
    pseudonyms = {r["host"]: r["user"] for r in rows}
    assert pseudonyms["a.example"] == pseudonyms["c.example"] != pseudonyms["b.example"]
    assert all(p.startswith("u-") for p in pseudonyms.values())
    key_file = api.data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    _, audit = await api.call("GET", "/api/v1/audit?action=hits.export", manager)
    assert [e["after"]["pseudonymise"] for e in audit["items"]] == [True, False]


async def test_accidental_hit_report_is_linked_to_the_logged_hit(api: Api) -> None:
    learner = await api.user("l1", "learner")
    other = await api.user("l2", "learner")
    dsl = await api.user("dsl1", "dsl")
    blocked = hit("l1", host="casino.example", category="gambling")
    await api.write_hits([blocked])
    status, body = await api.call("POST", "/api/v1/accident-reports", learner, json={
        "hit_id": blocked.id.lower(), "what_happened": "A pop-up opened it while I was revising."})
    assert status == 201
    assert "not in trouble" in body["message"]
    report_id = body["id"]
    assert body["report"]["hit"]["host"] == "casino.example"

    status, _ = await api.call("POST", "/api/v1/accident-reports", other, json={
        "hit_id": blocked.id, "what_happened": "not mine"})
    assert status == 404
    status, _ = await api.call("POST", "/api/v1/accident-reports", learner, json={"what_happened": "?"})
    assert status == 400

    status, listing = await api.call("GET", "/api/v1/accident-reports?status=open", dsl)
    [report] = listing["items"]
    assert report["what_happened"].startswith("A pop-up") and report["hit"]["user"] == "l1"
    _, mine = await api.call("GET", "/api/v1/accident-reports", other)
    assert mine["items"] == []
    status, reviewed = await api.call("POST", f"/api/v1/accident-reports/{report_id}/review", dsl,
                                      json={"note": "List entry is correct; no concern."})
    assert status == 200 and reviewed["report"]["status"] == "reviewed"
    _, listing = await api.call("GET", "/api/v1/accident-reports?status=open", dsl)
    assert listing["items"] == []


async def test_summary_report_from_daily_counters(api: Api) -> None:
    manager = await api.user("m1", "manager")
    now = time.time()
    await api.write_hits([hit("l1", category="gambling", ts=now - 2 * DAY),
                          hit("l2", category="gambling"), hit("l2", category="games"),
                          hit("s1", group="staff", action="allow", category="")])
    _, body = await api.call("GET", "/api/v1/reports/summary?group_by=category", manager)
    rows = {r["key"]: r for r in body["rows"]}
    assert rows["gambling"]["block"] == 2 and rows["games"]["block"] == 1
    assert body["totals"] == {"block": 3, "allow": 1, "outside_hours": 0}
    assert body["top_blocked_sites"] == [{"host": "casino.example", "blocks": 3}]
    _, body = await api.call("GET", "/api/v1/reports/summary?group_by=group", manager)
    assert {r["key"]: r["total"] for r in body["rows"]} == {"learner": 3, "staff": 1}
    _, body = await api.call("GET", "/api/v1/reports/summary?group_by=day", manager)
    assert sum(r["block"] for r in body["rows"]) == 3 and len(body["rows"]) == 2
    status, _ = await api.call("GET", "/api/v1/reports/summary?from=2026-02-30", manager)
    assert status == 400


async def test_quarterly_report_is_accessible_printable_html(api: Api) -> None:
    manager = await api.user("m1", "manager")
    learner = await api.user("l1", "learner")
    await api.write_hits([hit("l1"), hit("l2", category="extremism", alert=True,
                                          host="bad.example")])
    import_list(api, "gambling", ["casino.example"])
    status, _ = await api.call("POST", "/api/v1/unblock-requests", learner,
                               json={"url": "casino.example", "reason": "project"})
    assert status == 201
    today = datetime.now(TZ)  # the centre's calendar, not the machine's
    quarter = f"{today.year}Q{(today.month - 1) // 3 + 1}"
    async with api.client.get(f"/api/v1/reports/quarterly?quarter={quarter}",
                              headers=api.auth(manager)) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "style-src 'sha256-" in resp.headers["Content-Security-Policy"]
        html = await resp.text()
    assert html.startswith("<!DOCTYPE html>") and '<html lang="en-GB">' in html
    assert html.count("<h1>") == 1
    for heading in ("Blocked requests by category", "Most blocked sites",
                    "Safeguarding alerts and how they were handled", "Unblock requests",
                    "Accidental-hit reports"):
        assert f"<h2>{heading}</h2>" in html
    assert html.count("<svg") == html.count("<title id=") >= 3
    assert 'role="img"' in html and "<caption>" in html and 'scope="col"' in html
    assert "casino.example" in html and "l1" not in html.replace("l1", "", 0).split("<main>")[0]
    assert ">l1<" not in html and ">l2<" not in html  # aggregates only, no names


async def test_retention_removes_old_hits_from_redis_and_the_log_store(make_api: ApiFactory
                                                                      ) -> None:
    api = await make_api(retention_hits_days=30)
    manager = await api.user("m1", "manager")
    now = time.time()
    await api.write_hits([hit("l1", ts=now - 40 * DAY), hit("l1", ts=now)])
    # the log store judges by the hit's time; the stream by arrival (its entry ids)
    done = await apply_retention(api.state, now=now)
    assert done["stream"] == 0 and done["log_store"] == 1
    _, body = await api.call("GET", "/api/v1/hits", manager)
    assert [round(h["ts"]) for h in body["items"]] == [round(now)]
    done = await apply_retention(api.state, now=now + 31 * DAY)
    assert done["stream"] == 2 and done["log_store"] == 1
    assert await api.redis.xlen(api.keys.hits) == 0


def _accepts_anonymous_clients(redis_url: str) -> bool:
    """Whether the Redis behind ``redis_url`` answers a client that never signed in."""
    parts = urlsplit(redis_url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 3) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


async def test_metrics_and_health(api: Api, redis_url: str) -> None:
    admin = await api.user("root", "admin")
    await api.write_hits([hit("l1")])
    await api.call("GET", "/api/v1/hits", admin)
    status, text = await api.call("GET", "/metrics")
    assert status == 200
    assert 'esafety_blocks_today{category="gambling"} 1' in text
    assert "esafety_policy_version 0" in text
    assert "esafety_alert_queue_pending" in text
    assert 'route="/api/v1/hits",status="200"' in text
    status, body = await api.call("GET", "/readyz")
    if _accepts_anonymous_clients(redis_url):  # e.g. REDIS_URL naming an open server
        assert status == 200 and body["status"] == "ready" and body["warnings"]
    else:  # the suite's own embedded Redis is locked: nothing to warn about
        assert status == 200 and body["status"] == "ready" and "warnings" not in body


async def test_a_report_attaches_only_the_reporters_own_hits(api: Api) -> None:
    """Own hits, and unowned hits from the reporter's address within the hour, attach; another
    user's hit, an unowned hit from elsewhere, or one from the same address hours apart are
    refused exactly like an unknown reference, and nothing of them reaches any report."""
    learner = await api.user("l1", "learner")
    dsl = await api.user("dsl1", "dsl")
    now = time.time()
    here = "127.0.0.1"  # the address the test client files its reports from
    own = hit("l1", host="own.example", path="/own-page")
    device_here = replace(hit("", host="shared-pc.example", path="/just-now", ts=now - 600),
                          client_ip=here)
    refused = {
        "another user's hit": replace(hit("l2", host="other-user.example", path="/secret-a"),
                                      client_ip="10.0.30.7"),
        "an unowned hit from another address": replace(
            hit("", host="other-device.example", path="/secret-b"), client_ip="10.0.30.8"),
        "an unowned hit from this address two hours earlier": replace(
            hit("", host="earlier-pc.example", path="/secret-c", ts=now - 2 * 3600),
            client_ip=here),
    }
    await api.write_hits([own, device_here, *refused.values()])

    status, body = await api.call("POST", "/api/v1/accident-reports", learner, json={
        "hit_id": own.id, "what_happened": "A link in a revision forum."})
    assert status == 201 and body["report"]["hit"]["path"] == "/own-page"
    status, body = await api.call("POST", "/api/v1/accident-reports", learner, json={
        "hit_id": device_here.id, "what_happened": "On the library PC."})
    assert status == 201 and body["report"]["hit"]["host"] == "shared-pc.example"
    assert "reporter_address" not in body["report"]

    for why, record in refused.items():
        status, body = await api.call("POST", "/api/v1/accident-reports", learner, json={
            "hit_id": record.id, "what_happened": "Tell me about it"})
        assert status == 404, why
        assert body["error"]["code"] == "not_found", why
        assert "your own block page" in body["error"]["message"], why
        text = json.dumps(body)
        for secret in (record.client_ip, record.path, record.host, record.user or "l2"):
            assert secret not in text, (why, secret)

    secrets = [r.path for r in refused.values()] + [r.host for r in refused.values()]
    for token in (learner, dsl):
        status, listing = await api.call("GET", "/api/v1/accident-reports", token)
        assert status == 200 and len(listing["items"]) == 2
        assert {r["hit"]["host"] for r in listing["items"]} == {"own.example", "shared-pc.example"}
        for report in listing["items"]:
            _, shown = await api.call("GET", f"/api/v1/accident-reports/{report['id']}", token)
            assert not any(s in json.dumps(shown) for s in secrets)


async def test_a_hit_logged_after_the_report_is_attached_only_if_it_is_the_reporters(
        api: Api) -> None:
    learner = await api.user("l1", "learner")
    dsl = await api.user("dsl1", "dsl")
    mine = hit("l1", host="late-mine.example", path="/mine")
    theirs = replace(hit("l2", host="late-theirs.example", path="/theirs"), client_ip="10.0.30.9")
    unowned_elsewhere = replace(hit("", host="late-device.example", path="/device"),
                                client_ip="10.0.30.10")
    filed = {}
    for record in (mine, theirs, unowned_elsewhere):  # not logged yet: the report is taken
        status, body = await api.call("POST", "/api/v1/accident-reports", learner, json={
            "hit_id": record.id, "what_happened": "It just happened"})
        assert status == 201 and body["report"]["hit"] is None
        filed[record.host] = body["id"]
    await api.write_hits([mine, theirs, unowned_elsewhere])
    _, shown = await api.call("GET", f"/api/v1/accident-reports/{filed['late-mine.example']}", dsl)
    assert shown["report"]["hit"]["path"] == "/mine"
    for record in (theirs, unowned_elsewhere):
        _, shown = await api.call("GET", f"/api/v1/accident-reports/{filed[record.host]}", dsl)
        assert shown["report"]["hit"] is None
        assert record.client_ip not in json.dumps(shown) and record.path not in json.dumps(shown)
