"""Outages: a full disk under the spool, and a Redis restart with AOF."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import redis as sync_redis

from categories.overrides import Override, OverrideScope
from esafety.embedded_redis import EmbeddedRedis
from store.connection import connect
from store.keys import Keys
from store.policy_state import read_overrides, save_override
from tests.proxy_harness import PROXY_LISTS, ProxyProcess, curl, start_origins, write_config


def _ids(url: str, keys: Keys) -> list[str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return [f["id"].lower() for _i, f in client.xrange(keys.hits)]
    finally:
        client.close()


def _wait_for(url: str, keys: Keys, expected: list[str], seconds: float = 15) -> list[str]:
    deadline = time.monotonic() + seconds
    ids: list[str] = []
    while time.monotonic() < deadline:
        ids = _ids(url, keys)
        if set(expected) <= set(ids):
            break
        time.sleep(0.2)
    return ids


def test_a_full_disk_under_the_spool_raises_the_alarm_and_loses_nothing(
        tmp_path: Path, security_figures: dict[str, str]) -> None:
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()
    origins = start_origins(tmp_path)
    config = write_config(tmp_path / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    proxy = ProxyProcess(tmp_path / "data", config, server.url, origins)
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    spool = proxy.data_dir / "spool"
    spool.mkdir(parents=True)
    (spool / "hits-0.log").symlink_to("/dev/full")  # every write fails with ENOSPC
    proxy.start()
    try:
        seen = []

        def blocked(n: int) -> None:
            for i in range(n):
                result = curl(proxy, f"http://bet-now.test/{i}")
                assert result.status == 403  # filtering never stops
                seen.append(result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0])

        blocked(5)
        code, body = proxy.status("/readyz")
        assert code == 503 and "hit spool not writable" in body  # the alarm
        assert 'esafety_proxy_spool_writable{worker="0"} 0' in proxy.status("/metrics")[1]
        assert "cannot be written" in proxy.log_text()
        assert set(seen) <= set(_wait_for(server.url, keys, seen))  # Redis took them directly
        server.stop()
        blocked(10)  # neither disk nor Redis: held in memory
        server.start()
        ids = _wait_for(server.url, keys, seen)
        lost = len(set(seen) - set(ids))
        assert lost == 0 and len(ids) == len(set(ids))
        security_figures["outage: disk-full spool"] = f"{len(seen)} hits, {lost} lost, 0 doubled"
    finally:
        proxy.stop()
        origins.stop()
        server.stop()


def test_redis_killed_and_restarted_with_aof_keeps_requests_and_overrides(
        tmp_path: Path, security_figures: dict[str, str]) -> None:
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()

    async def write() -> None:
        client = connect(server.url)
        for n in range(50):
            await save_override(client, keys, Override(
                id=f"ov-{n}", target=f"site{n}.example", action="allow",
                scope=OverrideScope.USER, subject=f"learner{n}"))
            await client.set(keys.unblock(str(n)), f'{{"id": "{n}", "status": "open"}}')
            await client.zadd(keys.unblock_index, {str(n): float(n)})
        await client.aclose()

    asyncio.run(write())
    server.kill()  # SIGKILL: no clean shutdown, no final save
    server.start()

    async def read() -> tuple[int, int]:
        client = connect(server.url)
        overrides = await read_overrides(client, keys)
        requests = await client.zcard(keys.unblock_index)
        await client.aclose()
        return len(overrides), requests

    try:
        overrides, requests = asyncio.run(read())
    finally:
        server.stop()
    assert (overrides, requests) == (50, 50)
    security_figures["outage: Redis kill -9 and restart (AOF)"] = (
        f"50 overrides and 50 unblock requests written, {50 - overrides} and "
        f"{50 - requests} lost")
