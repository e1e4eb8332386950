"""After a real run of the proxy, the admin app and a backup, every file in the data directory
that holds personal data (hits, user names, overrides) is readable by its owner only."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

from aiohttp import web

from admin_api.app import LOG_STORE_FILE, build_app
from admin_api.context import STATE, AdminSettings
from categories.overrides import Override, OverrideScope
from deployment.config import Config
from deployment.instance import Instance
from esafety.embedded_redis import EmbeddedRedis
from proxy_addons.policy_copy import POLICY_COPY_FILE
from store.connection import connect
from store.keys import Keys
from store.policy_state import save_override
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, curl, write_config

PUBLIC = ("snapshots/", "lists/", "ca/mitmproxy-ca-cert.", "ca/mitmproxy-dhparam.pem", "proxy-")
"""Block lists and their snapshots, the CA's certificate (given to every device) and the
test's own logs of the proxy's output are not personal data."""


def _modes(data_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(data_dir)): oct(p.stat().st_mode & 0o777)
            for p in data_dir.rglob("*") if p.is_file()}


def _wait_for_file(path: Path, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.is_file(), path


def test_every_file_holding_personal_data_is_0600(tmp_path: Path, origins: Origins) -> None:
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()
    config = write_config(tmp_path / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    proxy = ProxyProcess(tmp_path / "data", config, server.url, origins)
    data_dir = proxy.data_dir
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    spool = data_dir / "spool" / "hits-0.log"
    previous_umask = os.umask(0o022)  # a permissive umask must not matter
    try:
        proxy.start()

        async def override() -> None:
            client = connect(server.url)
            await save_override(client, keys, Override(
                id="ov-1", target="allowed.test", action="allow", scope=OverrideScope.USER,
                subject="learner7"))
            await client.aclose()

        asyncio.run(override())
        _wait_for_file(data_dir / POLICY_COPY_FILE)
        server.stop()
        for n in range(5):  # Redis down: the hits wait in the spool
            assert curl(proxy, f"http://casino-royale.test/{n}").status == 403
        proxy.stop()
        server.start()
        proxy.start()  # the spool is compacted (rewritten) at this start
        assert spool.is_file()
        backup = data_dir / "backup.jsonl.gz"
        done = proxy.cli("backup", "--out", str(backup))
        assert done.returncode == 0, done.stderr

        async def admin_run() -> dict[str, str]:
            instance = Instance(Config(redis_prefix=keys.prefix), data_dir, server.url)
            app = build_app(AdminSettings(instance=instance, redis_url=server.url, keys=keys,
                                          environ={}))
            runner = web.AppRunner(app)
            await runner.setup()
            try:
                await app[STATE].feeder.catch_up()
                return _modes(data_dir)  # while the log store is open, with -wal and -shm
            finally:
                await runner.cleanup()

        modes = asyncio.run(admin_run())
    finally:
        os.umask(previous_umask)
        proxy.stop()
        server.stop()
    personal = {"spool/hits-0.log", POLICY_COPY_FILE, "backup.jsonl.gz", LOG_STORE_FILE,
                LOG_STORE_FILE + "-wal", LOG_STORE_FILE + "-shm", "ca/mitmproxy-ca.pem"}
    assert personal <= set(modes), sorted(modes)
    private = {name: mode for name, mode in modes.items() if not name.startswith(PUBLIC)}
    assert set(private.values()) == {"0o600"}, private
    print("0600:", ", ".join(sorted(private)))
