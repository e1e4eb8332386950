"""Operations: config errors name their key, several workers share a port, a killed worker
loses no hits, and a graceful stop flushes the hit queue."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis as sync_redis

from categories.overrides import Override, OverrideScope
from store.connection import connect
from store.keys import Keys
from store.policy_state import save_override
from tests.harness.proxy import PROXY_LISTS, Origins, curl, curl_plain, free_port, write_config
from tests.harness.proxy import ProxyProcess as _ProxyProcess

REPO = Path(__file__).resolve().parent.parent.parent


def esafety(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esafety.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_config_errors_name_the_key_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "esafety.yaml"
    bad.write_text(
        "centre_id: main\n"
        "proxy_auth:\n"
        "  mode: sometimes\n"
        "networks:\n"
        "  - {cidr: 10.0.0.0/33, group: learner}\n"
        "retention:\n"
        "  hits_days: forever\n"
        "colour: blue\n")
    result = esafety("--config", str(bad), "config", "check")
    assert result.returncode == 2
    assert f"{bad}:3: proxy_auth.mode: must be one of: off, required" in result.stderr
    assert f"{bad}:7: retention.hits_days: must be of type integer" in result.stderr
    assert f"{bad}:8: colour: is not a known field" in result.stderr
    # Structurally valid but wrong in meaning: the address range and an unknown group.
    bad.write_text("networks:\n  - {cidr: 10.0.0.0/33, group: learner}\n"
                   "  - {cidr: 10.1.0.0/24, group: visitors}\n")
    result = esafety("--config", str(bad), "config", "check")
    assert result.returncode == 2
    assert "networks.0.cidr: '10.0.0.0/33' is not an address range" in result.stderr
    assert "networks.1.group: group 'visitors' is not defined under groups" in result.stderr
    # A group that names a category that does not exist, or tries to allow an illegal list.
    bad.write_text("groups:\n  staff:\n    allow: [child_abuse]\n")
    result = esafety("--config", str(bad), "config", "check")
    assert result.returncode == 2 and "child_abuse" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text((REPO / "esafety.example.yaml").read_text())
    assert esafety("--config", str(good), "config", "check").returncode == 0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _wait_healthy(process: subprocess.Popen[bytes], *status_ports: int) -> None:
    """Until every status port answers; fails at once with the process's errors if it exits."""
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if all(_healthy(p) for p in status_ports):
            return
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        time.sleep(0.2)
    raise AssertionError("not healthy in time")


def _hit_ids(url: str, keys: Keys) -> list[str]:
    client = sync_redis.Redis.from_url(url, decode_responses=True)
    try:
        return [f["id"].lower() for _i, f in client.xrange(keys.hits)]
    finally:
        client.close()


def test_killing_a_worker_loses_no_hits(tmp_path: Path, redis_url: str, origins: Origins,
                                        keys: Keys) -> None:
    config = write_config(tmp_path / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    proxy = _ProxyProcess(tmp_path / "data", config, redis_url, origins)
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    status = free_port()
    while not all(_free(status + i) for i in range(2)):
        status = free_port()
    env = proxy.env()
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
         str(proxy.data_dir), "proxy", "--workers", "2", "--listen", f"127.0.0.1:{proxy.port}",
         "--status-listen", f"127.0.0.1:{status}",
         "--script", str(REPO / "tests" / "harness" / "addons" / "host_map.py"),
         "--mitm-option", f"ssl_verify_upstream_trusted_ca={origins.ca_file}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            result = curl(proxy, f"http://casino-royale.test/{n}", timeout=5)
            if result.status == 403:
                seen.append(result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0])
            n += 1

    try:
        deadline = time.monotonic() + 30
        while not (_healthy(status) and _healthy(status + 1)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _healthy(status) and _healthy(status + 1)
        workers = _children(supervisor.pid)
        assert len(workers) == 2
        thread = threading.Thread(target=traffic)
        thread.start()
        time.sleep(1.5)
        os.kill(workers[0], signal.SIGKILL)  # mid-traffic, mid-batch
        time.sleep(1.5)
        stop.set()
        thread.join(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_children(supervisor.pid)) < 2:
            time.sleep(0.2)
        restarted = _children(supervisor.pid)
        assert len(restarted) == 2 and workers[0] not in restarted  # the supervisor restarted it
        deadline = time.monotonic() + 20
        stored: list[str] = []
        while time.monotonic() < deadline:
            stored = _hit_ids(redis_url, keys)
            if set(seen) <= set(stored):
                break
            time.sleep(0.3)
        assert len(seen) > 20
        assert set(seen) <= set(stored), f"lost {len(set(seen) - set(stored))} of {len(seen)}"
        assert len(stored) == len(set(stored))  # none doubled
    finally:
        stop.set()
        supervisor.terminate()
        supervisor.wait(30)
    assert supervisor.returncode == 0
    assert _children(supervisor.pid) == []


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_graceful_stop_flushes_the_hit_queue(tmp_path: Path, redis_url: str,
                                              origins: Origins) -> None:
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    config = write_config(tmp_path / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    proxy = _ProxyProcess(tmp_path / "data", config, redis_url, origins)
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    proxy.start()
    seen = []
    for n in range(20):
        result = curl(proxy, f"http://bet-now.test/{n}")
        seen.append(result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0])
    assert proxy.process is not None
    proxy.process.send_signal(signal.SIGTERM)
    proxy.process.wait(20)
    assert proxy.process.returncode == 0
    assert sorted(_hit_ids(redis_url, keys)) == sorted(seen)
    spool = proxy.data_dir / "spool" / "hits-0.log"
    assert spool.stat().st_size == 0
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=keys.prefix + "*"):
        client.delete(key)
    client.close()


