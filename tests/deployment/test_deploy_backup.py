"""Backup, then restore into an empty Redis, reproduces the deployment's data."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import redis as sync_redis

from categories.overrides import Override, OverrideScope
from esafety.embedded_redis import EmbeddedRedis
from store.accounts import create_user, verify_password
from store.connection import connect
from store.hits import HitWriter
from store.keys import Keys
from store.policy_state import read_overrides, save_override
from store.records import HitRecord


def esafety(redis_url: str, prefix: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp / f"config-{abs(hash(redis_url))}.yaml"
    config.write_text(f"redis_prefix: '{prefix}'\n")
    return subprocess.run([sys.executable, "-m", "esafety.cli", "--config", str(config),
                           "--redis-url", redis_url, "--data-dir", str(tmp / "data"), *args],
                          capture_output=True, text=True, timeout=60)


def snapshot_of(url: str, prefix: str) -> dict[str, object]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    out: dict[str, object] = {}
    for key in client.scan_iter(match=prefix + "*"):
        kind = client.type(key)
        name = key[len(prefix):]
        if kind == "string":
            out[name] = client.get(key)
        elif kind == "hash":
            out[name] = client.hgetall(key)
        elif kind == "set":
            out[name] = sorted(client.smembers(key))
        elif kind == "zset":
            out[name] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            out[name] = client.xrange(key)
    client.close()
    return out


def test_backup_then_restore_into_an_empty_redis_reproduces_the_data(
        tmp_path: Path, redis_url: str, keys: Keys) -> None:
    async def seed() -> None:
        client = connect(redis_url)
        await create_user(client, keys, "it-lead", "admin", "staff", "a long password 1")
        await create_user(client, keys, "learner7", "learner", "learner", "a long password 2")
        await save_override(client, keys, Override(
            id="ov-9", target="example.org/course", action="allow",
            scope=OverrideScope.GROUP, subject="learner", expires_at=time.time() + 3600))
        await client.hset(keys.unblock("41"), mapping={"id": "41", "status": "open"})
        await client.zadd(keys.unblock_index, {"41": 1795400000.0})
        await client.xadd(keys.audit, {"actor": "it-lead", "action": "override.create"})
        await client.set(keys.token("deadbeef"), "it-lead", ex=3600)
        writer = HitWriter(client, keys, hits_days=90, counters_days=365)
        await writer.write_batch("b1", [("20261123", HitRecord(
            id="20261123-AAAAAAAA", ts=time.time(), user="learner7", group="learner",
            client_ip="10.0.0.7", site="main", host="casino.test", path="/", action="block",
            category="gambling", rule="category", source="x", severity="medium", alert=False,
            decrypted=False, method="GET"))])
        await client.aclose()

    asyncio.run(seed())
    before = snapshot_of(redis_url, keys.prefix)
    backup_file = tmp_path / "esafety-backup.jsonl.gz"
    made = esafety(redis_url, keys.prefix, tmp_path, "backup", "--out", str(backup_file))
    assert made.returncode == 0, made.stderr
    assert backup_file.stat().st_mode & 0o777 == 0o600

    with EmbeddedRedis(tmp_path / "empty", persistent=False) as empty:
        restored = esafety(empty.url, keys.prefix, tmp_path, "restore", str(backup_file))
        assert restored.returncode == 0, restored.stderr
        after = snapshot_of(empty.url, keys.prefix)
        # Everything but sign-in tokens, batch markers and raw hits comes back identical.
        expected = {k: v for k, v in before.items()
                    if not k.startswith(("token:", "usertokens:", "hitbatch:", "hitref:"))
                    and k != "hits" and k != "policy:version"}
        assert {k: v for k, v in after.items() if k != "policy:version"} == expected
        assert "count:20261123" in after  # counters for reports are kept

        async def usable() -> None:
            client = connect(empty.url)
            assert await verify_password(client, keys, "it-lead", "a long password 1")
            [override] = await read_overrides(client, keys)
            assert override.target == "example.org/course" and override.subject == "learner"
            await client.aclose()

        asyncio.run(usable())
        # A second restore over existing data is refused unless forced.
        again = esafety(empty.url, keys.prefix, tmp_path, "restore", str(backup_file))
        assert again.returncode == 2 and "--force" in again.stderr
        assert esafety(empty.url, keys.prefix, tmp_path, "restore", str(backup_file),
                       "--force").returncode == 0


def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path, redis_url: str,
                                                     keys: Keys) -> None:
    bogus = tmp_path / "bogus.gz"
    bogus.write_bytes(b"not gzip at all")
    result = esafety(redis_url, keys.prefix, tmp_path, "restore", str(bogus))
    assert result.returncode == 2 and "cannot read" in result.stderr
    assert json.dumps(snapshot_of(redis_url, keys.prefix)) == "{}"
