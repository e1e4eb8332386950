"""One deployment, every command: while `esafety up` runs, `esafety --data-dir D users add`
finds its Redis (embedded or configured) and its config through DATA_DIR/endpoints.json (0600,
no password in it), and the start-up output ends with where everything is."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.deployment.test_service_up import _free_pair, _get
from tests.harness.proxy import free_port

REPO = Path(__file__).resolve().parent.parent.parent


def _env() -> dict[str, str]:
    """The environment without any esafety or Redis setting: only --data-dir is given."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("ESAFETY_") and k != "REDIS_URL"}


def _esafety(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esafety.cli", *args], input=stdin,
                          capture_output=True, text=True, env=_env(), cwd=REPO, timeout=60,
                          check=False)


def _sign_in(admin_port: int, name: str, password: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{admin_port}/api/v1/auth/login", method="POST",
        data=json.dumps({"username": name, "password": password}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class RunningUp:
    process: subprocess.Popen[bytes]
    data: Path
    proxy_port: int
    admin_port: int
    status_port: int
    stdout: Path


@contextmanager
def _esafety_up(tmp_path: Path, config: dict[str, Any], *global_args: str
                ) -> Iterator[RunningUp]:
    """A real `esafety up` on free ports and an empty data directory, once its start-up block
    is out; stopped with SIGTERM after, which must exit 0."""
    proxy_port, admin_port, status_port = free_port(), free_port(), _free_pair()
    config_file = tmp_path / "esafety.yaml"
    config_file.write_text(yaml.safe_dump({
        "listen": {"proxy_status": f"127.0.0.1:{status_port}"}, "logging": {"format": "text"},
        "redis_prefix": f"esafety-test-{uuid.uuid4().hex[:10]}:",
        **{k: v.format(proxy=proxy_port, admin=admin_port) for k, v in config.items()}}))
    data = tmp_path / "data"
    out_file, err_file = tmp_path / "up.out", tmp_path / "up.err"
    with out_file.open("wb") as out, err_file.open("wb") as err:
        up = subprocess.Popen(
            [sys.executable, "-m", "esafety.cli", *global_args, "--config", str(config_file),
             "--data-dir", str(data), "up", "--proxy-listen", f"127.0.0.1:{proxy_port}",
             "--admin-listen", f"127.0.0.1:{admin_port}"],
            env=_env(), cwd=REPO, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while "esafety is running." not in out_file.read_text():
            assert up.poll() is None, err_file.read_text()
            assert time.monotonic() < deadline, "no start-up block:\n" + err_file.read_text()
            time.sleep(0.3)
        yield RunningUp(up, data, proxy_port, admin_port, status_port, out_file)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(40)
    assert up.returncode == 0, err_file.read_text()


def test_commands_on_the_data_dir_find_the_running_up_and_its_output_says_what_now(
        tmp_path: Path) -> None:
    public = {"admin_public_url": "http://filter.centre.test:{admin}",
              "proxy_public_address": "filter.centre.test:{proxy}"}
    with _esafety_up(tmp_path, public) as up:
        data, admin_port, proxy_port = up.data, up.admin_port, up.proxy_port
        assert _get(f"http://127.0.0.1:{admin_port}/healthz") == 200

        # The "what now" block: the configured public addresses, the PAC file, the CA.
        block = up.stdout.read_text()
        assert f"http://filter.centre.test:{admin_port}/\n" in block
        assert f"filter.centre.test:{proxy_port}\n" in block
        assert f"http://filter.centre.test:{admin_port}/proxy.pac\n" in block
        ca_file = data / "ca" / "mitmproxy-ca-cert.pem"
        assert str(ca_file) in block and ca_file.is_file()
        assert "esafety --data-dir " in block and " ca export --out esafety-ca.pem" in block
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/proxy.pac",
                                    timeout=5) as pac:
            assert f"PROXY filter.centre.test:{proxy_port}" in pac.read().decode()
        assert block.rstrip().splitlines()[-1].startswith("Next:")  # the block ends the output

        # The endpoints file: owner-only, and no Redis password in it.
        endpoints_file = data / "endpoints.json"
        assert stat.S_IMODE(endpoints_file.stat().st_mode) == 0o600
        text = endpoints_file.read_text()
        recorded = json.loads(text)
        assert recorded["pid"] == up.process.pid
        assert recorded["admin"]["port"] == admin_port
        assert recorded["proxy"]["port"] == proxy_port
        assert recorded["proxy_status"]["port"] == up.status_port
        assert recorded["admin_public_url"] == f"http://filter.centre.test:{admin_port}"
        assert "password_file=" in recorded["redis_url"]
        passwords = [p.read_text().strip() for p in (data / "redis").glob("*.password")]
        assert passwords and not any(p in text for p in passwords)

        # A command with nothing but --data-dir acts on the running deployment: its Redis,
        # and its config's key prefix (else the admin service would not see the user).
        added = _esafety("--data-dir", str(data), "users", "add", "alice", "--role", "admin",
                         "--password-stdin", stdin="correct horse battery staple\n")
        assert added.returncode == 0, added.stderr
        listed = _esafety("--data-dir", str(data), "users", "list")
        assert listed.returncode == 0 and listed.stdout.split()[0] == "alice", listed
        assert _sign_in(admin_port, "alice", "correct horse battery staple") == 200
        backup = _esafety("--data-dir", str(data), "backup", "--out", str(tmp_path / "b.gz"))
        assert backup.returncode == 0, backup.stderr
        for service in ("admin", "proxy"):  # on the ports up listens on, not the defaults
            health = _esafety("--data-dir", str(data), "healthcheck", service)
            assert health.returncode == 0 and f"{service}: healthy" in health.stdout, health
    # A clean stop removes the file; the commands then say there is no Redis to use.
    assert not (data / "endpoints.json").exists()
    after = _esafety("--data-dir", str(data), "users", "list")
    assert after.returncode == 2 and "Redis" in after.stderr


def test_a_configured_redis_is_found_too_and_its_password_is_not_in_the_file(
        tmp_path: Path, redis_url: str) -> None:
    """`esafety up --redis-url URL-WITH-PASSWORD`: the other commands use that Redis with only
    --data-dir, and the endpoints file names a 0600 password file instead of the password."""
    password = urlsplit(redis_url).password
    with _esafety_up(tmp_path, {}, "--redis-url", redis_url) as up:
        assert not (up.data / "redis").exists()  # no embedded Redis: the configured one
        text = (up.data / "endpoints.json").read_text()
        if password:  # the suite's own Redis always has one; a REDIS_URL given may not
            assert password not in text
            password_file = up.data / "endpoints-redis.password"
            assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
            assert "password_file=" in json.loads(text)["redis_url"]
        added = _esafety("--data-dir", str(up.data), "users", "add", "bea", "--role", "admin",
                         "--password-stdin", stdin="correct horse battery staple\n")
        assert added.returncode == 0, added.stderr
        assert _sign_in(up.admin_port, "bea", "correct horse battery staple") == 200
    assert not (up.data / "endpoints.json").exists()
    assert not (up.data / "endpoints-redis.password").exists()
