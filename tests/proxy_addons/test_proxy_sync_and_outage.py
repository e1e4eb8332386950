"""Live policy across proxies, and hits that survive Redis outages and crashes."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import redis as sync_redis

from categories.overrides import Override, OverrideScope
from esafety.embedded_redis import EmbeddedRedis
from proxy_addons.hitlog import HitQueue, Spool, hit_line, read_spool
from store.connection import connect
from store.hits import HitWriter
from store.keys import Keys
from store.policy_state import delete_override, save_override
from store.records import HitRecord
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, curl, write_config

IDLE_SECONDS = 3.0
STOP_SECONDS = 15.0


def make_proxy(directory: Path, redis_url: str, origins: Origins, keys: Keys) -> ProxyProcess:
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    process = ProxyProcess(directory / "data", config, redis_url, origins)
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stderr
    return process


def test_override_published_to_redis_is_live_on_two_proxies_within_a_second(
        tmp_path: Path, redis_url: str, origins: Origins, keys: Keys) -> None:
    first = make_proxy(tmp_path / "a", redis_url, origins, keys).start()
    second = make_proxy(tmp_path / "b", redis_url, origins, keys).start()
    try:
        for proxy in (first, second):
            assert curl(proxy, "http://warez-site.test/").status == 403
        override = Override(id="ov-1", target="warez-site.test", action="allow",
                            scope=OverrideScope.EVERYONE, subject=None, created_by="it1",
                            created_at=time.time(), note="Approved for the media course")

        async def publish() -> None:
            client = connect(redis_url)
            await save_override(client, keys, override)
            await client.aclose()

        started = time.monotonic()
        asyncio.run(publish())
        live: dict[int, float] = {}
        while len(live) < 2 and time.monotonic() - started < 5:
            for index, proxy in enumerate((first, second)):
                if index not in live and curl(proxy, "http://warez-site.test/").status == 200:
                    live[index] = time.monotonic() - started
        assert sorted(live) == [0, 1], live
        assert max(live.values()) <= 1.0, live

        async def withdraw() -> None:
            client = connect(redis_url)
            await delete_override(client, keys, "ov-1")
            await client.aclose()

        asyncio.run(withdraw())
        deadline = time.monotonic() + 2
        statuses = [0, 0]
        while time.monotonic() < deadline and statuses != [403, 403]:
            statuses = [curl(p, "http://warez-site.test/").status for p in (first, second)]
        assert statuses == [403, 403]
    finally:
        first.stop()
        second.stop()


def test_a_proxy_that_missed_the_message_catches_up(tmp_path: Path, redis_url: str,
                                                     origins: Origins, keys: Keys) -> None:
    """The change is made while the proxy is down; on start it reads the version and applies."""
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    override = Override(id="ov-2", target="casino-royale.test", action="allow",
                        scope=OverrideScope.EVERYONE, subject=None)
    client.hset(keys.overrides, "ov-2", __import__("json").dumps(override.to_dict()))
    client.incr(keys.policy_version)  # changed with no message published at all
    client.close()
    proxy = make_proxy(tmp_path, redis_url, origins, keys).start()
    try:
        assert curl(proxy, "http://casino-royale.test/").status == 200
    finally:
        proxy.stop()


def _stream_ids(url: str, keys: Keys) -> list[str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return [fields["id"] for _i, fields in client.xrange(keys.hits)]
    finally:
        client.close()


def test_hits_written_during_a_redis_outage_arrive_once_afterwards(
        tmp_path: Path, origins: Origins) -> None:
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()
    proxy = make_proxy(tmp_path / "p", server.url, origins, keys).start()
    try:
        expected: list[str] = []

        def block(n: int) -> None:
            for i in range(n):
                result = curl(proxy, f"http://casino-royale.test/game/{i}")
                assert result.status == 403  # filtering continues throughout
                expected.append(result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0])

        block(5)
        server.stop()
        block(25)
        code, body = proxy.status("/readyz")
        assert code == 503 and "redis unreachable" in body
        server.start()
        block(5)
        deadline = time.monotonic() + 15
        ids: list[str] = []
        while time.monotonic() < deadline:
            ids = [i.lower() for i in _stream_ids(server.url, keys)]
            if len(ids) >= len(expected):
                break
            time.sleep(0.2)
        assert sorted(ids) == sorted(expected)  # every hit, none doubled
        assert len(set(ids)) == len(ids) == 35
        assert ids == expected  # and in order
    finally:
        proxy.stop()
        server.stop()


def _hit(n: int) -> HitRecord:
    return HitRecord(id=f"20261123-{n:08d}", ts=1795400000.0 + n, user="u", group="learner",
                     client_ip="10.0.0.1", site="main", host="casino.test", path="/", action="block",
                     category="gambling", rule="category", source="x", severity="medium",
                     alert=False, decrypted=False, method="GET")


def test_spool_replay_after_a_crash_mid_batch_is_exactly_once(tmp_path: Path, redis_url: str,
                                                               keys: Keys) -> None:
    """A worker killed after writing a batch to Redis but before recording it: the replay
    re-sends the batch under the same id and the store ignores it."""
    spool_path = tmp_path / "hits-0.log"
    lines = [hit_line("20261123", _hit(n)) for n in range(10)]
    # Batch b1 (hits 0-3) confirmed, b2 (4-6) sent but not confirmed, 7-9 never batched,
    # and the last line torn by the crash.
    spool_path.write_text("".join(lines[:4]) + "B w-1 4\n" + "C w-1\n" + "".join(lines[4:7])
                          + "B w-2 3\n" + "".join(lines[7:]) + 'H ["2026')
    state = read_spool(spool_path)
    assert [b for b, _ in state.pending] == ["w-2"]
    assert [h.id for _d, h in state.unbatched] == [_hit(n).id for n in (7, 8, 9)]
    assert state.damaged_lines == 1

    async def scenario() -> list[str]:
        client = connect(redis_url)
        writer = HitWriter(client, keys, hits_days=90, counters_days=365)
        # What the dead worker managed: batch w-2 reached Redis.
        await writer.write_batch("w-2", [("20261123", _hit(n)) for n in (4, 5, 6)])
        queue = HitQueue(Spool(spool_path), writer.write_batch, flush_interval=0.05,
                         worker_id="w")
        queue.start()
        await asyncio.sleep(0.5)
        await queue.stop()
        entries = await client.xrange(keys.hits)
        await client.aclose()
        return [fields["id"] for _i, fields in entries]

    ids = asyncio.run(scenario())
    assert ids == [_hit(n).id for n in range(4, 10)]
    assert spool_path.stat().st_size == 0  # everything confirmed: the spool is emptied


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_proxy_without_redis_idles_quietly_and_stops_on_sigterm(
        tmp_path: Path, origins: Origins, keys: Keys) -> None:
    """No Redis configured: hits stay in the spool. An idle worker used to spin at 100 % CPU
    in the hit queue once it held a hit, and then ignored SIGTERM."""
    config = write_config(tmp_path / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    proxy = ProxyProcess(tmp_path / "data", config, None, origins)
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    proxy.start()
    try:
        assert proxy.process is not None
        ids = []
        for n in range(3):
            result = curl(proxy, f"http://casino-royale.test/{n}")
            assert result.status == 403
            ids.append(result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0])
        assert curl(proxy, "http://allowed.test/").status == 200
        time.sleep(1.0)
        before, started = _cpu_seconds(proxy.process.pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        share = (_cpu_seconds(proxy.process.pid) - before) / (time.monotonic() - started)
        assert share < 0.3, f"idle proxy used {share:.0%} of a core"
        stop_started = time.monotonic()
        proxy.process.terminate()
        proxy.process.wait(STOP_SECONDS)  # raises TimeoutExpired if SIGTERM is ignored
        stopped_in = time.monotonic() - stop_started
    finally:
        proxy.stop()
    spooled = read_spool(proxy.data_dir / "spool" / "hits-0.log")
    assert [h.id.lower() for _d, h in spooled.unbatched] == ids  # kept for a later Redis
    assert "stopped" in proxy.log_text()
    print(f"idle CPU {share:.1%} of a core; stopped {stopped_in:.1f} s after SIGTERM")
