"""Outages: a full disk under the spool (running and at a restart), and a Redis restart with
AOF."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path

import redis as sync_redis

from categories.overrides import Override, OverrideScope
from esafety.embedded_redis import EmbeddedRedis
from store import unblock_requests
from store.connection import connect
from store.keys import Keys
from store.policy_state import read_overrides, save_override
from store.redis_store import Store
from tests.harness.proxy import PROXY_LISTS, ProxyProcess, curl, start_origins, write_config


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


def _blocked_ids(proxy: ProxyProcess, n: int, start: int) -> list[str]:
    ids = []
    for i in range(start, start + n):
        result = curl(proxy, f"http://bet-now.test/{i}")
        assert result.status == 403  # filtering never stops
        ids.append(result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0])
    return ids


def test_a_restart_with_the_spool_disk_full_still_filters_and_loses_nothing(
        tmp_path: Path, security_figures: dict[str, str]) -> None:
    """The proxy restarts with undelivered hits in its spool and no room on the disk for the
    compacted copy (the copy's file is /dev/full: every write fails with ENOSPC). It used to
    crash-loop there, so filtering stopped and the spooled hits were lost. Now it starts,
    filters, raises the alarm, and delivers every hit once space and Redis return, even
    across a further restart (the spool it kept uncompacted replays them all)."""
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()
    origins = start_origins(tmp_path)
    config = write_config(tmp_path / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    proxy = ProxyProcess(tmp_path / "data", config, server.url, origins)
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    spool = proxy.data_dir / "spool"
    try:
        proxy.start()
        server.stop()
        seen = _blocked_ids(proxy, 20, 0)  # Redis down: these are only in the spool
        proxy.stop()
        assert (spool / "hits-0.log").stat().st_size > 0
        with (spool / "hits-0.log").open("a") as torn:
            torn.write('H ["2026')  # and a crash cut the last write short
        (spool / "hits-0.tmp").symlink_to("/dev/full")  # the disk is full for the copy

        proxy.start()  # used to crash here
        code, body = proxy.status("/readyz")
        assert code == 503 and "hit spool not writable" in body  # the alarm
        assert 'esafety_proxy_spool_writable{worker="0"} 0' in proxy.status("/metrics")[1]
        assert f'esafety_proxy_hit_queue_depth{{worker="0"}} {len(seen)}' in (
            proxy.status("/metrics")[1])  # the spooled hits are held in memory
        assert "not compacted" in proxy.log_text()
        seen += _blocked_ids(proxy, 10, 20)  # blocked stays blocked
        for i in range(5):
            assert curl(proxy, f"http://allowed.test/{i}").status == 200  # allowed allowed
        assert not (spool / "hits-0.tmp").exists()  # no half-written copy left behind
        proxy.stop()  # Redis still down: every hit so far is only in the uncompacted spool

        proxy.start()  # space has returned (the copy's file is gone): compacted now
        assert "not compacted" not in proxy.log_text().rpartition("Loading script")[2]
        server.start()  # and Redis returns
        ids = _wait_for(server.url, keys, seen)
        lost = len(set(seen) - set(ids))
        assert lost == 0 and len(ids) == len(set(ids)) == len(seen)
        assert ids == seen  # in order
        proxy.stop()
        proxy.start()  # and a later restart replays nothing twice
        assert _blocked_ids(proxy, 1, 30) and len(_wait_for(server.url, keys, seen)) >= 30
        time.sleep(1.0)
        assert len(set(_ids(server.url, keys))) == len(_ids(server.url, keys)) == 31
        security_figures["outage: restart with the spool disk full"] = (
            f"{len(seen)} hits, {lost} lost, 0 doubled; filtering never stopped")
    finally:
        proxy.stop()
        origins.stop()
        server.stop()


def test_redis_killed_and_restarted_with_aof_keeps_requests_and_overrides(
        tmp_path: Path, security_figures: dict[str, str]) -> None:
    """Written through the store API the admin uses (overrides, unblock requests and their
    decisions), then Redis is killed with SIGKILL: every acknowledged write is still there."""
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()

    async def write() -> tuple[set[str], dict[str, str]]:
        client = connect(server.url)
        written: dict[str, str] = {}
        for n in range(50):
            await save_override(client, keys, Override(
                id=f"ov-{n}", target=f"site{n}.example", action="allow",
                scope=OverrideScope.USER, subject=f"learner{n}"))
            request, merged = await Store(client, keys).unblock_requests.create_or_merge(
                user=f"learner{n}", group="learner",
                url=f"http://site{n}.example/page", target=f"site{n}.example",
                reason="needed for coursework", hit_id=None)
            assert not merged
            if n % 5 == 0:
                request = replace(request, status=unblock_requests.APPROVED,
                                  decided_by="it1", override_id=f"ov-{n}")
                await Store(client, keys).unblock_requests.save_decision(request)
            written[request.id] = request.status
        await client.aclose()
        return {f"ov-{n}" for n in range(50)}, written

    overrides_written, requests_written = asyncio.run(write())
    server.kill()  # SIGKILL: no clean shutdown, no final save
    server.start()

    async def read() -> tuple[set[str], dict[str, str]]:
        client = connect(server.url)
        overrides = {o.id for o in await read_overrides(client, keys)}
        requests = {r.id: r.status
                    for r in await Store(client, keys).unblock_requests.records.each()}
        await client.aclose()
        return overrides, requests

    try:
        overrides, requests = asyncio.run(read())
    finally:
        server.stop()
    assert overrides == overrides_written
    assert requests == requests_written and len(requests) == 50
    lost_overrides = len(overrides_written - overrides)
    lost_requests = len(set(requests_written) - set(requests))
    security_figures["outage: Redis kill -9 and restart (AOF)"] = (
        f"50 overrides and 50 unblock requests (10 approved) written through the store API, "
        f"{lost_overrides} and {lost_requests} lost")


def test_redis_down_under_load_then_every_hit_arrives_exactly_once(
        tmp_path: Path, security_figures: dict[str, str]) -> None:
    """Redis is down for OUTAGE_SECONDS (3 in `make test`, 60 in `make soak`) while clients keep
    browsing; every request is logged (log_allowed), filtering never stops, and afterwards every
    hit is in Redis exactly once."""
    import os
    import threading

    outage = float(os.environ.get("ESAFETY_OUTAGE_SECONDS", "3"))
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()
    origins = start_origins(tmp_path)
    config = write_config(tmp_path / "esafety.yaml", keys.prefix, logging={"log_allowed": True},
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    proxy = ProxyProcess(tmp_path / "data", config, server.url, origins)
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    proxy.start()
    blocked_seen: list[str] = []
    answered = {"allowed": 0, "blocked": 0, "wrong": 0}
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set() and n < 20_000:
            if n % 2:
                result = curl(proxy, f"http://slots-galore.test/{n}")
                if result.status == 403:
                    answered["blocked"] += 1
                    blocked_seen.append(
                        result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0])
                else:
                    answered["wrong"] += 1
            else:
                ok = curl(proxy, f"http://allowed.test/{n}").status == 200
                answered["allowed" if ok else "wrong"] += 1
            n += 1

    workers = [threading.Thread(target=load) for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
        time.sleep(1)
        server.stop()
        time.sleep(outage)
        server.start()
        time.sleep(1)
        stop.set()
        for worker in workers:
            worker.join(60)
        total = answered["allowed"] + answered["blocked"]
        deadline = time.monotonic() + 30
        stored: list[str] = []
        while time.monotonic() < deadline:
            stored = _ids(server.url, keys)
            if len(stored) >= total:
                break
            time.sleep(0.3)
        assert answered["wrong"] == 0  # filtering continued throughout
        assert set(blocked_seen) <= set(stored)
        assert len(stored) == total and len(set(stored)) == total  # all, exactly once
        security_figures[f"outage: Redis down {outage:g} s under load"] = (
            f"{total} requests ({answered['blocked']} blocked), {total - len(set(stored))} "
            "hits lost, 0 doubled")
    finally:
        stop.set()
        proxy.stop()
        origins.stop()
        server.stop()
