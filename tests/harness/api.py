"""Running the real admin app on a loopback socket for the API tests, plus small builders.

Each test gets its own key prefix (the ``keys`` fixture) and data directory, so tests never
see each other's users, hits or alerts and can run in any order.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from admin_api.app import build_app
from admin_api.context import STATE, AdminSettings, AdminState
from deployment.config import Config
from deployment.instance import Instance
from esafety.cli import import_path
from store.accounts import create_user, issue_token
from store.hits import HitWriter
from store.keys import Keys
from store.login_limits import LoginLimits
from store.records import HitRecord, day_of, new_hit_id

PASSWORD = "correct horse battery"
TZ = ZoneInfo("Europe/London")


@dataclasses.dataclass
class Api:
    client: TestClient[Any, Any]
    redis: aioredis.Redis
    keys: Keys
    data_dir: Path

    @property
    def state(self) -> AdminState:
        return self.client.server.app[STATE]  # type: ignore[union-attr]

    async def user(self, name: str, role: str, group: str | None = None) -> str:
        """Create a user and return a bearer token for them."""
        group = group or ("learner" if role == "learner" else "staff")
        await create_user(self.redis, self.keys, name, role, group, PASSWORD)
        return await issue_token(self.redis, self.keys, name)

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, token: str | None = None,
                   **kwargs: Any) -> tuple[int, Any]:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers.update(self.auth(token))
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def write_hits(self, hits: list[HitRecord]) -> None:
        """Write hits exactly as the proxy does (HitWriter), then let the log store catch up."""
        writer = HitWriter(self.redis, self.keys, hits_days=90, counters_days=730)
        await writer.write_batch(uuid.uuid4().hex, [(day_of(h.ts, TZ), h) for h in hits])
        await self.state.feeder.catch_up()


def hit(user: str = "learner1", *, host: str = "casino.example", category: str = "gambling",
        action: str = "block", group: str = "learner", ts: float | None = None,
        alert: bool = False, search_terms: str = "", path: str = "/", site: str = "main"
        ) -> HitRecord:
    ts = time.time() if ts is None else ts
    return HitRecord(id=new_hit_id(ts, TZ), ts=round(ts, 3), user=user, group=group,
                     client_ip="10.0.20.5", site=site, host=host, path=path, action=action,
                     category=category, rule="category" if action == "block" else "default",
                     source=f"ut1/{category}/domains" if category else "",
                     severity="critical" if alert else "medium", alert=alert, decrypted=False,
                     method="GET", search_terms=search_terms)


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(redis_url: str, keys: Keys, redis: aioredis.Redis, tmp_path: Path
                   ) -> AsyncIterator[ApiFactory]:
    """Start the real app with a config (keyword overrides of :class:`Config`)."""
    clients: list[TestClient[Any, Any]] = []

    async def start(environ: dict[str, str] | None = None,
                    login_limits: LoginLimits | None = None, run_workers: bool = True,
                    **config: Any) -> Api:
        data_dir = tmp_path / f"data{len(clients)}"
        instance = Instance(dataclasses.replace(Config(), **config), data_dir, redis_url)
        settings = AdminSettings(instance=instance, redis_url=redis_url, keys=keys,
                                 environ=environ or {}, run_workers=run_workers,
                                 login_limits=login_limits or LoginLimits())
        client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
        await client.start_server()
        clients.append(client)
        return Api(client, redis, keys, data_dir)

    try:
        yield start
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    return await make_api()


def import_list(api: Api, list_name: str, domains: list[str]) -> None:
    """Import a small block list into the app's data directory (as ``esafety lists import``)."""
    source = api.data_dir.parent / f"{list_name}-source.txt"
    source.write_text("\n".join(domains) + "\n")
    import_path(api.state.settings.instance, source, f"test-{list_name}", list_name, "plain")
