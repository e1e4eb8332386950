"""Scale-out: two centres' proxies and one admin on one Redis. The whole unblock flow runs
across them: a learner is blocked, files a request with the hit id, IT approves it with
scope=user, that learner is allowed on both proxies within a second while another learner is
still blocked, the approval expires, and hits carry their centre id for the API's filter."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis as sync_redis

from store.accounts import create_user
from store.connection import connect
from store.keys import Keys
from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    curl,
    free_port,
    stop_process,
    wait_until_healthy,
    write_config,
)

PASSWORD = "scale out password"


class Admin:
    def __init__(self, directory: Path, config: Path, redis_url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        log = (directory / "admin.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
             str(directory / "admin-data"), "--redis-url", redis_url, "admin", "--listen",
             f"127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT)
        log_file = directory / "admin.log"
        wait_until_healthy(self.process, f"{self.base}/readyz", "admin",
                           lambda: log_file.read_text(errors="replace"))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.base + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def login(self, name: str) -> str:
        status, body = self.call("POST", "/api/v1/auth/login",
                                 {"username": name, "password": PASSWORD})
        assert status == 200, body
        return str(body["token"])

    def stop(self) -> None:
        stop_process(self.process)


def hit_id_of(result_headers: str) -> str:
    return result_headers.lower().split("x-esafety-hit-id: ")[1].split()[0].upper()


def test_unblock_flow_across_two_centres_on_one_redis(tmp_path: Path, redis_url: str,
                                                      origins: Origins) -> None:
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")

    async def users() -> None:
        client = connect(redis_url)
        for name, role, group in (("learner1", "learner", "learner"),
                                  ("learner2", "learner", "learner"),
                                  ("it1", "it_support", "staff"),
                                  ("manager1", "manager", "staff")):
            await create_user(client, keys, name, role, group, PASSWORD)
        await client.aclose()

    asyncio.run(users())
    proxies = []
    for centre in ("centre-a", "centre-b"):
        directory = tmp_path / centre
        directory.mkdir()
        config = write_config(directory / "esafety.yaml", keys.prefix, centre_id=centre,
                              networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
        proxy = ProxyProcess(directory / "data", config, redis_url, origins)
        assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
        proxies.append(proxy.start())
    admin_config = write_config(tmp_path / "admin.yaml", keys.prefix, centre_id="provider")
    admin = Admin(tmp_path, admin_config, redis_url)
    try:
        learner1, learner2 = ("learner1", PASSWORD), ("learner2", PASSWORD)
        blocked = curl(proxies[0], "http://poker-palace.test/tables", user=learner1)
        assert blocked.status == 403
        hit_id = hit_id_of(blocked.headers)
        assert curl(proxies[1], "http://poker-palace.test/", user=learner2).status == 403

        token = admin.login("learner1")
        status, filed = admin.call("POST", "/api/v1/unblock-requests", {
            "url": "http://poker-palace.test/tables", "reason": "Maths project on probability",
            "hit_id": hit_id}, token)
        assert status == 201, filed
        it_token = admin.login("it1")
        started = time.monotonic()
        status, approved = admin.call(
            "POST", f"/api/v1/unblock-requests/{filed['id']}/approve",
            {"scope": "user", "note": "For the probability project"}, it_token)
        assert status == 200, approved
        live: dict[int, float] = {}
        while len(live) < 2 and time.monotonic() - started < 5:
            for index, proxy in enumerate(proxies):
                if index not in live and curl(proxy, "http://poker-palace.test/tables",
                                              user=learner1).status == 200:
                    live[index] = time.monotonic() - started
        assert sorted(live) == [0, 1] and max(live.values()) <= 1.0, live
        for proxy in proxies:  # the approval is for learner1 only
            assert curl(proxy, "http://poker-palace.test/tables", user=learner2).status == 403
        status, mine = admin.call("GET", "/api/v1/unblock-requests", token=token)
        assert status == 200
        assert [r["status"] for r in mine["items"]] == ["approved"]

        # A second approval with an expiry: open, then blocked again once it has passed.
        second = curl(proxies[1], "http://slots-galore.test/", user=learner1)
        status, filed2 = admin.call("POST", "/api/v1/unblock-requests", {
            "url": "http://slots-galore.test/", "reason": "Research",
            "hit_id": hit_id_of(second.headers)}, token)
        assert status == 201
        expires = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        status, body = admin.call("POST", f"/api/v1/unblock-requests/{filed2['id']}/approve",
                                  {"scope": "user", "expires_at": expires}, it_token)
        assert status == 200, body
        deadline = time.monotonic() + 2
        while curl(proxies[1], "http://slots-galore.test/", user=learner1).status != 200:
            assert time.monotonic() < deadline
        time.sleep(3.2)
        assert curl(proxies[1], "http://slots-galore.test/", user=learner1).status == 403

        # Hits carry the centre id, and the API filters by it.
        manager = admin.login("manager1")
        deadline = time.monotonic() + 20
        sites: set[str] = set()
        while time.monotonic() < deadline:
            status, page = admin.call("GET", "/api/v1/hits?site=centre-a&action=block",
                                      token=manager)
            sites = {h["site"] for h in page["items"]}
            if status == 200 and any(h["id"] == hit_id for h in page["items"]):
                break
            time.sleep(0.3)
        assert sites == {"centre-a"}
        status, page_b = admin.call("GET", "/api/v1/hits?site=centre-b&action=block",
                                    token=manager)
        assert status == 200 and page_b["items"]
        assert {h["site"] for h in page_b["items"]} == {"centre-b"}
    finally:
        admin.stop()
        for proxy in proxies:
            proxy.stop()
        client = sync_redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=keys.prefix + "*"):
            client.delete(key)
        client.close()
