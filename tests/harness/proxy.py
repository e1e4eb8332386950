"""Real components for proxy tests: loopback HTTP/HTTPS origins, a real ``esafety proxy``
process, and clients (curl, raw sockets)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as sync_redis
import trustme
import yaml
from aiohttp import web

from tests.harness.list_fixtures import list_tree

REPO = Path(__file__).resolve().parent.parent.parent
ADDONS = REPO / "tests" / "harness" / "addons"
PROXY_LISTS = list_tree("proxy_lists")

ORIGIN_NAMES = [
    "origin.test", "www.origin.test", "allowed.test", "mixed-content.test", "casino-royale.test",
    "friendface.test", "www.friendface.test", "mybank.test", "hatesite.test",
    "doh.known-resolver.test", "doh.unknown-resolver.test", "dns.other-resolver.test",
    "www.google.com", "google.com", "www.google.co.uk", "www.bing.com", "duckduckgo.com",
    "www.youtube.com", "youtube.com", "front.test", "warez-site.test", "localhost",
]


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, what: str,
                       log_text: Callable[[], str], timeout: float = 30.0) -> None:
    """Wait for ``url`` to answer 200; fail with the process's log if it exits or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start: {log_text()[-3000:]}")


def stop_process(process: subprocess.Popen[bytes] | None, grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if the process has not stopped within ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SeenRequest:
    """One request as an origin received it."""

    scheme: str
    method: str
    host: str
    path_qs: str
    headers: dict[str, str]
    peer_port: int = 0
    """The source port of the connection it came on: one value per upstream connection."""

    def mentions(self, text: str) -> bool:
        text = text.lower()
        return text in self.path_qs.lower() or text in self.host.lower()


SEEN = web.AppKey("seen", list[SeenRequest])


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    request.app[SEEN].append(SeenRequest(
        "https" if request.secure else "http", request.method, request.host,
        request.path_qs, dict(request.headers), int(peer[1]) if peer else 0))
    return web.json_response({
        "method": request.method,
        "host": request.host,
        "path": request.path,
        "query": request.query_string,
        "headers": dict(request.headers),
        "body_length": len(body),
    })


@dataclass
class Origins:
    """An HTTP and an HTTPS echo server on loopback; the HTTPS one has a certificate from a
    test CA for every name the tests use. Both record every request they receive (``seen``),
    and a raw TCP listener on ``raw_port`` records every connection and byte (``raw_seen``),
    so a test asserts a leak where it would happen: at the origin."""

    ca: trustme.CA
    ca_file: Path
    http_port: int
    https_port: int
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _runner: web.AppRunner
    seen: list[SeenRequest] = field(default_factory=list)
    raw_port: int = 0
    raw_seen: list[bytes] = field(default_factory=list)
    """One entry per raw TCP connection: every byte it carried (b"" if it sent none)."""
    _raw_server: asyncio.Server | None = None

    def saw(self, text: str) -> list[SeenRequest]:
        """Requests whose host or path mentions ``text`` (case-insensitive)."""
        return [r for r in list(self.seen) if r.mentions(text)]

    def raw_saw(self, marker: bytes) -> bool:
        return any(marker in data for data in list(self.raw_seen))

    def raw_mark(self) -> int:
        """The number of raw connections so far (compare with ``raw_connections_since``)."""
        return len(self.raw_seen)

    def raw_connections_since(self, mark: int) -> list[bytes]:
        return list(self.raw_seen)[mark:]

    def stop(self) -> None:
        if self._raw_server is not None:
            self._loop.call_soon_threadsafe(self._raw_server.close)
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def start_origins(directory: Path) -> Origins:
    ca = trustme.CA()
    ca_file = directory / "origin-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert = ca.issue_cert(*ORIGIN_NAMES)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])
    http_port, https_port, raw_port = free_port(), free_port(), free_port()
    loop = asyncio.new_event_loop()
    seen: list[SeenRequest] = []
    raw_seen: list[bytes] = []
    app = web.Application()
    app[SEEN] = seen
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    servers: list[asyncio.Server] = []

    async def record_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(raw_seen)
        raw_seen.append(b"")
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), 30):
                raw_seen[index] += chunk
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def setup() -> None:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", http_port).start()
            await web.TCPSite(runner, "127.0.0.1", https_port, ssl_context=context).start()
            servers.append(await asyncio.start_server(record_raw, "127.0.0.1", raw_port))

        loop.run_until_complete(setup())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    return Origins(ca, ca_file, http_port, https_port, loop, thread, runner, seen, raw_port,
                   raw_seen, servers[0])


STATUS_SPAN = 64


def allow_origins(config_file: Path, origins: Origins) -> None:
    """Let the proxy reach the loopback origins (and nothing else internal): their two ports
    go into ``upstream.allow_internal``, next to whatever the test put there."""
    config = yaml.safe_load(config_file.read_text()) or {}
    upstream = config.setdefault("upstream", {})
    allowed = upstream.setdefault("allow_internal", [])
    for port in (origins.http_port, origins.https_port):
        if f"127.0.0.1:{port}" not in allowed:
            allowed.append(f"127.0.0.1:{port}")
    config_file.write_text(yaml.safe_dump(config))


