"""The real proxy and the real admin service against a real three-node Redis Cluster.

The suite starts the cluster itself (``redis-server --cluster-enabled yes`` three times,
``redis-cli --cluster create``, every node a master), then runs ``esafety proxy`` and
``esafety admin`` on a ``redis+cluster://`` URL and checks what a centre sees: a blocked site
is blocked and its hit reaches the admin's access log, and an override made through the
admin API is enforced by the proxy within a couple of seconds. Every key the deployment
wrote sits in one slot (the prefix's hash tag), so the hit writer's script and the
transactions ran there.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis as sync_redis

from categories.overrides import Override, OverrideScope
from proxy_addons.upstream_guard import redis_ports
from store import redis_acl
from store.accounts import (
    accounts_changed_since,
    create_user,
    issue_token,
    revoke_all_tokens,
    user_for_token,
)
from store.connection import connect
from store.hits import HitWriter
from store.keys import Keys
from store.login_limits import LoginLimits, reserve_attempt
from store.policy_state import read_overrides, read_version, save_override
from tests.harness.api import hit
from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    curl,
    free_port,
    write_config,
)
from tests.harness.redis_cluster import RedisClusterNodes
from tests.harness.ui import AdminProcess

PASSWORD = "a long cluster password"
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield nodes
    finally:
        nodes.stop()


@dataclass
class Stack:
    admin: AdminProcess
    proxy: ProxyProcess
    token: str = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.admin.base_url + path, data=data, headers=headers,
                                         method=method)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def stack(cluster: RedisClusterNodes, origins: Origins,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("cluster-stack")
    admin_port = free_port()
    # The default prefix, esafety: -> keys under the hash tag {esafety}.
    config = write_config(directory / "esafety.yaml", "esafety:",
                          admin_public_url=f"http://127.0.0.1:{admin_port}",
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner",
                                     "site": "cluster-lab"}])
    data_dir = directory / "data"
    admin = AdminProcess(data_dir, config, cluster.url, admin_port)
    imported = admin.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr

    async def add_admin() -> None:
        client = connect(cluster.url)
        try:
            await create_user(client, Keys(), "it-cluster", "admin", "staff", PASSWORD)
        finally:
            await client.aclose()

    run(add_admin())
    proxy = ProxyProcess(data_dir, config, cluster.url, origins)
    try:
        proxy.start()
        admin.start()
        found = Stack(admin, proxy)
        found.token = str(found.call("POST", "/api/v1/auth/login",
                                     {"username": "it-cluster", "password": PASSWORD})["token"])
        yield found
    finally:
        admin.stop()
        proxy.stop()


def test_the_proxy_never_connects_to_a_node_the_cluster_url_names(
        cluster: RedisClusterNodes) -> None:
    assert redis_ports(cluster.url) == set(cluster.ports)


def test_the_cluster_has_three_masters(cluster: RedisClusterNodes) -> None:
    assert cluster.masters() == sorted(f"127.0.0.1:{port}" for port in cluster.ports)
    nodes = str(cluster.client(cluster.ports[0]).execute_command("CLUSTER", "NODES"))
    assert all(len(line.split()) > 8 for line in nodes.splitlines())  # each holds slots
    for port in cluster.ports:
        info = cluster.client(port).execute_command("CLUSTER", "INFO")
        text = json.dumps(info) if isinstance(info, dict) else str(info)
        assert "cluster_state" in text and "ok" in text


def test_a_blocked_site_is_blocked_and_its_hit_reaches_the_admin_access_log(
        stack: Stack) -> None:
    assert curl(stack.proxy, "http://warez-site.test/").status == 403
    deadline = time.monotonic() + 20
    while True:
        items = stack.call("GET", "/api/v1/hits?limit=100")["items"]
        if any(item["host"] == "warez-site.test" and item["action"] == "block"
               for item in items):
            break
        assert time.monotonic() < deadline, (items, stack.proxy.log_text()[-2000:],
                                             stack.admin.log_text()[-2000:])
        time.sleep(0.3)


def test_an_override_made_in_the_admin_api_is_enforced_by_the_proxy_within_seconds(
        stack: Stack) -> None:
    assert curl(stack.proxy, "http://allowed.test/").status == 200
    assert curl(stack.proxy, "http://casino-royale.test/").status == 403
    started = time.monotonic()
    stack.call("POST", "/api/v1/overrides", {"target": "allowed.test", "action": "block",
                                             "scope": "everyone", "note": "cluster test"})
    stack.call("POST", "/api/v1/overrides", {"target": "casino-royale.test", "action": "allow",
                                             "scope": "everyone", "note": "cluster test"})
    while (curl(stack.proxy, "http://allowed.test/").status != 403
           or curl(stack.proxy, "http://casino-royale.test/").status != 200):
        assert time.monotonic() - started < 3.0, stack.proxy.log_text()[-2000:]
        time.sleep(0.1)
    listed = stack.call("GET", "/api/v1/overrides")
    assert {o["target"] for o in listed["items"]} >= {"allowed.test", "casino-royale.test"}


def test_a_change_announced_by_no_message_is_caught_from_the_polled_version(
        cluster: RedisClusterNodes, stack: Stack) -> None:
    """Should pub/sub be unavailable (a subscriber's node failed over, a managed cluster that
    drops it), the version key the proxy polls carries the change within about a second."""
    keys = Keys()
    assert curl(stack.proxy, "http://origin.test/").status == 200
    override = Override(id="ov-silent", target="origin.test", action="block",
                        scope=OverrideScope.EVERYONE, subject=None)

    async def change_silently() -> None:
        client = connect(cluster.url)
        try:
            async with client.pipeline(transaction=True) as pipe:  # one slot: MULTI/EXEC
                pipe.hset(keys.overrides, override.id, json.dumps(override.to_dict()))
                pipe.incr(keys.policy_version)
                await pipe.execute()
        finally:
            await client.aclose()

    started = time.monotonic()
    run(change_silently())
    while curl(stack.proxy, "http://origin.test/").status != 403:
        assert time.monotonic() - started < 1.5, stack.proxy.log_text()[-2000:]
        time.sleep(0.05)


def test_every_key_of_the_deployment_is_in_one_slot_on_one_master(
        cluster: RedisClusterNodes, stack: Stack) -> None:
    keys = Keys()
    test_a_blocked_site_is_blocked_and_its_hit_reaches_the_admin_access_log(stack)
    # This test's own override, so what it expects to find never depends on the tests before.
    stack.call("POST", "/api/v1/overrides", {"target": "one-slot.test", "action": "block",
                                             "scope": "everyone", "note": "slot test"})
    node = cluster.client(cluster.ports[0])
    slot = int(node.execute_command("CLUSTER", "KEYSLOT", "esafety"))
    holders = {}
    for port in cluster.ports:
        client = cluster.client(port)
        found = [str(key) for key in client.scan_iter(match=keys.prefix + "*", count=1000)]
        if found:
            holders[port] = found
    assert len(holders) == 1, holders  # one master holds everything the deployment wrote
    written = next(iter(holders.values()))
    for key in written:
        assert key.startswith(keys.prefix), key
        assert int(node.execute_command("CLUSTER", "KEYSLOT", key)) == slot, key
    names = set(written)
    for expected in (keys.hits, keys.overrides, keys.policy_version, keys.user("it-cluster"),
                     keys.users):
        assert expected in names, (expected, sorted(names))
    assert any(name.startswith(keys.prefix + "count:") for name in names)
    assert any(name.startswith(keys.prefix + "hitref:") for name in names)


def test_scripts_transactions_and_streams_run_on_the_cluster(
        cluster: RedisClusterNodes) -> None:
    """The store's multi-key operations, straight against the cluster with another prefix:
    the hit writer's script over several days, the sign-in limiter's script, account changes
    (MULTI/EXEC with a script inside), a policy change with its pub/sub message, and a
    consumer group read."""
    keys = Keys("cluster-direct:")

    async def exercise() -> None:
        client = connect(cluster.url)
        listener = connect(cluster.url)
        try:
            pubsub = listener.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(keys.policy_channel)  # the listener's first command
            writer = HitWriter(client, keys, hits_days=30, counters_days=30)
            days = [("20260101", hit(host="a.test")), ("20260102", hit(host="b.test")),
                    ("20260101", hit(host="c.test"))]
            assert await writer.write_batch("batch-1", days) == 3
            assert await writer.write_batch("batch-1", days) == 0  # exactly once
            assert await client.hlen(keys.hitref("20260102")) == 1
            assert await client.zscore(keys.top_hosts("20260101"), "c.test") == 1
            await create_user(client, keys, "learner9", "learner", "learner", PASSWORD)
            token = await issue_token(client, keys, "learner9")
            user = await user_for_token(client, keys, token)
            assert user is not None and user.name == "learner9"
            assert await revoke_all_tokens(client, keys, "learner9") == 1
            assert await user_for_token(client, keys, token) is None
            version, changed = await accounts_changed_since(client, keys, 0)
            assert version == 2 and changed == {"learner9"}
            limits = LoginLimits(per_pair=1)
            assert await reserve_attempt(client, keys, limits, "learner9", "10.0.0.9") is None
            assert await reserve_attempt(client, keys, limits, "learner9", "10.0.0.9")
            version = await save_override(client, keys, Override(
                id="ov-c", target="x.test", action="block", scope=OverrideScope.EVERYONE,
                subject=None))
            assert await read_version(client, keys) == version
            message = None
            deadline = time.monotonic() + 5
            while message is None and time.monotonic() < deadline:
                message = await pubsub.get_message(timeout=1.0)
            assert message is not None and message["data"] == str(version)
            await pubsub.aclose()
            await client.xgroup_create(keys.hits, "cluster-test", id="0")
            read = await client.xreadgroup("cluster-test", "c1", {keys.hits: ">"}, count=10)
            assert len(read[0][1]) == 3
            slots = {await client.cluster_keyslot(key)  # type: ignore[attr-defined]
                     async for key in client.scan_iter(match=keys.prefix + "*")}
            assert len(slots) == 1
        finally:
            await client.aclose()
            await listener.aclose()

    run(exercise())


def test_the_services_ran_on_the_cluster_without_a_traceback(stack: Stack) -> None:
    for name, text in (("proxy", stack.proxy.log_text()), ("admin", stack.admin.log_text())):
        assert "Traceback" not in text, f"{name} log:\n{text[-4000:]}"


def test_an_unreachable_cluster_is_an_outage_like_any_other() -> None:
    """redis-py says so with a RedisClusterException, which is no RedisError; the proxy and
    the admin handle outages by catching RedisError, so the client raises a ConnectionError."""
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))

    async def attempt() -> None:
        client = connect(f"redis+cluster://{dead}/")
        try:
            with pytest.raises(sync_redis.exceptions.ConnectionError):
                await client.get(Keys().policy_version)
            with pytest.raises(sync_redis.exceptions.ConnectionError):
                await client.pubsub().subscribe(Keys().policy_channel)
        finally:
            await client.aclose()

    run(attempt())


def test_backup_and_restore_run_on_the_cluster(cluster: RedisClusterNodes,
                                               tmp_path: Path) -> None:
    keys = Keys("cluster-backup:")

    async def seed() -> None:
        client = connect(cluster.url)
        try:
            await create_user(client, keys, "it-backup", "admin", "staff", PASSWORD)
        finally:
            await client.aclose()

    run(seed())
    config = write_config(tmp_path / "esafety.yaml", "cluster-backup:")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}

    def esafety(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
             str(tmp_path / "data"), "--redis-url", cluster.url, *args],
            env=env, capture_output=True, text=True, timeout=60)

    made = esafety("backup", "--out", str(tmp_path / "backup.gz"))
    assert made.returncode == 0 and "backed up 4 keys" in made.stdout, made.stdout + made.stderr
    restored = esafety("restore", "--force", str(tmp_path / "backup.gz"))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored 4 keys" in restored.stdout


def test_esafety_redis_acl_apply_locks_every_node_and_the_roles_work_on_the_cluster(
        tmp_path: Path) -> None:
    """ACL users are per node: ``esafety redis acl --apply`` on a cluster URL sets them on
    every node. The proxy user then finds the slots, listens on the policy channel, reads the
    overrides and writes hits with the script, and still cannot write policy or read the log."""
    nodes = RedisClusterNodes(tmp_path / "cluster").start()
    try:
        credentials = tmp_path / "credentials"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
        done = subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--data-dir", str(tmp_path / "data"),
             "--redis-url", nodes.url, "redis", "acl", "--apply", "--prefix", "centre-c:",
             "--credentials-dir", str(credentials)],
            env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        for port in nodes.ports:  # default is off everywhere: the old password is refused
            with pytest.raises(sync_redis.AuthenticationError):
                nodes.client(port).ping()
        hosts = ",".join(f"127.0.0.1:{port}" for port in nodes.ports)

        def url(role: str) -> str:
            return (f"redis+cluster://{redis_acl.ROLES[role]}@{hosts}/"
                    f"?password_file={credentials / f'{role}.password'}")

        keys = Keys("centre-c:")

        async def as_services() -> None:
            admin, proxy = connect(url("admin")), connect(url("proxy"))
            try:
                pubsub = proxy.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(keys.policy_channel)
                version = await save_override(admin, keys, Override(
                    id="ov-acl", target="acl.test", action="block",
                    scope=OverrideScope.EVERYONE, subject=None))
                message = None
                deadline = time.monotonic() + 5
                while message is None and time.monotonic() < deadline:
                    message = await pubsub.get_message(timeout=1.0)
                assert message is not None and message["data"] == str(version)
                await pubsub.aclose()
                assert [o.id for o in await read_overrides(proxy, keys)] == ["ov-acl"]
                writer = HitWriter(proxy, keys, hits_days=30, counters_days=30)
                assert await writer.write_batch("b1", [("20260101", hit())]) == 1
                assert await admin.xlen(keys.hits) == 1
                with pytest.raises(sync_redis.exceptions.NoPermissionError):
                    await proxy.hset(keys.overrides, "ov2", "allow gambling")
                with pytest.raises(sync_redis.exceptions.NoPermissionError):
                    await proxy.xrange(keys.hits)
                with pytest.raises(sync_redis.exceptions.ResponseError,
                                   match=r"can't run this command"):  # the stream is W only
                    await proxy.eval("return redis.call('XRANGE', KEYS[1], '-', '+')", 1,
                                     keys.hits)
            finally:
                await admin.aclose()
                await proxy.aclose()

        run(as_services())
    finally:
        nodes.stop()
