"""One deployment per port: the supervisor binds the public port once and its workers inherit
the socket, so a second deployment on the same port fails clearly instead of silently
sharing learners with the first; a port in use is one clear error, not a restart loop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from store.keys import Keys
from tests.deployment.test_deploy_workers import (
    RecordingOrigin,
    _children,
    _healthy,
    _status_pair,
    _wait_healthy,
)
from tests.harness.proxy import PROXY_LISTS, curl_plain, free_port, write_config

REPO = Path(__file__).resolve().parent.parent.parent


def _env(origin_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    env["ESAFETY_TEST_PORTS"] = f"80={origin_port}"
    return env


def _proxy(config: Path, data: Path, port: int, status: int, redis_url: str,
           env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "esafety.cli", "--redis-url", redis_url, "--config", str(config),
         "--data-dir", str(data), "proxy", "--workers", "2", "--listen", f"127.0.0.1:{port}",
         "--status-listen", f"127.0.0.1:{status}",
         "--script", str(REPO / "tests" / "harness" / "addons" / "host_map.py")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_second_proxy_on_the_same_port_fails_and_the_first_keeps_every_request(
        tmp_path: Path, redis_url: str) -> None:
    origin = RecordingOrigin()
    env = _env(origin.port)
    port = free_port()
    # Two deployments with different policies: the first blocks gambling (lists imported),
    # the second has no lists at all and would let casino-royale.test through.
    first_config = write_config(tmp_path / "a.yaml", f"esafety-test-a{os.getpid()}:",
                                upstream=origin.upstream(),
                                networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    second_config = write_config(tmp_path / "b.yaml", f"esafety-test-b{os.getpid()}:",
                                 upstream=origin.upstream())
    imported = subprocess.run(
        [sys.executable, "-m", "esafety.cli", "--config", str(first_config), "--data-dir",
         str(tmp_path / "a"), "lists", "import", str(PROXY_LISTS), "--source", "f"],
        env=env, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    first_status = _status_pair()
    first = _proxy(first_config, tmp_path / "a", port, first_status, redis_url, env)
    try:
        _wait_healthy(first, first_status, first_status + 1)
        workers = _children(first.pid)
        second_status = _status_pair()
        second = _proxy(second_config, tmp_path / "b", port, second_status, redis_url, env)
        try:
            second.wait(60)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        stderr = second.stderr.read().decode() if second.stderr else ""
        assert second.returncode == 2, stderr
        assert f"cannot listen on 127.0.0.1:{port}: address already in use" in stderr
        assert "Traceback" not in stderr
        assert not _healthy(second_status) and not _healthy(second_status + 1)
        # Every request still reaches the first deployment's policy, on fresh connections.
        statuses = [curl_plain(f"http://127.0.0.1:{port}", f"http://casino-royale.test/{n}")[0]
                    for n in range(30)]
        assert statuses == [403] * 30
        assert "casino-royale.test" not in origin.hosts()
        assert curl_plain(f"http://127.0.0.1:{port}", "http://allowed-site.test/")[0] == 200
        assert sorted(_children(first.pid)) == sorted(workers)  # undisturbed
    finally:
        first.terminate()
        first.wait(30)
        origin.stop()
    assert first.returncode == 0


def _up(config: Path, data: Path, proxy_port: int, admin_port: int,
        env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir", str(data),
         "up", "--proxy-listen", f"127.0.0.1:{proxy_port}",
         "--admin-listen", f"127.0.0.1:{admin_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_second_esafety_up_on_the_same_ports_fails_clearly(tmp_path: Path) -> None:
    origin = RecordingOrigin()
    env = _env(origin.port)
    proxy_port, admin_port = free_port(), free_port()
    status = _status_pair()
    config = tmp_path / "a.yaml"
    config.write_text(yaml.safe_dump({"listen": {"proxy_status": f"127.0.0.1:{status}"},
                                      "logging": {"format": "text"}}))
    first = _up(config, tmp_path / "a", proxy_port, admin_port, env)
    try:
        _wait_healthy(first, status, status + 1)
        other_status = _status_pair()
        other = tmp_path / "b.yaml"
        other.write_text(yaml.safe_dump({"listen": {"proxy_status": f"127.0.0.1:{other_status}"},
                                         "logging": {"format": "text"}}))
        second = _up(other, tmp_path / "b", proxy_port, free_port(), env)
        second.wait(60)
        stderr = second.stderr.read().decode() if second.stderr else ""
        assert second.returncode == 2, stderr
        assert f"cannot listen on 127.0.0.1:{proxy_port}: address already in use" in stderr
        assert "Traceback" not in stderr
        assert not (tmp_path / "b" / "redis").exists()  # stopped before starting anything
        # The first still filters every request itself (its built-in firearms entry).
        statuses = [curl_plain(f"http://127.0.0.1:{proxy_port}", f"http://gunbroker.com/{n}")[0]
                    for n in range(20)]
        assert statuses == [403] * 20
        assert origin.seen == []
    finally:
        first.terminate()
        first.wait(40)
        origin.stop()
    assert first.returncode == 0


def test_an_admin_port_in_use_is_one_clear_error(tmp_path: Path, redis_url: str,
                                                 keys: Keys) -> None:
    config = write_config(tmp_path / "esafety.yaml", keys.prefix)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
        done = subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--redis-url", redis_url, "--config",
             str(config), "--data-dir", str(tmp_path / "data"), "admin", "--listen",
             f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"esafety: admin API: cannot listen on 127.0.0.1:{port}: address already "
                     "in use (another esafety instance or program is on it)"], done.stderr


def test_esafety_up_stops_instead_of_restart_looping_when_its_admin_port_is_taken(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    status = _status_pair()
    config = tmp_path / "a.yaml"
    config.write_text(yaml.safe_dump({"listen": {"proxy_status": f"127.0.0.1:{status}"},
                                      "logging": {"format": "text"}}))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        admin_port = taken.getsockname()[1]
        up = _up(config, tmp_path / "data", free_port(), admin_port, env)
        up.wait(60)
    stderr = up.stderr.read().decode() if up.stderr else ""
    assert up.returncode == 2
    assert stderr.count("address already in use") == 1, stderr
    assert "Traceback" not in stderr


def test_a_worker_status_port_in_use_stops_the_proxy_with_one_clear_error(
        tmp_path: Path, redis_url: str, keys: Keys) -> None:
    config = write_config(tmp_path / "esafety.yaml", keys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    status = _status_pair()
    with socket.create_server(("127.0.0.1", status + 1)):  # worker 1's status port
        supervisor = _proxy(config, tmp_path / "data", free_port(), status, redis_url, env)
        try:
            supervisor.wait(60)
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
                supervisor.wait()
    stderr = supervisor.stderr.read().decode() if supervisor.stderr else ""
    assert supervisor.returncode == 2, stderr
    assert stderr.count(f"cannot listen on 127.0.0.1:{status + 1}: address already in use") == 1
    assert "restarting in" not in stderr and "Traceback" not in stderr
    assert "stopping everything instead of restarting it" in stderr


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, redis_url: str,
                                                       keys: Keys) -> None:
    config = write_config(tmp_path / "esafety.yaml", keys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    port, status = free_port(), _status_pair()
    supervisor = _proxy(config, tmp_path / "data", port, status, redis_url, env)
    _wait_healthy(supervisor, status, status + 1)
    workers = _children(supervisor.pid)
    assert len(workers) == 2
    supervisor.kill()  # SIGKILL: no chance to stop its children itself
    supervisor.wait()
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
                 and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
        time.sleep(0.2)
    assert alive == []  # no orphan keeps serving the port with nobody to stop it
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