@dataclass
class ProxyProcess:
    """A real ``esafety proxy`` subprocess with its own data directory and config."""

    data_dir: Path
    config_file: Path
    redis_url: str | None
    origins: Origins
    port: int = field(default_factory=free_port)
    status_port: int = field(default_factory=free_port)
    clock_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None
    fast_path: bool = True
    """False runs ``--no-fast-path``: mitmproxy handles every connection."""
    mitm_options: tuple[str, ...] = ()
    """``KEY=VALUE`` mitmproxy options (``--mitm-option``)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """More environment for the proxy process (e.g. ``KRB5_CONFIG`` for a test realm)."""

    def __post_init__(self) -> None:
        # A status port whose protected range (worker i answers on it + i) misses the origins.
        while any(0 <= p - self.status_port < STATUS_SPAN for p in
                  (self.origins.http_port, self.origins.https_port, self.origins.raw_port)):
            self.status_port = free_port()
        allow_origins(self.config_file, self.origins)

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        return self.data_dir / "ca" / "mitmproxy-ca-cert.pem"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("ESAFETY_CONFIG", None)
        env["ESAFETY_TEST_PORTS"] = f"80={self.origins.http_port},443={self.origins.https_port}"
        if self.redis_url:
            env["ESAFETY_REDIS_URL"] = self.redis_url
        else:
            env.pop("ESAFETY_REDIS_URL", None)
        if self.clock_file is not None:
            env["ESAFETY_TEST_CLOCK_FILE"] = str(self.clock_file)
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--config", str(self.config_file),
             "--data-dir", str(self.data_dir), *args],
            input=stdin, capture_output=True, text=True, env=self.env(), timeout=120)

    def start(self, timeout: float = 30.0) -> ProxyProcess:
        scripts = ["--script", str(ADDONS / "host_map.py")]
        if self.clock_file is not None:
            scripts += ["--script", str(ADDONS / "fake_clock.py")]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.data_dir / f"proxy-{self.port}.log"
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "esafety.cli", "--config", str(self.config_file),
             "--data-dir", str(self.data_dir), "proxy", "--listen", f"127.0.0.1:{self.port}",
             "--status-listen", f"127.0.0.1:{self.status_port}", "--workers", "1", *scripts,
             "--mitm-option", f"ssl_verify_upstream_trusted_ca={self.origins.ca_file}",
             *([] if self.fast_path else ["--no-fast-path"]),
             *(arg for option in self.mitm_options for arg in ("--mitm-option", option))],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_until_healthy(self.process, f"http://127.0.0.1:{self.status_port}/healthz",
                           "proxy", self.log_text, timeout)
        return self

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file else ""

    def stop(self) -> None:
        stop_process(self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def status(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}{path}",
                                        timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def write_config(path: Path, prefix: str, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "centre_id": "test-centre",
        "redis_prefix": prefix,
        "admin_public_url": "http://admin.test:8090",
        "proxy_auth": {"mode": "off"},
        "decryption": {"safe_search": True, "youtube_restrict": "strict"},
        "logging": {"format": "text", "level": "info"},
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class CurlResult:
    exit_code: int
    status: int
    body: str
    headers: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.body)


def curl(proxy: ProxyProcess, url: str, *args: str, user: tuple[str, str] | None = None,
         cacert: Path | None = None, timeout: float = 15) -> CurlResult:
    """curl through the proxy; trusts the esafety CA unless ``cacert`` says otherwise."""
    cmd = ["curl", "-sS", "--max-time", str(timeout), "-x", proxy.proxy_url, "-D", "-",
           "-o", "-", "-w", "\n__STATUS__%{http_code}", "--cacert", str(cacert or proxy.ca_cert),
           "--noproxy", "", url, *args]
    if user is not None:
        cmd += ["--proxy-user", f"{user[0]}:{user[1]}"]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout + 5)
    stdout = done.stdout.decode("utf-8", "replace")
    out, _, status = stdout.rpartition("\n__STATUS__")
    headers, _, body = out.partition("\r\n\r\n")
    while body.startswith("HTTP/"):  # the CONNECT response comes first for HTTPS
        headers, _, body = body.partition("\r\n\r\n")
    return CurlResult(done.returncode, int(status or 0), body, headers,
                      done.stderr.decode("utf-8", "replace"))


@contextmanager
def raw_connection(proxy: ProxyProcess, timeout: float = 10) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def read_response_head(sock: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def curl_plain(proxy_url: str, url: str, timeout: float = 15) -> tuple[int, str]:
    """(status, body) of one plain-HTTP request through any proxy."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-x", proxy_url,
                           "--noproxy", "", "-w", "\n__STATUS__%{http_code}", url],
                          capture_output=True, env=env, timeout=timeout + 5)
    body, _, status = done.stdout.decode("utf-8", "replace").rpartition("\n__STATUS__")
    return int(status or 0), body


def worker_counter(proxy: ProxyProcess, name: str) -> float:
    """Worker 0's counter ``name`` (from its /metrics)."""
    status, text = proxy.status("/metrics")
    assert status == 200, text
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} in /metrics")


def fast_tunnel_count(proxy: ProxyProcess) -> float:
    """Worker 0's count of tunnels the fast path relayed."""
    return worker_counter(proxy, "esafety_proxy_fast_tunnels_total")


@contextmanager
def proxy_on_fixture_lists(directory: Path, redis_url: str, origins: Origins,
                           extra_env: dict[str, str] | None = None, fast_path: bool = True,
                           **config: Any) -> Iterator[ProxyProcess]:
    """A started proxy with a key prefix of its own, the fixture lists imported and ``config``
    as :func:`write_config` overrides; stopped, and its keys deleted, at the end."""
    prefix = f"esafety-test-{os.urandom(5).hex()}:"
    config_file = write_config(directory / "esafety.yaml", prefix, **config)
    process = ProxyProcess(directory / "data", config_file, redis_url, origins,
                           extra_env=extra_env or {}, fast_path=fast_path)
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process.start()
    try:
        yield process
    finally:
        process.stop()
        client = sync_redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()
