"""The store is locked: the embedded Redis has ACL users per role with generated passwords
kept in 0600 files, the ``default`` user is off, the proxy's user cannot write anyone else's
keys, each child of ``esafety up`` gets only its own credentials (never a password on a
command line or in its environment), and esafety warns when a Redis is open to anyone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
import redis as sync_redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from categories.overrides import Override, OverrideScope
from esafety.embedded_redis import EmbeddedRedis, find_redis_server
from store import redis_acl
from store.accounts import create_user
from store.connection import connect
from store.hits import HitWriter
from store.keys import Keys
from store.policy_state import save_override
from store.records import HitRecord
from tests.deployment.test_deploy_workers import _status_pair
from tests.deployment.test_service_up import _descendants
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, free_port, write_config

PRIVATE_FILES = ("admin.password", "proxy.password", "users.acl", "redis.conf", "redis.log")

NO_RETRY = Retry(NoBackoff(), 0)
"""A refused sign-in is final: redis-py would otherwise retry it with back-off (4 s a try)."""


def _passwords(directory: Path) -> list[str]:
    return [(directory / f"{role}.password").read_text().strip() for role in redis_acl.ROLES]


def test_the_embedded_redis_refuses_anonymous_clients_and_keeps_its_secrets_private(
        tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    server = EmbeddedRedis(directory, persistent=True, prefix="esafety:").start()
    try:
        for name in PRIVATE_FILES:
            assert (directory / name).stat().st_mode & 0o777 == 0o600, name
        assert directory.stat().st_mode & 0o777 == 0o700
        passwords = _passwords(directory)
        assert all(len(p) >= 40 for p in passwords) and len(set(passwords)) == 2
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        for password in passwords:
            assert password not in cmdline
            for name in ("users.acl", "redis.conf", "redis.log"):
                assert password not in (directory / name).read_text()
        # Anyone who can reach the port, without the password, can do nothing.
        anonymous = sync_redis.Redis(port=server.port, socket_timeout=5, retry=NO_RETRY)
        for command in (("SET", Keys().overrides, "x"), ("HSET", Keys().user("me"), "role",
                        "admin"), ("GET", Keys().policy_version), ("KEYS", "*"),
                        ("ACL", "SETUSER", "me", "on", "nopass", "+@all", "~*"),
                        ("CONFIG", "SET", "protected-mode", "no")):
            with pytest.raises(sync_redis.AuthenticationError):
                anonymous.execute_command(*command)
        with pytest.raises(sync_redis.AuthenticationError):
            sync_redis.Redis(port=server.port, username="default", password="",
                             retry=NO_RETRY).ping()
        with pytest.raises(sync_redis.AuthenticationError):
            sync_redis.Redis(port=server.port, username=redis_acl.ADMIN_USER,
                             password="guessed", retry=NO_RETRY).ping()
        admin = sync_redis.Redis.from_url(server.url, decode_responses=True)
        admin.set(Keys().policy_version, "7")
        with pytest.raises(sync_redis.exceptions.NoPermissionError):
            admin.config_set("protected-mode", "no")  # @dangerous: refused to admin too
        admin.close()
    finally:
        server.stop()
    # Restarted: the same passwords, and the data is still there.
    again = EmbeddedRedis(directory, persistent=True, prefix="esafety:").start()
    try:
        assert _passwords(directory) == passwords
        admin = sync_redis.Redis.from_url(again.url, decode_responses=True)
        assert admin.get(Keys().policy_version) == "7"
        admin.close()
    finally:
        again.stop()


def test_the_proxy_user_reads_what_a_proxy_needs_and_writes_nothing_of_anyone_else(
        tmp_path: Path) -> None:
    keys = Keys()
    server = EmbeddedRedis(tmp_path / "redis", persistent=False, prefix=keys.prefix).start()
    try:
        admin = sync_redis.Redis.from_url(server.url, decode_responses=True)
        admin.hset(keys.overrides, "ov1", "{}")
        admin.hset(keys.class_sessions, "cls-1", "{}")
        admin.hset(keys.user("it1"), mapping={"role": "admin", "password_hash": "x"})
        admin.xadd(keys.audit, {"event": "real"})
        admin.xadd(keys.hits, {"user": "learner1"})
        before = {key: admin.dump(key) for key in admin.scan_iter("*")}
        password = (tmp_path / "redis" / "proxy.password").read_text().strip()
        proxy = sync_redis.Redis(port=server.port, username=redis_acl.PROXY_USER,
                                 password=password, decode_responses=True, socket_timeout=5)
        # What a proxy does: read policy, overrides, accounts and tokens; count.
        assert proxy.hgetall(keys.overrides) == {"ov1": "{}"}
        assert proxy.hgetall(keys.class_sessions) == {"cls-1": "{}"}
        assert proxy.hgetall(keys.user("it1"))["role"] == "admin"
        assert proxy.get(keys.token("abc")) is None
        proxy.incr(keys.rate_limit("login-user", "learner1"))
        pubsub = proxy.pubsub()
        pubsub.subscribe(keys.policy_channel)
        pubsub.close()
        refused = {
            "write an override": lambda: proxy.hset(keys.overrides, "ov2", "{allow gambling}"),
            "delete the overrides": lambda: proxy.delete(keys.overrides),
            "open a class session": lambda: proxy.hset(keys.class_sessions, "cls-2",
                                                       '{"target": "group"}'),
            "end the class sessions": lambda: proxy.delete(keys.class_sessions),
            "read the sessions' history": lambda: proxy.hgetall(keys.class_session_log),
            "make itself admin": lambda: proxy.hset(keys.user("learner1"), "role", "admin"),
            "add an account": lambda: proxy.sadd(keys.users, "learner1"),
            "mint a session token": lambda: proxy.set(keys.token("f" * 64), "it1"),
            "write the audit log": lambda: proxy.xadd(keys.audit, {"event": "forged"}),
            "trim the audit log": lambda: proxy.xtrim(keys.audit, 0),
            "read the audit log": lambda: proxy.xrange(keys.audit),
            "read the hit log": lambda: proxy.xrange(keys.hits),
            "bump the policy version": lambda: proxy.incr(keys.policy_version),
            "publish a policy change": lambda: proxy.publish(keys.policy_channel, "99"),
            "write through a script": lambda: proxy.eval(
                "return redis.call('HSET', KEYS[1], 'ov3', 'x')", 1, keys.overrides),
            "write a script's undeclared key": lambda: proxy.eval(
                "return redis.call('HSET', ARGV[1], 'role', 'admin')", 0, keys.user("x")),
            "another deployment's keys": lambda: proxy.get("other:policy:version"),
            "flush everything": lambda: proxy.flushall(),
            "list every key": lambda: proxy.keys("*"),
            "reconfigure the server": lambda: proxy.config_set("protected-mode", "no"),
            "add an ACL user": lambda: proxy.acl_setuser("me", enabled=True, nopass=True),
        }
        for what, attempt in refused.items():
            # Refused by the ACL (scripts report it as a script error).
            with pytest.raises(sync_redis.exceptions.ResponseError,
                               match=r"no permissions|can't access"):
                attempt()
                pytest.fail(f"the proxy user could {what}")
        after = {key: admin.dump(key) for key in admin.scan_iter("*")
                 if not key.startswith(keys.prefix + "ratelimit:")}
        assert after == before  # nothing of anyone else's changed
        proxy.close()
        admin.close()
    finally:
        server.stop()


def _embedded_port(data: Path) -> int:
    conf = (data / "redis" / "redis.conf").read_text()
    return int(next(line.split()[1] for line in conf.splitlines() if line.startswith("port ")))


def _embedded_admin(data: Path) -> sync_redis.Redis:
    password = (data / "redis" / "admin.password").read_text().strip()
    return sync_redis.Redis.from_url(
        f"redis://{redis_acl.ADMIN_USER}:{quote(password, safe='')}@127.0.0.1:"
        f"{_embedded_port(data)}/0", decode_responses=True)


def _curl(proxy_port: int, url: str, user: tuple[str, str]) -> int:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                           "--max-time", "15", "-x", f"http://127.0.0.1:{proxy_port}",
                           "--proxy-user", f"{user[0]}:{user[1]}", "--noproxy", "", url],
                          capture_output=True, text=True, env=env, timeout=30)
    return int(done.stdout or 0)


def _get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_esafety_up_runs_the_proxy_as_the_proxy_user_and_it_still_filters_signs_in_and_logs(
        tmp_path: Path) -> None:
    proxy_port, admin_port, status = free_port(), free_port(), _status_pair()
    config = tmp_path / "esafety.yaml"
    config.write_text(yaml.safe_dump({"listen": {"proxy_status": f"127.0.0.1:{status}"},
                                      "proxy_auth": {"mode": "required"},
                                      "logging": {"format": "text"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    data = tmp_path / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir", str(data),
         "up", "--proxy-listen", f"127.0.0.1:{proxy_port}",
         "--admin-listen", f"127.0.0.1:{admin_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    keys = Keys()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # (The proxies' /readyz is 503 without a list snapshot; /healthz says they run.)
            if (_up(status) and _up(status + 1) and _up(admin_port)
                    and _get_json(f"http://127.0.0.1:{admin_port}/readyz")[0] == 200):
                break
            assert up.poll() is None, up.stderr.read().decode() if up.stderr else ""
            time.sleep(0.3)
        else:
            raise AssertionError("esafety up did not become ready")
        # A locked Redis: no warning anywhere (the workers had time to check it by now).
        time.sleep(2)
        for port in (status, status + 1, admin_port):
            assert "warnings" not in _get_json(f"http://127.0.0.1:{port}/readyz")[1]
        admin = _embedded_admin(data)

        async def provision() -> None:
            client = connect(f"redis://{redis_acl.ADMIN_USER}@127.0.0.1:{_embedded_port(data)}/0",
                             password_file=data / "redis" / "admin.password")
            await save_override(client, keys, Override(
                id="ov-acl", target="override-only.test", action="block",
                scope=OverrideScope.EVERYONE, subject=None, created_by="it1",
                created_at=time.time()))
            await client.aclose()

        asyncio.run(provision())
        # The CLI on the same data directory finds the running embedded Redis (as admin).
        added = subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
             str(data), "users", "add", "learner1", "--role", "learner", "--password-stdin"],
            input="right-horse-9\n", env=env, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        user = ("learner1", "right-horse-9")
        # Sign-in reads the account under the proxy user: a wrong password is challenged
        # again (407); the right one gets past sign-in to the policy (here a block, 403).
        assert _curl(proxy_port, "http://override-only.test/", ("learner1", "wrong")) == 407
        # The override (read by the proxy user, announced on the policy channel) is applied.
        deadline = time.monotonic() + 15
        while _curl(proxy_port, "http://override-only.test/", user) != 403:
            assert time.monotonic() < deadline, "override not applied"
            time.sleep(0.3)
        assert [_curl(proxy_port, f"http://override-only.test/{n}", user)
                for n in range(20)] == [403] * 20
        # The hit writer works under the proxy user: blocked hits reach the stream.
        deadline = time.monotonic() + 20
        logged: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            logged = [f for _id, f in admin.xrange(keys.hits) if f["host"] == "override-only.test"]
            if len(logged) >= 21:
                break
            time.sleep(0.3)
        assert len(logged) >= 21 and {f["user"] for f in logged} == {"learner1"}
        # Each child holds only its own role's credentials, and no password anywhere.
        passwords = _passwords(data / "redis")
        children = [pid for pid, name in _descendants(up.pid) if name != "redis-server"]
        roles: dict[str, set[str]] = {"proxy": set(), "admin": set()}
        for pid in children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            for password in passwords:
                assert password not in "\0".join(cmdline) and password not in environ
            url = next(v.partition("=")[2] for v in environ.split("\0")
                       if v.startswith("ESAFETY_REDIS_URL="))
            role = "admin" if "admin" in cmdline else "proxy"
            roles[role].add(url.split("//")[1].split("@")[0])
            assert f"{role}.password" in url
        assert roles == {"proxy": {redis_acl.PROXY_USER}, "admin": {redis_acl.ADMIN_USER}}
        admin.close()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(40)
    assert up.returncode == 0


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except OSError:
        return False


def test_a_redis_open_to_anyone_is_warned_about_in_logs_readyz_and_metrics(
        tmp_path: Path, origins: Origins) -> None:
    port = free_port()
    open_redis = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind",
                                   "127.0.0.1", "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sync_redis.Redis(port=port, socket_timeout=1).ping()
                break
            except sync_redis.RedisError:
                time.sleep(0.1)
        config = write_config(tmp_path / "esafety.yaml", f"esafety-test-open{os.getpid()}:")
        proxy = ProxyProcess(tmp_path / "data", config, url, origins)
        assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
        proxy.start()
        try:
            deadline = time.monotonic() + 20
            body: dict[str, object] = {}
            while time.monotonic() < deadline:
                code, text = proxy.status("/readyz")
                body = json.loads(text)
                if "warnings" in body:
                    break
                time.sleep(0.2)
            assert code == 200 and body["ready"] is True, body
            assert any("without a password" in str(w) for w in body["warnings"])  # type: ignore[attr-defined]
            assert 'esafety_proxy_redis_unauthenticated{worker="0"} 1' in proxy.status("/metrics")[1]
            assert "Redis accepts commands without a password" in proxy.log_text()
        finally:
            proxy.stop()
        admin_port = free_port()
        admin = subprocess.Popen(
            [sys.executable, "-m", "esafety.cli", "--redis-url", url, "--config", str(config),
             "--data-dir", str(tmp_path / "data"), "admin", "--listen",
             f"127.0.0.1:{admin_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")})
        try:
            deadline = time.monotonic() + 30
            while not _up(admin_port):
                assert time.monotonic() < deadline and admin.poll() is None
                time.sleep(0.2)
            code, body = _get_json(f"http://127.0.0.1:{admin_port}/readyz")
            assert code == 200 and body["status"] == "ready"
            assert any("without a password" in str(w) for w in body["warnings"])  # type: ignore[attr-defined]
        finally:
            admin.terminate()
            admin.wait(20)
        stderr = admin.stderr.read().decode() if admin.stderr else ""
        assert "WARNING" in stderr and "Redis accepts commands without a password" in stderr
    finally:
        open_redis.terminate()
        open_redis.wait(10)


def test_redis_acl_apply_locks_an_external_redis_for_the_deployment(tmp_path: Path) -> None:
    port = free_port()
    external = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind",
                                 "127.0.0.1", "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sync_redis.Redis(port=port, socket_timeout=1).ping()
                break
            except sync_redis.RedisError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        credentials = tmp_path / "credentials"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
        done = subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--data-dir", str(tmp_path / "data"),
             "--redis-url", f"redis://127.0.0.1:{port}/0", "redis", "acl", "--apply",
             "--prefix", "centre-a:", "--credentials-dir", str(credentials)],
            env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        passwords = [(credentials / f"{r}.password").read_text().strip() for r in redis_acl.ROLES]
        for role in redis_acl.ROLES:
            assert (credentials / f"{role}.password").stat().st_mode & 0o777 == 0o600
        assert not any(p in done.stdout + done.stderr for p in passwords)
        with pytest.raises(sync_redis.AuthenticationError):
            sync_redis.Redis(port=port, socket_timeout=5).set("centre-a:overrides", "x")

        centre_a = Keys("centre-a:")  # keys under the hash tag {centre-a}

        async def as_services() -> None:
            admin = connect(f"redis://{redis_acl.ADMIN_USER}@127.0.0.1:{port}/0",
                            password_file=credentials / "admin.password")
            proxy = connect(f"redis://{redis_acl.PROXY_USER}@127.0.0.1:{port}/0"
                            f"?password_file={credentials / 'proxy.password'}")
            await admin.hset(centre_a.overrides, "ov", "{}")
            assert await proxy.hgetall(centre_a.overrides) == {"ov": "{}"}
            with pytest.raises(sync_redis.exceptions.NoPermissionError):
                await proxy.hset(centre_a.overrides, "ov2", "allow gambling")
            with pytest.raises(sync_redis.exceptions.NoPermissionError):
                await admin.set(Keys("centre-b:").overrides, "another deployment's key")
            await admin.aclose()
            await proxy.aclose()

        asyncio.run(as_services())
    finally:
        external.terminate()
        external.wait(10)


def test_hits_and_transactions_written_under_the_acl_survive_a_restart(tmp_path: Path) -> None:
    """The AOF is replayed as the (disabled) default user; its rights must cover what was
    written, or Redis silently drops every MULTI/EXEC block (the hit writer's script effects,
    account saves) on restart."""
    keys = Keys()
    server = EmbeddedRedis(tmp_path / "redis", persistent=True, prefix=keys.prefix).start()
    try:
        async def write() -> None:
            proxy = connect(server.url_for("proxy"))
            admin = connect(server.url_for("admin"))
            writer = HitWriter(proxy, keys, hits_days=30, counters_days=30)
            now = time.time()
            for n in range(5):
                hit = HitRecord(id=f"20260101-HIT{n}", ts=now, user="learner1", group="learner",
                                client_ip="10.0.0.5", site="main", host="bet-now.test", path="",
                                action="block", category="gambling", rule="list", source="f",
                                severity="high", alert=False, decrypted=False, method="GET")
                assert await writer.write_batch(f"batch-{n}", [("20260101", hit)]) == 1
            await create_user(admin, keys, "it1", "admin", "staff", "a long password 1")
            await proxy.aclose()
            await admin.aclose()

        asyncio.run(write())
    finally:
        server.stop()
    server.start()
    try:
        admin = sync_redis.Redis.from_url(server.url, decode_responses=True)
        assert [f["id"] for _i, f in admin.xrange(keys.hits)] == [f"20260101-HIT{n}"
                                                                  for n in range(5)]
        assert admin.hget(keys.day_counts("20260101"), "block|gambling|learner|main") == "5"
        assert admin.hget(keys.user("it1"), "role") == "admin"
        assert admin.sismember(keys.users, "it1")
        admin.close()
    finally:
        server.stop()
