"""Alert delivery through the store's outbox: a webhook receiver that is down for 30 seconds
still gets the alert, exactly once, even when the admin service restarts meanwhile; a delivery
that cannot be made before its expiry is shown as expired; two hosts never claim one entry."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from deployment.config import AlertSettings
from esafety.embedded_redis import free_port
from store.alerts import DELIVERED, EXPIRED, PENDING
from store.keys import Keys
from store.redis_store import Store
from tests.harness.api import Api, ApiFactory, hit

OUTAGE_SECONDS = 30.0
"""The done-when of the issue: the receiver is down this long."""


class Receiver:
    """A real webhook receiver on a fixed loopback port that can be stopped and started."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()

        async def receive(request: web.Request) -> web.Response:
            self.bodies.append(json.loads(await request.read()))
            return web.json_response({"ok": True})

        app.router.add_post("/hook", receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _alert_delivery(api: Api, token: str, user: str | None = None) -> dict[str, Any]:
    """The webhook delivery record of the one alert (of ``user``'s, when given)."""
    query = f"?user={user}" if user else ""
    _, listing = await api.call("GET", f"/api/v1/alerts{query}", token)
    [alert] = listing["items"]
    return dict(alert["deliveries"]["webhook"])


async def _until(check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.1)


async def test_a_webhook_down_for_30_seconds_gets_the_alert_once_across_an_admin_restart(
        make_api: ApiFactory) -> None:
    receiver = Receiver(free_port())
    settings = AlertSettings(webhook_url=receiver.url, retry_first_seconds=1.0,
                             retry_max_seconds=2.0)
    await receiver.start()
    try:
        api = await make_api(alerts=settings)
        dsl = await api.user("dsl1", "dsl")

        # The receiver is up: the first alert is delivered straight away.
        first = hit("l1", host="extreme.example", category="extremism", alert=True)
        await api.write_hits([first])

        async def first_delivered() -> bool:
            _, listing = await api.call("GET", "/api/v1/alerts?user=l1", dsl)
            items = listing["items"]
            return bool(items) and items[0]["deliveries"]["webhook"]["state"] == DELIVERED

        await _until(first_delivered, 20)
        assert [body["hit_ids"] for body in receiver.bodies] == [[first.id]]
        assert (await _alert_delivery(api, dsl, "l1"))["attempts"] == 1

        # The receiver goes down for 30 s; a second alert (another learner) is raised then.
        await receiver.stop()
        down_since = time.monotonic()
        second = hit("l2", host="extreme.example", category="extremism", alert=True)
        await api.write_hits([second])

        async def second_failed() -> bool:
            _, listing = await api.call("GET", "/api/v1/alerts?user=l2", dsl)
            items = listing["items"]
            return bool(items) and items[0]["deliveries"]["webhook"]["attempts"] >= 1

        await _until(second_failed, 20)
        record = await _alert_delivery(api, dsl, "l2")
        assert record["state"] == PENDING and record["last_error"] == "ClientConnectorError"
        assert record["next_attempt_at"] > time.time() - 5

        await api.client.close()  # the admin service stops while the receiver is down
        await asyncio.sleep(1.0)
        api = await make_api(alerts=settings)  # and starts again, with the same Redis

        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
        assert time.monotonic() - down_since >= OUTAGE_SECONDS
        record = await _alert_delivery(api, dsl, "l2")
        assert record["state"] == PENDING and record["attempts"] >= 3  # kept on trying
        assert [body["hit_ids"] for body in receiver.bodies] == [[first.id]]
        back_at = time.time()
        await receiver.start()  # back up, on the same address

        async def second_delivered() -> bool:
            return (await _alert_delivery(api, dsl, "l2"))["state"] == DELIVERED

        await _until(second_delivered, 20)
        await asyncio.sleep(3.0)  # any second copy (of either alert) would arrive by now
        assert [body["hit_ids"] for body in receiver.bodies] == [[first.id], [second.id]]
        assert [body["user"] for body in receiver.bodies] == ["l1", "l2"]
        record = await _alert_delivery(api, dsl, "l2")
        assert record["next_attempt_at"] is None
        assert back_at <= record["delivered_at"] <= time.time()
        first_record = await _alert_delivery(api, dsl, "l1")
        assert first_record["state"] == DELIVERED and first_record["attempts"] == 1
        assert await api.state.store.alerts.outbox_size() == 0
    finally:
        await receiver.stop()


async def test_a_delivery_past_its_expiry_is_given_up_and_shown_as_expired(
        make_api: ApiFactory) -> None:
    receiver = Receiver(free_port())  # never started
    api = await make_api(alerts=AlertSettings(
        webhook_url=receiver.url, retry_first_seconds=0.5, retry_max_seconds=0.5,
        delivery_expiry_hours=2 / 3600))
    dsl = await api.user("dsl1", "dsl")
    await api.write_hits([hit("l1", category="extremism", alert=True)])

    async def expired() -> bool:
        _, listing = await api.call("GET", "/api/v1/alerts", dsl)
        items = listing["items"]
        return bool(items) and items[0]["deliveries"]["webhook"]["state"] == EXPIRED

    await _until(expired, 20)
    _, listing = await api.call("GET", "/api/v1/alerts", dsl)
    assert listing["items"][0]["delivery"] == {"webhook": "expired"}
    assert await api.state.store.alerts.outbox_size() == 0


async def test_two_hosts_claiming_at_once_never_share_an_entry(redis: Any, keys: Keys) -> None:
    first, second = Store(redis, keys), Store(redis, keys)
    for n in range(40):
        await first.alerts.record_hit(hit(f"l{n}", category="extremism", alert=True), 900,
                                      ("webhook", "email"))
    now = time.time()
    a, b = await asyncio.gather(first.alerts.claim_due(now, 60, 100),
                                second.alerts.claim_due(now, 60, 100))
    assert len(a) + len(b) == 80 and not set(a) & set(b)
    # leased: nothing is due again until the lease ends, then all of it is
    assert await first.alerts.claim_due(now + 1, 60, 100) == []
    assert len(await second.alerts.claim_due(now + 61, 60, 100)) == 80
