"""Safeguarding alerts: a hit written as the proxy writes it reaches a real webhook receiver
and a real SMTP server on loopback; repeats are grouped; the DSL acknowledges."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from admin_api.workers.alert_consumer import GROUP
from deployment.config import AlertSettings
from esafety.embedded_redis import free_port
from store.records import HitRecord
from tests.harness.api import Api, ApiFactory, hit

SECRET = "webhook-secret-for-tests"
GUARD_SECONDS = 30  # only a guard against a hang; nothing here asserts how fast it was


@dataclass
class Webhook:
    server: TestServer
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = field(default_factory=asyncio.Queue)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    app = web.Application()
    hook = Webhook(TestServer(app, host="127.0.0.1"))

    async def receive(request: web.Request) -> web.Response:
        await hook.received.put((dict(request.headers), await request.read()))
        return web.json_response({"ok": True})

    app.router.add_post("/hook", receive)
    await hook.server.start_server()
    try:
        yield hook
    finally:
        await hook.server.close()


class Inbox:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.messages: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.loop.call_soon_threadsafe(self.messages.put_nowait, envelope.content)
        return "250 OK"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox(asyncio.get_running_loop())
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def _alerting_app(make_api: ApiFactory, webhook: Webhook, smtp_port: int) -> Api:
    return await make_api(
        environ={"ESAFETY_WEBHOOK_SECRET": SECRET},
        alerts=AlertSettings(webhook_url=str(webhook.server.make_url("/hook")),
                             webhook_secret_env="ESAFETY_WEBHOOK_SECRET",
                             email_to=("dsl@centre.example",),
                             email_from="esafety@centre.example",
                             smtp_host="127.0.0.1", smtp_port=smtp_port,
                             group_window_seconds=900))


async def _consumed(api: Api, hits: list[HitRecord]) -> None:
    """Wait until the alert consumer group has handled everything written so far."""
    last = (await api.redis.xrevrange(api.keys.hits, count=1))[0][0]
    while True:
        groups = await api.redis.xinfo_groups(api.keys.hits)
        info = next(g for g in groups if g["name"] == GROUP)
        if info["last-delivered-id"] == last and int(info["pending"]) == 0:
            return
        await asyncio.sleep(0.05)


async def test_extremism_hit_raises_a_signed_webhook_and_an_email(
        make_api: ApiFactory, webhook: Webhook, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    api = await _alerting_app(make_api, webhook, port)
    dsl = await api.user("dsl1", "dsl")
    extremist = hit("l1", host="extreme.example", category="extremism", alert=True)
    await api.write_hits([hit("l1"), extremist])

    headers, body = await asyncio.wait_for(webhook.received.get(), GUARD_SECONDS)
    expected = "sha256=" + hmac.new(SECRET.encode(), headers["X-Esafety-Timestamp"].encode()
                                    + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Esafety-Signature"], expected)
    payload = json.loads(body)
    assert payload["type"] == "safeguarding_alert"
    assert payload["user"] == "l1" and payload["category"] == "extremism"
    assert payload["hit_ids"] == [extremist.id] and payload["count"] == 1

    raw = await asyncio.wait_for(inbox.messages.get(), GUARD_SECONDS)
    mail = message_from_bytes(raw)
    assert mail["To"] == "dsl@centre.example"
    assert mail["Subject"] == (f"[esafety] Safeguarding alert {payload['alert_id']}: "
                               "Extremism and radicalisation")

    status, listing = await api.call("GET", "/api/v1/alerts?status=open", dsl)
    assert status == 200 and [a["id"] for a in listing["items"]] == [payload["alert_id"]]
    while True:  # the delivery outcome is recorded just after sending
        _, detail = await api.call("GET", f"/api/v1/alerts/{payload['alert_id']}", dsl)
        if set(detail["alert"]["delivery"].values()) == {"sent"}:
            break
        await asyncio.sleep(0.05)
    assert detail["alert"]["delivery"] == {"webhook": "sent", "email": "sent"}
    assert {c: d["state"] for c, d in detail["alert"]["deliveries"].items()} == {
        "webhook": "delivered", "email": "delivered"}
    # context: the user's recent blocked hits, from the log store
    recent = detail["recent_blocked_hits"]
    assert len(recent) == 2 and extremist.id in {h["id"] for h in recent}
    assert {h["user"] for h in recent} == {"l1"}


async def test_repeats_are_grouped_and_acknowledging_closes_the_group(
        make_api: ApiFactory, webhook: Webhook, smtp: tuple[Inbox, int]) -> None:
    _, port = smtp
    api = await _alerting_app(make_api, webhook, port)
    dsl = await api.user("dsl1", "dsl")
    manager = await api.user("m1", "manager")
    first = [hit("l1", host=f"extreme{i}.example", category="extremism", alert=True)
             for i in range(4)]
    await api.write_hits(first)
    await _consumed(api, first)
    status, listing = await api.call("GET", "/api/v1/alerts", dsl)
    [alert] = listing["items"]
    assert alert["count"] == 4 and len(alert["hosts"]) == 4
    await asyncio.wait_for(webhook.received.get(), GUARD_SECONDS)
    assert webhook.received.empty()  # one delivery for the group, not four

    status, out = await api.call("POST", f"/api/v1/alerts/{alert['id']}/acknowledge", manager,
                                 json={"note": "spoke to learner"})
    assert status == 403  # managers read alerts; the DSL handles them
    status, out = await api.call("POST", f"/api/v1/alerts/{alert['id']}/acknowledge", dsl,
                                 json={"note": "Spoke to the learner and their tutor."})
    assert status == 200 and out["alert"]["status"] == "acknowledged"
    assert out["alert"]["acknowledged_by"] == "dsl1"
    status, _ = await api.call("POST", f"/api/v1/alerts/{alert['id']}/acknowledge", dsl,
                                   json={"note": "again"})
    assert status == 409

    later = [hit("l1", host="extreme9.example", category="extremism", alert=True)]
    await api.write_hits(later)
    await _consumed(api, later)
    _, listing = await api.call("GET", "/api/v1/alerts", dsl)
    assert [a["count"] for a in listing["items"]] == [1, 4]


async def test_a_watched_search_term_raises_an_alert(
        make_api: ApiFactory, webhook: Webhook, smtp: tuple[Inbox, int]) -> None:
    _, port = smtp
    api = await _alerting_app(make_api, webhook, port)
    dsl = await api.user("dsl1", "dsl")
    # the hit exactly as the proxy's record stage writes a watch-list search
    # (proxy_addons.search_watch.watch_decision): allowed, extremism, alerting, watch-list rule
    search = replace(hit("l2", host="www.google.com", category="extremism", action="allow",
                         alert=True, search_terms="how to join banned group", path="/search"),
                     rule="watch-list", source="", severity="high")
    await api.write_hits([search])
    _, body = await asyncio.wait_for(webhook.received.get(), GUARD_SECONDS)
    payload = json.loads(body)
    assert payload["search_terms"] == ["how to join banned group"]
    assert payload["category"] == "extremism" and payload["hosts"] == ["www.google.com"]
    _, listing = await api.call("GET", "/api/v1/alerts?category=extremism", dsl)
    assert [a["user"] for a in listing["items"]] == ["l2"]


async def test_ordinary_blocks_raise_no_alert(api: Api) -> None:
    dsl = await api.user("dsl1", "dsl")
    hits = [hit("l1"), hit("l2", category="games")]
    await api.write_hits(hits)
    await _consumed(api, hits)
    _, listing = await api.call("GET", "/api/v1/alerts", dsl)
    assert listing["items"] == []


async def test_a_new_alert_consumer_starts_from_the_last_day_not_the_whole_history(
        make_api: ApiFactory) -> None:
    """Upgrading an existing deployment must not flood the DSL with years of old alerts."""
    api = await make_api()
    old = hit("learner1", category="extremism", alert=True, ts=time.time() - 3 * 86400)
    recent = hit("learner2", category="extremism", alert=True, ts=time.time() - 3600)
    await api.redis.xgroup_destroy(api.keys.hits, "alerts")
    await api.redis.delete(api.keys.hits)
    for entry in (old, recent):  # stored before any admin ran, with their own ids
        await api.redis.xadd(api.keys.hits, dict(zip(entry.field_names(), entry.to_fields(),
                                                     strict=True)),
                             id=f"{int(entry.ts * 1000)}-0")
    await api.state.alerts.ensure_group()
    dsl = await api.user("dsl1", "dsl")
    deadline = time.monotonic() + 10
    users: set[str] = set()
    while time.monotonic() < deadline and not users:
        status, page = await api.call("GET", "/api/v1/alerts", dsl)
        assert status == 200
        users = {a["user"] for a in page["items"]}
        await asyncio.sleep(0.2)
    assert users == {"learner2"}