class RecordingOrigin:
    """A plain-HTTP origin on loopback that records every request it receives."""

    def __init__(self) -> None:
        seen = self.seen = []  # type: list[tuple[str, str]]
        headers = self.headers = []  # type: list[dict[str, str]]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.headers.get("Host", ""), self.path))
                headers.append({k.lower(): v for k, v in self.headers.items()})
                body = b"origin content"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hosts(self) -> list[str]:
        return [host.split(":")[0] for host, _path in self.seen]

    def upstream(self) -> dict[str, list[str]]:
        """The config's ``upstream`` section that lets a proxy reach this loopback origin
        (and nothing else internal)."""
        return {"allow_internal": [f"127.0.0.1:{self.port}"]}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _status_pair() -> int:
    status = free_port()
    while not all(_free(status + i) for i in range(2)):
        status = free_port()
    return status


def _worker_metric(status_port: int, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    line = next(x for x in text.splitlines() if x.startswith(name + "{"))
    return int(float(line.rsplit(" ", 1)[1]))  # prometheus_client writes 3 as 3.0


def _worker_requests(status_port: int) -> int:
    return _worker_metric(status_port, "esafety_proxy_requests_total")


def _until_both_workers_served(status: int, proxy_port: int, url: str, least: int,
                               most: int = 400) -> list[tuple[int, str]]:
    """Send requests for ``url`` (a path suffix each) on new connections, 8 at a time, until
    at least ``least`` were sent and both workers have served some; return every answer.
    Which worker accepts a connection on the shared socket is up to the kernel."""
    from concurrent.futures import ThreadPoolExecutor

    answers: list[tuple[int, str]] = []
    with ThreadPoolExecutor(8) as pool:
        while len(answers) < most:
            batch = range(len(answers), len(answers) + 8)
            answers += pool.map(lambda n: curl_plain(f"http://127.0.0.1:{proxy_port}",
                                                     f"{url}{n}"), batch)
            if len(answers) >= least and all(_worker_requests(status + i) > 0
                                             for i in range(2)):
                break
    return answers


def _save_block_override(redis_url: str, keys: Keys, target: str) -> None:
    override = Override(id="ov-workers", target=target, action="block",
                        scope=OverrideScope.EVERYONE, subject=None, created_by="it1",
                        created_at=time.time(), note="blocked by an override only")

    async def save() -> None:
        client = connect(redis_url)
        await save_override(client, keys, override)
        await client.aclose()

    asyncio.run(save())


@pytest.mark.parametrize("naming", ["--redis-url", "ESAFETY_REDIS_URL", "config redis_url"])
def test_every_worker_applies_an_override_whichever_way_redis_is_named(
        naming: str, tmp_path: Path, redis_url: str, keys: Keys) -> None:
    """`esafety proxy --workers 2`: the Redis URL reaches every worker however it is given,
    so an override (here: a block of a site no list blocks) is applied on every request."""
    origin = RecordingOrigin()
    extra_config = {"redis_url": redis_url} if naming == "config redis_url" else {}
    config = write_config(tmp_path / "esafety.yaml", keys.prefix, upstream=origin.upstream(),
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}], **extra_config)
    _save_block_override(redis_url, keys, "override-only.test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    env["ESAFETY_TEST_PORTS"] = f"80={origin.port}"
    if naming == "ESAFETY_REDIS_URL":
        env["ESAFETY_REDIS_URL"] = redis_url
    global_args = ["--redis-url", redis_url] if naming == "--redis-url" else []
    port, status = free_port(), _status_pair()
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "esafety.cli", *global_args, "--config", str(config),
         "--data-dir", str(tmp_path / "data"), "proxy", "--workers", "2",
         "--listen", f"127.0.0.1:{port}", "--status-listen", f"127.0.0.1:{status}",
         "--script", str(REPO / "tests" / "harness" / "addons" / "host_map.py")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(supervisor, status, status + 1)
        # The control: an unlisted site is served, so the origin route works.
        assert curl_plain(f"http://127.0.0.1:{port}", "http://allowed-site.test/ok")[0] == 200
        assert "allowed-site.test" in origin.hosts()
        answers = _until_both_workers_served(status, port, "http://override-only.test/", 40)
        assert [code for code, _ in answers] == [403] * len(answers)
        assert "override-only.test" not in origin.hosts()  # nothing leaked to the origin
        served = [_worker_requests(status), _worker_requests(status + 1)]
        assert all(count > 0 for count in served), served  # both workers took requests
    finally:
        supervisor.terminate()
        supervisor.wait(30)
        origin.stop()
    assert supervisor.returncode == 0


def test_workers_start_from_any_working_directory(tmp_path: Path, redis_url: str,
                                                 keys: Keys) -> None:
    """Started from a folder that is not the code's (e.g. the clone's parent), with the
    package importable only in the parent process, the workers still start and serve."""
    origin = RecordingOrigin()
    config = write_config(tmp_path / "esafety.yaml", keys.prefix, upstream=origin.upstream(),
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ESAFETY_") and k != "PYTHONPATH"}
    env["ESAFETY_TEST_PORTS"] = f"80={origin.port}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bootstrap = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                 "from esafety.cli import main; sys.exit(main())")
    port, status = free_port(), _status_pair()
    supervisor = subprocess.Popen(
        [sys.executable, "-P", "-c", bootstrap, "--redis-url", redis_url, "--config",
         str(config), "--data-dir", str(tmp_path / "data"), "proxy", "--workers", "2",
         "--listen", f"127.0.0.1:{port}", "--status-listen", f"127.0.0.1:{status}",
         "--script", str(REPO / "tests" / "harness" / "addons" / "host_map.py")],
        cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(supervisor, status, status + 1)
        workers = _children(supervisor.pid)
        assert len(workers) == 2
        time.sleep(2)
        assert sorted(_children(supervisor.pid)) == sorted(workers)  # no crash loop
        answers = _until_both_workers_served(status, port, "http://allowed-site.test/", 10)
        assert [code for code, _ in answers] == [200] * len(answers)
        assert len(origin.seen) == len(answers)
        assert all(_worker_requests(status + i) > 0 for i in range(2))
    finally:
        supervisor.terminate()
        supervisor.wait(30)
        origin.stop()
    assert supervisor.returncode == 0


def test_every_worker_gets_the_mitmproxy_options_and_no_fast_path(
        tmp_path: Path, redis_url: str, keys: Keys) -> None:
    """--mitm-option and --no-fast-path reach every worker: each worker applies the option
    (a 5-byte body limit: the origin's answer is refused), and none runs the fast path (no
    connection handed over by it)."""
    origin = RecordingOrigin()
    config = write_config(tmp_path / "esafety.yaml", keys.prefix, upstream=origin.upstream(),
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    env["ESAFETY_TEST_PORTS"] = f"80={origin.port}"
    port, status = free_port(), _status_pair()
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "esafety.cli", "--redis-url", redis_url, "--config", str(config),
         "--data-dir", str(tmp_path / "data"), "proxy", "--workers", "2", "--no-fast-path",
         "--listen", f"127.0.0.1:{port}", "--status-listen", f"127.0.0.1:{status}",
         "--script", str(REPO / "tests" / "harness" / "addons" / "host_map.py"),
         "--mitm-option", "body_size_limit=5"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(supervisor, status, status + 1)
        answers = _until_both_workers_served(status, port, "http://allowed-site.test/", 30)
        assert len(origin.seen) == len(answers)  # the origin answered every request...
        assert all(code == 502 and "body_size_limit" in body for code, body in answers), \
            answers[:3]  # ...and every worker refused its 14-byte body under the option
        assert all(_worker_requests(status + i) > 0 for i in range(2))  # both served
        assert [_worker_metric(status + i, "esafety_proxy_handed_over_total")
                for i in range(2)] == [0, 0]
    finally:
        supervisor.terminate()
        supervisor.wait(30)
        origin.stop()
    assert supervisor.returncode == 0


def test_a_bad_mitmproxy_option_stops_the_workers_with_a_clear_error(
        tmp_path: Path, keys: Keys) -> None:
    config = write_config(tmp_path / "esafety.yaml", keys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    done = subprocess.run(
        [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
         str(tmp_path / "data"), "proxy", "--workers", "2", "--listen",
         f"127.0.0.1:{free_port()}", "--status-listen", f"127.0.0.1:{_status_pair()}",
         "--mitm-option", "no_such_option=1"], env=env, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "bad --mitm-option" in line]
    assert errors and all("no_such_option" in line for line in errors), done.stderr
    assert "Traceback" not in done.stderr and "restarting in" not in done.stderr
