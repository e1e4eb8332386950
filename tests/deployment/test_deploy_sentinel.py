"""A provider's Redis behind Sentinel: ``redis+sentinel://`` URLs reach the current master."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import redis as sync_redis

from esafety.embedded_redis import EmbeddedRedis, find_redis_server
from store.connection import connect
from store.keys import Keys
from store.policy_state import bump_version, read_version
from tests.harness.proxy import free_port


def test_a_sentinel_url_reaches_the_master(tmp_path: Path, keys: Keys) -> None:
    master = EmbeddedRedis(tmp_path / "master", persistent=False, prefix=keys.prefix).start()
    sentinel_port = free_port()
    config = tmp_path / "sentinel.conf"
    # The master is locked (ACL users); the Sentinel signs in to it as the admin user.
    password = master.password_file("admin").read_text().strip()
    config.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                      f"sentinel monitor esafety-master 127.0.0.1 {master.port} 1\n"
                      f"sentinel auth-user esafety-master esafety-admin\n"
                      f"sentinel auth-pass esafety-master {password}\n")
    config.chmod(0o600)
    sentinel = subprocess.Popen([find_redis_server(), str(config), "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                probe = sync_redis.Redis(port=sentinel_port, socket_timeout=1)
                if probe.sentinel_get_master_addr_by_name("esafety-master"):
                    break
            except sync_redis.RedisError:
                time.sleep(0.1)
        # The master's password comes from its 0600 file, never from the URL.
        url = (f"redis+sentinel://esafety-admin@127.0.0.1:{sentinel_port}/esafety-master/0"
               f"?password_file={master.password_file('admin')}")

        async def through_sentinel() -> int:
            client = connect(url)
            await bump_version(client, keys)
            version = await bump_version(client, keys)
            assert await read_version(client, keys) == version
            await client.aclose()
            return version

        assert asyncio.run(through_sentinel()) == 2
        direct = sync_redis.Redis.from_url(master.url, decode_responses=True)
        assert direct.get(keys.policy_version) == "2"  # it really was the master
        direct.close()
        # The CLI takes the same URL.
        done = subprocess.run([sys.executable, "-m", "esafety.cli", "--data-dir",
                               str(tmp_path / "data"), "--redis-url", url, "backup", "--out",
                               str(tmp_path / "backup.gz")], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        sentinel.terminate()
        sentinel.wait(10)
        master.stop()
