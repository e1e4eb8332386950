"""What ``esafety up`` prints at start for a centre that is not set up: a new one-time set-up
link at each start while no admin exists (the previous one stops working), none once an admin
exists, and a plain note while no block lists are loaded."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import redis.asyncio as aioredis

from deployment.config import Config
from deployment.instance import Instance
from esafety.first_run import first_run_lines
from store.accounts import create_user
from store.keys import Keys
from store.redis_store import Store
from tests.harness.list_fixtures import list_tree

TOKEN = re.compile(r"/setup\?token=([A-Za-z0-9_-]+)")


def _token(lines: list[str]) -> str | None:
    found = TOKEN.search("\n".join(lines))
    return found.group(1) if found else None


async def _valid(redis_url: str, keys: Keys, token: str) -> bool:
    store = Store(aioredis.Redis.from_url(redis_url), keys)
    try:
        return await store.setup_tokens.is_valid(token)
    finally:
        await store.aclose()


def test_each_start_prints_a_new_link_until_an_admin_exists(redis_url: str, keys: Keys,
                                                           tmp_path: Path) -> None:
    config = dataclasses.replace(Config(), redis_prefix=keys.prefix,
                                 admin_public_url="http://10.0.0.5:8090")
    instance = Instance(config, tmp_path / "data", redis_url)
    first = first_run_lines(instance, redis_url, ":8090")
    token = _token(first)
    assert token is not None and "http://10.0.0.5:8090/setup?token=" in "\n".join(first)
    assert "esafety users add NAME --role admin" in "\n".join(first)
    assert any("No block lists are loaded" in line for line in first)

    second = _token(first_run_lines(instance, redis_url, ":8090"))
    assert second is not None and second != token
    assert not asyncio.run(_valid(redis_url, keys, token))  # replaced by the new one
    assert asyncio.run(_valid(redis_url, keys, second))

    async def add_admin() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await create_user(client, keys, "head.it", "admin", "staff", "a long password")
        finally:
            await client.aclose()

    asyncio.run(add_admin())
    instance.list_store.import_path(list_tree("proxy_lists"),
                                    instance.load_policy().categories, source="fixtures")
    assert first_run_lines(instance, redis_url, ":8090") == []  # nothing left to say
    assert not asyncio.run(_valid(redis_url, keys, second))  # and no link works any more
