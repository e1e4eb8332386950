"""Keys written before the hash tag (``esafety:hits``) move once to their names now
(``{esafety}:hits``), with their data, and never over a key that is already there."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from categories.overrides import Override, OverrideScope
from deployment.redis_url import running_embedded_url
from esafety.embedded_redis import EmbeddedRedis
from store.connection import connect
from store.key_migration import move_legacy_keys
from store.keys import Keys, hash_tagged, legacy_prefix
from store.policy_state import read_policy_state
from store.redis_acl import ADMIN_USER, role_rules
from tests.deployment.test_deploy_workers import _status_pair
from tests.harness.proxy import PROXY_LISTS, free_port, write_config
from tests.harness.ui import AdminProcess


def test_the_prefix_becomes_one_hash_tag_and_a_tagged_prefix_stays() -> None:
    assert Keys().prefix == "{esafety}:"
    assert Keys("esafety:").hits == "{esafety}:hits"
    assert Keys("centre-a:").day_counts("20260101") == "{centre-a}:count:20260101"
    assert hash_tagged("centre.a") == "{centre.a}"
    assert hash_tagged("a:b::") == "{a:b}::"
    assert Keys("{centre-a}:") == Keys("centre-a:")  # idempotent: a config may hold either
    assert hash_tagged("") == ""
    assert legacy_prefix("esafety:") == "esafety:" and legacy_prefix("{esafety}:") is None
    with pytest.raises(ValueError):
        hash_tagged(":")


def test_acl_patterns_name_the_tagged_keys() -> None:
    admin = role_rules("admin", "esafety:")
    assert "~{esafety}:*" in admin and "&{esafety}:*" in admin
    assert "~esafety:*" in admin  # the old spelling, so the admin service can move it
    proxy = " ".join(role_rules("proxy", "esafety:"))
    assert "%R~{esafety}:overrides" in proxy and "%W~{esafety}:hits" in proxy
    assert "esafety:" not in proxy.replace("{esafety}:", "")
    assert "~esafety:*" not in role_rules("admin", "{esafety}:")


async def _write_old_layout(client: aioredis.Redis, old: str) -> None:
    """What a version before the hash tag left in Redis under ``old`` (e.g. ``esafety:``)."""
    override = Override(id="ov-old", target="old.test", action="block",
                        scope=OverrideScope.EVERYONE, subject=None)
    await client.hset(old + "overrides", "ov-old", json.dumps(override.to_dict()))
    await client.set(old + "policy:version", "41")
    await client.hset(old + "user:it1", mapping={"name": "it1", "role": "admin", "group": "staff",
                                                 "password_hash": "x", "created_at": "1"})
    await client.sadd(old + "users", "it1")
    await client.xadd(old + "hits", {"id": "H1", "host": "bet.test"})
    await client.hset(old + "count:20260101", "block|gambling|learner|main", 3)
    await client.set(old + "token:abc", "it1", ex=3600)


async def test_old_keys_move_once_with_their_data_and_ttl(redis: aioredis.Redis,
                                                          keys: Keys) -> None:
    configured = keys.prefix.strip("{}:") + ":"  # what redis_prefix says: esafety-test-…:
    old = legacy_prefix(configured)
    assert old is not None and Keys(configured) == keys
    other = old + "centre-b:hits"  # another deployment's key that merely starts with ours
    try:
        await _write_old_layout(redis, old)
        await redis.xadd(other, {"id": "B1"})
        await redis.set(old + "seq:override", "5")
        await redis.set(keys.sequence("override"), "9")  # already written under the new name

        summary = await move_legacy_keys(redis, configured)
        assert summary.moved == 7
        assert summary.kept == (old + "seq:override",)
        state = await read_policy_state(redis, keys)
        assert state.version == 41 and [o.id for o in state.overrides] == ["ov-old"]
        assert await redis.sismember(keys.users, "it1")
        assert await redis.hget(keys.user("it1"), "role") == "admin"
        assert [f["id"] for _i, f in await redis.xrange(keys.hits)] == ["H1"]
        assert await redis.hget(keys.day_counts("20260101"), "block|gambling|learner|main") == "3"
        assert 0 < await redis.ttl(keys.token("abc")) <= 3600
        assert await redis.get(keys.sequence("override")) == "9"  # never overwritten
        assert await redis.exists(other) == 1
        assert [k async for k in redis.scan_iter(match=old + "*")] != []  # kept + other only

        again = await move_legacy_keys(redis, configured)
        assert again.moved == 0
        assert await move_legacy_keys(redis, keys.prefix) == type(again)(0, ())
    finally:
        async for key in redis.scan_iter(match=old + "*"):
            await redis.delete(key)


def test_migrate_keys_moves_an_old_embedded_redis_under_the_admin_acl_user(
        tmp_path: Path) -> None:
    """An embedded Redis written by an older version: ``esafety redis migrate-keys`` (and
    every start of ``esafety up`` and the admin service) moves its keys under the tag, and the
    admin ACL user may reach both spellings to do it."""
    data = tmp_path / "data"
    config = tmp_path / "esafety.yaml"
    config.write_text(f"redis_prefix: 'centre-{uuid.uuid4().hex[:6]}:'\n")
    prefix = config.read_text().split("'")[1]
    server = EmbeddedRedis(data / "redis", persistent=True, prefix=prefix).start()
    try:
        async def old_version() -> None:
            client = aioredis.Redis.from_url(server.url, decode_responses=True)
            await _write_old_layout(client, prefix)
            await client.aclose()

        asyncio.run(old_version())
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
        done = subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
             str(data), "redis", "migrate-keys"],
            env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"moved 7 keys from {prefix}* to {Keys(prefix).prefix}*" in done.stdout

        async def new_version() -> None:
            client = aioredis.Redis.from_url(server.url, decode_responses=True)
            keys = Keys(prefix)
            assert (await read_policy_state(client, keys)).version == 41
            assert await client.hget(keys.user("it1"), "role") == "admin"
            assert [k async for k in client.scan_iter(match=prefix + "*")] == []
            await client.aclose()

        asyncio.run(new_version())
        again = subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
             str(data), "redis", "migrate-keys"],
            env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "moved 0 keys" in again.stdout, again.stderr
    finally:
        server.stop()


def test_the_admin_service_moves_old_keys_when_it_starts(tmp_path: Path, redis_url: str) -> None:
    configured = f"esafety-old-{uuid.uuid4().hex[:8]}:"
    keys = Keys(configured)

    async def write_old() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        await _write_old_layout(client, configured)
        await client.aclose()

    asyncio.run(write_old())
    config = write_config(tmp_path / "esafety.yaml", configured)
    admin = AdminProcess(tmp_path / "data", config, redis_url, free_port())
    imported = admin.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr

    async def read_new() -> tuple[int, list[str], list[str]]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            state = await read_policy_state(client, keys)
            new = [k async for k in client.scan_iter(match=keys.prefix + "*")]
            old = [k async for k in client.scan_iter(match=configured + "*")]
            for key in new + old:
                await client.delete(key)
            return state.version, sorted(new), old
        finally:
            await client.aclose()

    try:
        admin.start()
    finally:
        admin.stop()
        version, new, old = asyncio.run(read_new())
    assert version == 41 and old == []
    assert keys.overrides in new and keys.hits in new and keys.user("it1") in new
    assert "moved 7 Redis keys" in admin.log_text()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def test_esafety_up_on_an_old_data_directory_moves_its_keys(tmp_path: Path) -> None:
    """The embedded Redis of an older ``esafety up``: the next ``esafety up`` moves its keys
    to the hash-tagged names before its workers use them."""
    prefix = f"centre-{uuid.uuid4().hex[:6]}:"
    data = tmp_path / "data"
    old = EmbeddedRedis(data / "redis", persistent=True, prefix=prefix).start()
    try:
        async def old_version() -> None:
            client = aioredis.Redis.from_url(old.url, decode_responses=True)
            await _write_old_layout(client, prefix)
            await client.aclose()

        asyncio.run(old_version())
    finally:
        old.stop()
    proxy_port, admin_port, status = free_port(), free_port(), _status_pair()
    config = write_config(tmp_path / "esafety.yaml", prefix,
                          listen={"proxy_status": f"127.0.0.1:{status}"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    up = subprocess.Popen(
        [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir", str(data),
         "up", "--proxy-listen", f"127.0.0.1:{proxy_port}",
         "--admin-listen", f"127.0.0.1:{admin_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _ready(f"http://127.0.0.1:{admin_port}/healthz"):
            assert up.poll() is None and time.monotonic() < deadline, "esafety up did not start"
            time.sleep(0.3)
        url = running_embedded_url(data / "redis", ADMIN_USER)
        assert url is not None
        keys = Keys(prefix)

        async def new_version() -> tuple[int, list[str]]:
            client = connect(url)
            try:
                state = await read_policy_state(client, keys)
                return state.version, [k async for k in client.scan_iter(match=prefix + "*")]
            finally:
                await client.aclose()

        version, left = asyncio.run(new_version())
        assert version == 41 and left == []
    finally:
        up.send_signal(signal.SIGTERM)
        _out, err = up.communicate(timeout=40)
    assert "moved 7 Redis keys" in err.decode(errors="replace")
