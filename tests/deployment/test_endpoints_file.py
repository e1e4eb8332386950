"""DATA_DIR/endpoints.json: never a Redis password in it, and ignored once the supervisor that
wrote it is gone or its Redis no longer answers."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployment.endpoints import (
    Endpoint,
    Endpoints,
    EndpointsError,
    live_endpoints,
    recordable_url,
    remove_endpoints,
    write_endpoints,
)
from deployment.instance import Instance
from esafety.embedded_redis import EmbeddedRedis
from store.connection import connect


def _endpoints(redis_url: str, pid: int) -> Endpoints:
    here = Endpoint("127.0.0.1:1", "127.0.0.1", 1)
    return Endpoints(redis_url=redis_url, redis_prefix="esafety:", proxy=here, admin=here,
                     proxy_status=None, admin_public_url="http://127.0.0.1:1",
                     proxy_public_address="127.0.0.1:1", config=None, pid=pid,
                     started_at=time.time(), version="test")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


async def _ping(url: str) -> bool:
    client = connect(url)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


def test_a_configured_url_with_a_password_is_recorded_naming_a_0600_file(
        tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as redis:
        password = (tmp_path / "redis" / "admin.password").read_text().strip()
        assert password in redis.url
        data = tmp_path / "data"
        data.mkdir()
        url = recordable_url(redis.url, data)
        assert password not in url and "password_file=" in url
        written = write_endpoints(data, _endpoints(url, 1))
        assert password not in written.read_text()
        for path in (written, data / "endpoints-redis.password"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert asyncio.run(_ping(url))  # the recorded URL still reaches the server
        with pytest.raises(EndpointsError):
            write_endpoints(data, _endpoints(redis.url, 1))
        remove_endpoints(data)
        assert not written.exists() and not (data / "endpoints-redis.password").exists()

        # The password as a query parameter moves to the file too.
        user_url = f"redis://esafety-admin@127.0.0.1:{redis.port}/0?password={password}"
        url = recordable_url(user_url, data)
        assert password not in url and asyncio.run(_ping(url))


def test_readers_ignore_a_file_whose_supervisor_or_redis_is_gone(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    for name in ("ESAFETY_REDIS_URL", "ESAFETY_CONFIG", "ESAFETY_DATA_DIR",
                 "ESAFETY_REDIS_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    data.mkdir()
    redis = EmbeddedRedis(tmp_path / "redis", persistent=False).start()
    try:
        url = recordable_url(redis.url, data)
        write_endpoints(data, _endpoints(url, _dead_pid()))
        assert live_endpoints(data) is None  # left by a supervisor that was killed
        assert Instance.resolve(data_dir=str(data)).store_url("esafety-admin") is None

        write_endpoints(data, _endpoints(url, os.getpid()))
        assert Instance.resolve(data_dir=str(data)).store_url("esafety-admin") == url
        # An explicit URL still wins over the running deployment's.
        explicit = "redis://elsewhere.test:6379/0"
        assert Instance.resolve(data_dir=str(data), redis_url=explicit).store_url("x") == explicit
    finally:
        redis.stop()
    assert live_endpoints(data) is None  # its Redis no longer answers


def test_readers_ignore_a_file_others_may_write_or_another_user_planted(
        tmp_path: Path) -> None:
    """A planted file must not make a command send one of its user's secrets (a password file
    outside the data directory) to some other server. Run as root (the suite does), the file
    is planted by another user: the data directory's owner."""
    data = tmp_path / "data"
    data.mkdir()
    redis = EmbeddedRedis(tmp_path / "redis", persistent=False).start()
    try:
        outside = redis.url_for("admin")  # its password file is in tmp_path/redis, not data/
        path = write_endpoints(data, _endpoints(outside, os.getpid()))
        assert live_endpoints(data) is not None  # this user's own file: trusted
        path.chmod(0o622)
        assert live_endpoints(data) is None  # others may write it

        path.chmod(0o600)
        if os.getuid() == 0:
            os.chown(data, 65534, 65534)  # the data directory and the file: another user's
            os.chown(path, 65534, 65534)
            assert live_endpoints(data) is None
            inside = recordable_url(redis.url, data)  # the password copied into data/
            path = write_endpoints(data, _endpoints(inside, os.getpid()))
            os.chown(path, 65534, 65534)
            assert live_endpoints(data) is not None
    finally:
        redis.stop()
