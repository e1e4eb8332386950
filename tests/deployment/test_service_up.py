"""`esafety up` (what `make run` starts): embedded Redis, the proxy workers and the admin API
come up on a fresh data directory, filter, and all stop cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from tests.harness.proxy import curl_plain, free_port


def _free_pair() -> int:
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except OSError:
        return 0


def _descendants(pid: int) -> list[tuple[int, str]]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,comm="], capture_output=True,
                         text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    found, frontier = [], {pid}
    while frontier:
        children = [(int(p), c) for p, pp, c in rows if int(pp) in frontier]
        found.extend(children)
        frontier = {p for p, _c in children}
    return found


def _start_up(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``esafety up`` on embedded defaults, once its proxy workers and admin answer; and its
    proxy port."""
    proxy_port, admin_port, status_port = free_port(), free_port(), _free_pair()
    config = tmp_path / "esafety.yaml"
    config.write_text(yaml.safe_dump({"listen": {"proxy_status": f"127.0.0.1:{status_port}"},
                                      "logging": {"format": "text"}}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("ESAFETY_REDIS_URL", "ESAFETY_CONFIG", "ESAFETY_DATA_DIR")}
    up = subprocess.Popen(
        [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
         str(tmp_path / "data"), "up", "--proxy-listen", f"127.0.0.1:{proxy_port}",
         "--admin-listen", f"127.0.0.1:{admin_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if all(_get(u) == 200 for u in (f"http://127.0.0.1:{status_port}/healthz",
                                        f"http://127.0.0.1:{status_port + 1}/healthz",
                                        f"http://127.0.0.1:{admin_port}/readyz")):
            return up, proxy_port
        if up.poll() is not None:
            raise AssertionError(up.stderr.read().decode() if up.stderr else "up stopped")
        time.sleep(0.3)
    up.kill()
    raise AssertionError("esafety up did not become healthy")


def _alive(processes: list[tuple[int, str]]) -> list[str]:
    alive = []
    for pid, name in processes:
        try:
            os.kill(pid, 0)
            alive.append(name)
        except ProcessLookupError:
            pass
    return alive


def test_up_starts_everything_on_embedded_defaults_and_stops_cleanly(tmp_path: Path) -> None:
    up, proxy_port = _start_up(tmp_path)
    try:
        names = [c for _p, c in _descendants(up.pid)]
        assert "redis-server" in names  # embedded, because no redis_url is configured
        assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()  # AOF on
        status, body = curl_plain(f"http://127.0.0.1:{proxy_port}", "http://gunbroker.com/")
        assert status == 403 and "Firearms and weapons" in body
        assert (tmp_path / "data" / "ca" / "mitmproxy-ca-cert.pem").is_file()
        # Once ready, up is a small supervisor (same pid) that got its plan through a pipe: no
        # Redis password is on any process's command line or in its environment, which other
        # local users may read.
        passwords = [f.read_text().strip() for f in (tmp_path / "data" / "redis").glob("*.password")]
        assert len(passwords) >= 2
        for pid in [up.pid, *(p for p, _c in _descendants(up.pid))]:
            for part in ("cmdline", "environ"):
                seen = Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace")
                assert not any(secret in seen for secret in passwords), (pid, part)
    finally:
        everything = _descendants(up.pid)
        up.send_signal(signal.SIGTERM)
        up.wait(40)
    assert up.returncode == 0
    time.sleep(0.5)
    assert _alive(everything) == []


def test_up_killed_outright_leaves_no_redis_worker_or_admin_behind(tmp_path: Path) -> None:
    """SIGKILL (the out-of-memory killer, say) gives ``esafety up`` no chance to stop its
    children: the kernel tells each of them, so no orphaned Redis keeps the data directory and
    no worker keeps serving the port, and the next start begins clean."""
    up, proxy_port = _start_up(tmp_path)
    everything = _descendants(up.pid)
    assert "redis-server" in [name for _pid, name in everything]
    up.kill()
    up.wait(10)
    deadline = time.monotonic() + 20
    while _alive(everything) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _alive(everything)
    for pid, _name in everything:  # whatever the outcome, this test leaves nothing running
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", proxy_port)) != 0
