"""Benchmark of the filtering proxy against bare mitmdump, squid and e2guardian.

This is a benchmark, not a test: it reports figures against the targets from the issue and
never fails on them. Everything runs on loopback, one proxy at a time, in the same run:

* origin: nginx (HTTP and HTTPS ports, a small static body, one worker process), with a
  certificate from a throw-away CA for every test name;
* ``mitmdump``: the venv's bare mitmdump, ``connection_strategy=lazy``, quiet, and
  ``--ignore-hosts '.*'`` for the HTTPS workloads (so it tunnels without decrypting, as
  esafety does for allowed hosts);
* ``esafety``: ``esafety proxy`` with the full filter: identity from a configured network
  range, the decision on the fixture lists (``tests/fixtures/proxy_lists.yaml``, written out and imported with
  ``esafety lists import``), and every request logged (``logging.log_allowed: true``) to a
  real Redis (an embedded redis-server on a free loopback port); one worker, and two workers
  sharing the port (``--workers 2``);
* ``squid`` and ``e2guardian`` when installed, on the same blocked domains and URLs
  (whatever the esafety policy blocks for the ``learner`` group at the time of the run),
  tunnelling HTTPS without decryption and logging every request.

Name resolution: every proxy resolves the test names (``allowed.test``...) to loopback in the
same way: squid through its ``hosts_file`` directive, and mitmdump, esafety and e2guardian in
a private mount namespace (``unshare -m``) whose ``/etc/hosts`` is a bind-mounted file, so the
machine's own ``/etc/hosts`` is never touched. ``tests/harness/addons/host_map.py`` (``--host-map``)
is not the default: it rewrites ``server.address`` to ``127.0.0.1``, so mitmproxy's
``connection_spec_matches`` never finds the open upstream connection again; every keep-alive
request opens a new upstream connection, and the sixth request on a client connection stalls
until the origin drops the idle ones (nginx's keepalive_timeout), which made plain-HTTP
keep-alive figures meaningless (about 5 requests per connection).

Workloads (``--connections`` concurrent connections, ``--duration`` seconds each):

1. ``http_keepalive``: plain HTTP over keep-alive connections (wrk, absolute-form requests
   from a Lua script);
2. ``https_keepalive``: HTTPS through CONNECT tunnels that are not decrypted, the tunnels
   kept alive (hey ``-x``; hey does not verify certificates);
3. ``https_new_tunnel``: a new tunnel for every request: CONNECT, TLS, one request (hey
   ``-disable-keepalive``);
4. ``mix``: an HTTPS-majority mix run at once: a quarter of the connections plain HTTP (one
   request in ten to a blocked URL), the rest HTTPS tunnels (kept alive, new per request, and
   a search engine that esafety decrypts for safe search while the others tunnel it).

5. ``concurrency``: ``--tunnels`` idle HTTPS tunnels (default 10,000, fewer when the open-files
   limit cannot hold two sockets per tunnel in the proxy) opened through each proxy, each with
   a TLS handshake and one request, then left open: the proxy's resident memory per idle
   tunnel, and the p50/p99 of a request on a fresh connection with none open and with all of
   them open (``bench/idle_tunnels.py``; mitmdump, esafety with one worker, squid, e2guardian
   with ``httpworkers`` raised to hold them all);
6. ``startup_memory``: the resident (RSS) and proportional (PSS) memory of a whole deployment
   once it answers, with the same lists: ``esafety up`` (supervisor, admin service, proxy
   supervisor and 2 workers, embedded Redis), against squid and e2guardian.

For each load run (1-4): requests per second, p50 and p99 latency under that load, and the CPU time of
the proxy (utime + stime from ``/proc/PID/stat`` of the proxy and all its descendants, read
before and after) per request; for the new-tunnel workload that is per tunnel. A second,
light run with one connection measures the latency that mitmdump and esafety add when they
are not saturated. The load generator, the origin and the proxy share the machine's cores;
CPU per request does not depend on that.

Usage: ``python bench/proxy.py [--duration S] [--quick] [--connections N] [--json]``.
With ``--json`` the last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the test fixtures live in tests/
from bench.idle_tunnels import (  # noqa: E402
    idle_run,
    raise_descriptor_limit,
    tree_memory,
    tunnels_possible,
)
from tests.harness.list_fixtures import list_tree  # noqa: E402

HOST_MAP = REPO / "tests" / "harness" / "addons" / "host_map.py"
PROXY_LISTS = list_tree("proxy_lists")

TARGET_RATIO_TO_MITMDUMP = 0.9
TARGET_ADDED_P50_MS = 1.0
TARGET_WORKER_SCALING = 1.8
TARGET_RATIO_TO_E2GUARDIAN = 1.0
TARGET_CHECKS_CPU_RATIO = 1.10
"""With ``--baseline-tree``: proxy CPU per request (per tunnel) may rise at most 10 % against
the earlier tree measured in the same run."""

ALLOWED = "allowed.test"
SEARCH = "www.google.com"
BLOCKED_HTTP = "casino-royale.test"
BLOCKED_URL_HOST = "mixed-content.test"
BLOCKED_URL_PATH = "/adult-section/page"
NAMES = [ALLOWED, SEARCH, "google.com", BLOCKED_HTTP, "www.casino-royale.test", BLOCKED_URL_HOST,
         "friendface.test", "www.friendface.test", "mybank.test", "hatesite.test",
         "warez-site.test", "hide-me-proxy.test", "bet-now.test", "doh.known-resolver.test"]
ORIGIN_MARK = "esafety-bench-origin"
ORIGIN_BODY = (ORIGIN_MARK + " " + "x" * 200 + "\n")

LOAD_WORKLOADS = ("http_keepalive", "https_keepalive", "https_new_tunnel", "mix")
IDLE_WORKLOADS = ("concurrency", "startup_memory")
WORKLOADS = LOAD_WORKLOADS + IDLE_WORKLOADS
TARGET_KB_PER_IDLE_TUNNEL = 30.0
TARGET_IDLE_P99_RATIO = 2.0
TARGET_TREE_MB = 150.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- small helpers -------------------------------------------------------------------------

def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(pair: bool = False) -> int:
    """A free loopback port; with ``pair`` the next port is free too (worker 1's status)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair or port >= 65535:
            return port
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(extra)
    return env


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(roots: Sequence[int]) -> float:
    """utime + stime of the processes ``roots`` and their descendants (all threads)."""
    ticks = 0
    for root in roots:
        for pid in process_tree(root):
            fields = _stat_fields(pid)
            if fields is not None:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def context_switches(roots: Sequence[int]) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of ``roots`` and their descendants, all
    threads: many voluntary switches per request mean the event loop wakes for little work
    each time (few ready events per ``epoll_wait``)."""
    voluntary = involuntary = 0
    for root in roots:
        for pid in process_tree(root):
            with suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    with suppress(OSError):
                        for line in Path(f"/proc/{pid}/task/{task}/status").read_text(
                                ).splitlines():
                            if line.startswith("voluntary_ctxt_switches:"):
                                voluntary += int(line.split()[1])
                            elif line.startswith("nonvoluntary_ctxt_switches:"):
                                involuntary += int(line.split()[1])
    return voluntary, involuntary


def system_busy_seconds() -> float:
    """CPU time spent by every process on the machine (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError, ValueError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f}s")


def _read_response(sock: socket.socket, head_only: bool = False) -> tuple[int, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    if head_only:
        return status, ""
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    deadline = time.monotonic() + 5
    while (length is None or len(body) < length) and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body.decode("utf-8", "replace")


def proxy_get(port: int, url: str, timeout: float = 5.0) -> tuple[int, str]:
    """An absolute-form GET through the proxy: (status, body)."""
    host = url.split("://", 1)[1].split("/", 1)[0]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                     "User-Agent: esafety-bench\r\n\r\n".encode())
        return _read_response(sock)


def proxy_connect(port: int, authority: str, timeout: float = 5.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        return _read_response(sock, head_only=True)[0]


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] == "Z"


# -- the origin ----------------------------------------------------------------------------

@dataclass
class Origin:
    http_port: int
    https_port: int
    ca_file: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process)


def start_origin(work: Path) -> Origin:
    import trustme

    directory = work / "nginx"
    directory.mkdir()
    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = ca.issue_cert(*NAMES)
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    with (directory / "cert.pem").open("ab") as fh:
        for extra in cert.cert_chain_pems[1:]:
            fh.write(extra.bytes())
    # Browsers tunnel HTTPS to port 443, and so does the proxies' common case; use it when it is
    # free on loopback (running as root), so that each proxy's usual path is what is measured.
    http_port, https_port = free_port(), (443 if port_is_free(443) else free_port())
    (directory / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        listen 127.0.0.1:{https_port} ssl backlog=4096;
        server_name _;
        ssl_certificate {directory}/cert.pem;
        ssl_certificate_key {directory}/key.pem;
        location / {{ default_type text/plain; return 200 "{ORIGIN_BODY.strip()}\\n"; }}
    }}
}}
""")
    process = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=(directory / "stderr.log").open("wb"))
    origin = Origin(http_port, https_port, ca_file, process)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError("nginx exited: " + (directory / "stderr.log").read_text()[-500:])
        with socket.create_connection(("127.0.0.1", http_port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return _read_response(sock)[0] == 200

    wait_for(ready, 15, "nginx")
    return origin


# -- proxies -------------------------------------------------------------------------------

@dataclass
class Proxy:
    """One proxy under test, started fresh for each run."""

    name: str
    port: int
    roots: list[int] = field(default_factory=list)
    stop: Callable[[], None] = lambda: None
    notes: str = ""

    def cpu(self) -> float:
        return cpu_seconds(self.roots)


@dataclass
class Context:
    work: Path
    origin: Origin
    redis_url: str = ""
    redis_pid: int | None = None
    esafety_config: Path | None = None
    esafety_data: Path | None = None
    blocked_domains: list[str] = field(default_factory=list)
    blocked_urls: list[str] = field(default_factory=list)
    hosts_file: Path | None = None
    log: list[str] = field(default_factory=list)
    stop_redis: Callable[[], None] | None = None
    use_host_map: bool = False
    baseline_tree: Path | None = None
    baseline_config: Path | None = None
    baseline_data: Path | None = None
    baseline_redis_url: str = ""
    stop_baseline_redis: Callable[[], None] | None = None
    profile_dir: Path | None = None
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)


def with_hosts(ctx: Context, argv: list[str]) -> list[str]:
    """``argv`` run in its own mount namespace whose /etc/hosts maps the test names to
    loopback (the machine's /etc/hosts is untouched). With ``--host-map`` the mitmproxy-based
    proxies use ``tests/harness/addons/host_map.py`` instead."""
    assert ctx.hosts_file is not None
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
            str(ctx.hosts_file), *argv]


def wait_proxy_ready(proxy_port: int, ctx: Context, process: subprocess.Popen[bytes] | None,
                     log_file: Path | None, what: str, timeout: float = 30) -> None:
    url = f"http://{ALLOWED}:{ctx.origin.http_port}/ready"

    def ready() -> bool:
        if process is not None and process.poll() is not None:
            tail = log_file.read_text(errors="replace")[-1500:] if log_file else ""
            raise RuntimeError(f"{what} exited: {tail}")
        return proxy_get(proxy_port, url, timeout=2)[0] == 200

    wait_for(ready, timeout, what)


def mitmdump_binary() -> Path:
    beside = Path(sys.executable).parent / "mitmdump"
    return beside if beside.exists() else REPO / ".venv" / "bin" / "mitmdump"


def start_mitmdump(ctx: Context, ignore_all: bool) -> Proxy:
    port = free_port()
    confdir = ctx.work / "mitmdump-conf"
    confdir.mkdir(exist_ok=True)
    log_file = ctx.work / f"mitmdump-{port}.log"
    argv = [str(mitmdump_binary()), "--listen-host", "127.0.0.1", "-p", str(port), "-q",
            "--set", "connection_strategy=lazy", "--set", f"confdir={confdir}"]
    if ignore_all:
        argv += ["--ignore-hosts", ".*"]
    argv = [*argv, "-s", str(HOST_MAP)] if ctx.use_host_map else with_hosts(ctx, argv)
    env = clean_env(ESAFETY_TEST_PORTS=f"80={ctx.origin.http_port},443={ctx.origin.https_port}")
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                               stdout=log_file.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_proxy_ready(port, ctx, process, log_file, "mitmdump")
    except Exception:
        stop_process(process)
        raise
    return Proxy("mitmdump", port, [process.pid], lambda: stop_process(process))


def esafety_cli(ctx: Context, *args: str, baseline: bool = False) -> list[str]:
    config, data = ((ctx.baseline_config, ctx.baseline_data) if baseline
                    else (ctx.esafety_config, ctx.esafety_data))
    assert config is not None and data is not None
    return [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
            str(data), *args]


def esafety_env(ctx: Context, baseline: bool = False) -> dict[str, str]:
    env = clean_env(ESAFETY_TEST_PORTS=f"80={ctx.origin.http_port},443={ctx.origin.https_port}",
                    ESAFETY_REDIS_URL=ctx.baseline_redis_url if baseline else ctx.redis_url)
    env.pop("ESAFETY_CONFIG", None)
    env.pop("ESAFETY_DATA_DIR", None)
    if baseline:
        assert ctx.baseline_tree is not None
        env["PYTHONPATH"] = str(ctx.baseline_tree)
    return env


def upstream_section(ctx: Context) -> dict[str, Any]:
    """What the proxy may reach: the loopback origin's two ports, and nothing else internal."""
    hp, sp = ctx.origin.http_port, ctx.origin.https_port
    return {"connect_ports": sorted({443, sp}), "http_ports": sorted({80, hp}),
            "allow_internal": [f"127.0.0.1:{hp}", f"127.0.0.1:{sp}"]}


def _tree_knows_section(tree: Path, section: str) -> bool:
    """Whether the config schema of the esafety source ``tree`` has the top-level ``section``
    (the config module moved from ``esafety/`` to ``deployment/``)."""
    for module in (tree / "deployment" / "config.py", tree / "esafety" / "config.py"):
        if module.is_file() and f'"{section}"' in module.read_text(encoding="utf-8"):
            return True
    return False


def prepare_baseline(ctx: Context, tree: Path, config: dict[str, Any]) -> None:
    """An earlier esafety source tree as a second contender, ``esafety_before``, measured in
    the same run: its own data directory and the same lists and config (minus any section its
    config schema predates), with its own loopback redis-server, so "before and after" are compared on the
    same machine at the same time."""
    import yaml

    if not (tree / "esafety" / "cli.py").is_file():
        raise SystemExit(f"--baseline-tree {tree}: not an esafety source tree")
    if not list((tree / "categories").glob("_urlfast*.so")):
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=tree,
                       check=True, capture_output=True, timeout=300)
    directory = ctx.work / "esafety-before"
    directory.mkdir()
    port = free_port()
    redis_dir = directory / "redis"
    redis_dir.mkdir()
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(redis_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx.stop_baseline_redis = lambda: stop_process(process)
    ctx.baseline_redis_url = f"redis://127.0.0.1:{port}/0"
    def redis_answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_for(redis_answers, 15, "baseline redis-server")
    ctx.baseline_tree = tree
    ctx.baseline_config = directory / "esafety.yaml"
    ctx.baseline_config.write_text(yaml.safe_dump(
        {k: v for k, v in config.items() if _tree_knows_section(tree, k)}))
    ctx.baseline_data = directory / "data"
    done = subprocess.run(esafety_cli(ctx, "lists", "import", str(PROXY_LISTS), "--source",
                                      "fixtures", baseline=True),
                          env=esafety_env(ctx, baseline=True), capture_output=True, text=True,
                          timeout=300, cwd=tree)
    if done.returncode != 0:
        raise RuntimeError(f"baseline lists import failed: {done.stdout}{done.stderr}")
    ctx.log.append(f"baseline esafety from {tree} with redis-server on {ctx.baseline_redis_url}")


def prepare_esafety(ctx: Context, baseline_tree: Path | None = None) -> None:
    """Config, embedded Redis, the fixture lists imported, and what the policy blocks."""
    import yaml

    from esafety.embedded_redis import EmbeddedRedis

    directory = ctx.work / "esafety"
    directory.mkdir()
    redis = EmbeddedRedis(directory / "redis")
    redis.start()
    ctx.stop_redis = redis.stop
    ctx.redis_url = redis.url
    ctx.redis_pid = redis.pid
    ctx.log.append(f"embedded redis-server on {redis.url}")
    config = {
        "centre_id": "bench",
        "redis_prefix": "esafety-bench:",
        "proxy_auth": {"mode": "off"},
        "networks": [{"cidr": "127.0.0.0/8", "group": "learner", "site": "bench-wifi"}],
        "logging": {"log_allowed": True, "level": "warning", "format": "json"},
        "upstream": upstream_section(ctx),
    }
    if baseline_tree is not None:
        prepare_baseline(ctx, baseline_tree, config)
    ctx.esafety_config = directory / "esafety.yaml"
    ctx.esafety_config.write_text(yaml.safe_dump(config))
    ctx.esafety_data = directory / "data"
    done = subprocess.run(esafety_cli(ctx, "lists", "import", str(PROXY_LISTS), "--source",
                                      "fixtures"),
                          env=esafety_env(ctx), capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"esafety lists import failed: {done.stdout}{done.stderr}")
    # What the esafety policy blocks for the learner group now is what the peers block.
    from deployment.instance import Instance

    instance = Instance.resolve(str(ctx.esafety_config), str(ctx.esafety_data), ctx.redis_url)
    policy = instance.load_policy()
    now = datetime.now(UTC)
    domains: set[str] = set()
    urls: set[str] = set()
    for path in sorted(PROXY_LISTS.glob("*/*")):
        for raw in path.read_text().splitlines():
            entry = raw.strip().lower()
            if not entry or entry.startswith("#"):
                continue
            if path.name == "domains":
                if policy.decide(f"http://{entry}/", group="learner", at=now).blocked:
                    domains.add(entry)
            elif path.name == "urls":
                host, _, rest = entry.partition("/")
                if policy.decide(f"http://{entry}", group="learner", at=now).blocked:
                    urls.add(f"{host}/{rest}")
    ctx.blocked_domains = sorted(domains)
    ctx.blocked_urls = sorted(urls)
    hosts = ctx.work / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in NAMES))
    hosts.chmod(0o644)
    ctx.hosts_file = hosts


def start_esafety(ctx: Context, workers: int, baseline: bool = False,
                  event_loop: str | None = None) -> Proxy:
    port = free_port()
    status = free_port(pair=True)
    log_file = ctx.work / f"esafety{'-before' if baseline else ''}-{port}.log"
    argv = esafety_cli(ctx, "proxy", "--listen", f"127.0.0.1:{port}",
                       "--status-listen", f"127.0.0.1:{status}", "--workers", str(workers),
                       "--mitm-option", f"ssl_verify_upstream_trusted_ca={ctx.origin.ca_file}",
                       baseline=baseline)
    argv = [*argv, "--script", str(HOST_MAP)] if ctx.use_host_map else with_hosts(ctx, argv)
    tree = ctx.baseline_tree if baseline and ctx.baseline_tree else REPO
    env = esafety_env(ctx, baseline)
    if event_loop is not None:
        env["ESAFETY_EVENT_LOOP"] = event_loop
    process = subprocess.Popen(argv, env=env, cwd=tree,
                               stdin=subprocess.DEVNULL, stdout=log_file.open("wb"),
                               stderr=subprocess.STDOUT)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError("esafety proxy exited: " + log_file.read_text()[-1500:])
        for index in range(workers):
            with socket.create_connection(("127.0.0.1", status + index), timeout=1) as sock:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if _read_response(sock)[0] != 200:
                    return False
        return True

    try:
        wait_for(ready, 60, f"esafety proxy ({workers} workers)")
        wait_proxy_ready(port, ctx, process, log_file, "esafety proxy")
    except Exception:
        stop_process(process, 30)
        raise
    name = "esafety" if workers == 1 else f"esafety_workers{workers}"
    if baseline:
        name = "esafety_before"
    if event_loop not in (None, "asyncio"):
        name += f"_{event_loop}"
    return Proxy(name, port, [process.pid], lambda: stop_process(process, 30))


def squid_domains(domains: Sequence[str]) -> list[str]:
    """A dstdomain list: ``.domain`` entries with no domain and its subdomain both present."""
    kept: list[str] = []
    for labels in sorted(tuple(reversed(d.split("."))) for d in domains):
        if kept and labels[:len(kept[-1].split("."))] == tuple(kept[-1].split(".")):
            continue
        kept.append(".".join(labels))
    return ["." + ".".join(reversed(k.split("."))) for k in kept]


def url_regex(entry: str) -> str:
    host, _, path = entry.partition("/")
    return (r"^https?://([^/]*\.)?" + re.escape(host) + r"(:[0-9]+)?/" + re.escape(path)
            + r"([/?#]|$)")


def start_squid(ctx: Context) -> Proxy:
    binary = shutil.which("squid")
    if binary is None:
        raise RuntimeError("squid is not installed (apt-get install squid)")
    assert ctx.hosts_file is not None
    directory = ctx.work / "squid"
    directory.mkdir(exist_ok=True)
    port = free_port()
    (directory / "blocked_domains").write_text(
        "\n".join(squid_domains(ctx.blocked_domains)) + "\n")
    (directory / "blocked_urls").write_text(
        "".join(url_regex(u) + "\n" for u in ctx.blocked_urls) or "^$never\n")
    conf = directory / f"squid-{port}.conf"
    conf.write_text(f"""
http_port 127.0.0.1:{port}
workers 1
pid_filename {directory}/squid-{port}.pid
cache_log {directory}/cache.log
access_log stdio:{directory}/access.log
cache deny all
cache_mem 8 MB
coredump_dir {directory}
hosts_file {ctx.hosts_file}
dns_nameservers 127.0.0.1
netdb_filename none
visible_hostname esafety-bench
shutdown_lifetime 0 seconds
max_filedescriptors 65536
acl blocked_domains dstdomain "{directory}/blocked_domains"
acl blocked_urls url_regex -i "{directory}/blocked_urls"
http_access deny blocked_domains
http_access deny blocked_urls
http_access allow localhost
http_access deny all
""")
    shutil.chown(directory, "proxy")
    for path in directory.iterdir():
        shutil.chown(path, "proxy")
    log_file = directory / f"squid-{port}.out"
    process = subprocess.Popen([binary, "-N", "-f", str(conf)], stdin=subprocess.DEVNULL,
                               stdout=log_file.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_proxy_ready(port, ctx, process, directory / "cache.log", "squid")
    except Exception:
        stop_process(process)
        raise
    return Proxy("squid", port, [process.pid], lambda: stop_process(process, 20),
                 notes="squid -N, workers 1, no cache, access_log stdio, dstdomain + url_regex")


def start_e2guardian(ctx: Context, http_workers: int | None = None) -> Proxy:
    """e2guardian on the same lists; ``http_workers`` raises its connection limit (one worker
    thread per client connection; 500 by default)."""
    binary = shutil.which("e2guardian")
    if binary is None:
        raise RuntimeError("e2guardian is not installed (apt-get install e2guardian)")
    if shutil.which("unshare") is None:
        raise RuntimeError("unshare is needed to give e2guardian its own /etc/hosts")
    assert ctx.hosts_file is not None
    port, spare = free_port(), free_port()
    directory = ctx.work / f"e2guardian-{port}"
    etc = directory / "etc"
    shutil.copytree("/etc/e2guardian", etc, symlinks=True)
    for path in etc.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with suppress(UnicodeDecodeError):
                text = path.read_text()
                if "/etc/e2guardian" in text:
                    path.write_text(text.replace("/etc/e2guardian", str(etc)))
    lists = etc / "lists"
    (lists / "bannedsitelist").write_text("".join(d + "\n" for d in ctx.blocked_domains))
    (lists / "bannedurllist").write_text("".join(u + "\n" for u in ctx.blocked_urls))
    conf = etc / "e2guardian.conf"
    text = conf.read_text()
    replacements = {
        r"^filterip\s*=.*$": "filterip = 127.0.0.1",
        r"^filterports\s*=.*$": f"filterports = {port}",
        r"^transparenthttpsport\s*=.*$": f"transparenthttpsport = {spare}",
        r"^nodaemon\s*=.*$": "nodaemon = off",
        r"^loglevel\s*=.*$": "loglevel = 3",
    }
    if http_workers is not None:
        replacements[r"^httpworkers\s*=.*$"] = f"httpworkers = {http_workers}"
    for pattern, value in replacements.items():
        text = re.sub(pattern, value, text, flags=re.M)
    text += (f"\nloglocation = '{directory}/log/access.log'\n"
             f"pidfilename = '{directory}/e2guardian.pid'\n")
    conf.write_text(text)
    (directory / "log").mkdir()
    for path in [directory, *directory.rglob("*")]:
        shutil.chown(path, "e2guardian", "e2guardian")
    log_file = directory / "start.log"
    # Its own mount namespace, where /etc/hosts resolves the test names to loopback (the
    # machine's /etc/hosts is untouched). It daemonizes; stop it by its pid file.
    done = subprocess.run(with_hosts(ctx, [binary, "-c", str(conf)]), stdin=subprocess.DEVNULL,
                          stdout=log_file.open("wb"), stderr=subprocess.STDOUT, timeout=60)
    pid_file = directory / "e2guardian.pid"
    if done.returncode != 0:
        raise RuntimeError("e2guardian did not start: " + log_file.read_text()[-800:])

    def read_pid() -> int:
        return int(pid_file.read_text().split()[0])

    try:
        wait_for(lambda: pid_file.exists() and read_pid() > 0, 20, "e2guardian pid file")
        wait_proxy_ready(port, ctx, None, None, "e2guardian")
    except Exception:
        if pid_file.exists():
            stop_pid(read_pid())
        raise
    pid = read_pid()
    return Proxy("e2guardian", port, [pid], lambda: stop_pid(pid, 20),
                 notes="e2guardian 5 daemon, no MITM, bannedsitelist + bannedurllist, "
                       "loglevel 3 (every request), own /etc/hosts via unshare -m")


# -- load ----------------------------------------------------------------------------------

@dataclass
class Load:
    requests: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    loadgen_cpu_s: float = 0.0
    components: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Job:
    name: str
    argv: list[str]
    kind: str  # "wrk" or "hey"
    out: Path
    process: subprocess.Popen[bytes] | None = None


def wrk_script(path: Path, urls: Sequence[str]) -> Path:
    entries = ", ".join(
        "{" + f"url = {json.dumps(u)}, host = {json.dumps(u.split('://', 1)[1].split('/', 1)[0])}"
        + "}" for u in urls)
    path.write_text(f"""
local targets = {{ {entries} }}
local n = 0
request = function()
  n = n + 1
  local t = targets[(n % #targets) + 1]
  return wrk.format("GET", t.url, {{ Host = t.host }})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCHJSON {{\\"requests\\": %d, \\"duration_us\\": %d, "
    .. "\\"socket_errors\\": %d, \\"status_errors\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d}}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
""")
    return path


def wrk_job(name: str, proxy: Proxy, urls: Sequence[str], connections: int, seconds: float,
            work: Path) -> Job:
    script = wrk_script(work / f"wrk-{name}.lua", urls)
    threads = max(1, min(connections, os.cpu_count() or 1))
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{proxy.port}"]
    return Job(name, argv, "wrk", work / f"out-{name}.txt")


def hey_job(name: str, proxy: Proxy, url: str, connections: int, seconds: float, work: Path,
            keepalive: bool = True) -> Job:
    argv = ["hey", "-z", f"{seconds:g}s", "-c", str(connections), "-t", "10",
            "-x", f"http://127.0.0.1:{proxy.port}"]
    if not keepalive:
        argv.append("-disable-keepalive")
    argv.append(url)
    return Job(name, argv, "hey", work / f"out-{name}.txt")


def parse_wrk(text: str, blocked_share: float) -> dict[str, float]:
    match = re.search(r"^BENCHJSON (\{.*\})$", text, re.M)
    if match is None:
        raise RuntimeError("wrk gave no summary: " + text[-800:])
    data = json.loads(match.group(1))
    seconds = data["duration_us"] / 1e6
    # Non-2xx answers (blocks) count as answered requests; wrk tallies them as status errors.
    expected_blocks = int(data["requests"] * blocked_share * 1.2) + 5
    bad_status = max(0, data["status_errors"] - expected_blocks) if blocked_share else \
        data["status_errors"]
    return {"requests": data["requests"], "seconds": seconds,
            "errors": data["socket_errors"] + bad_status,
            "ok": data["requests"] - bad_status,
            "p50_ms": data["p50_us"] / 1000, "p99_ms": data["p99_us"] / 1000}


def parse_hey(text: str) -> dict[str, float]:
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    if total is None:
        raise RuntimeError("hey gave no summary: " + text[-800:])
    ok = sum(int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)
             if code.startswith("2"))
    other = sum(int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)
                if not code.startswith("2"))
    errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+(?!.*responses)", text, re.M))

    def pct(p: int) -> float:
        m = re.search(rf"^\s+{p}% in ([\d.]+) secs", text, re.M)
        return float(m.group(1)) * 1000 if m else float("nan")

    return {"requests": ok + other, "seconds": float(total.group(1)), "errors": errors + other,
            "ok": ok, "p50_ms": pct(50), "p99_ms": pct(99)}


def run_jobs(jobs: Sequence[Job], seconds: float, blocked_share: float = 0.0) -> Load:
    """Run the load generators at once; wait for all; merge their figures."""
    env = clean_env()
    for job in jobs:
        job.process = subprocess.Popen(job.argv, env=env, stdin=subprocess.DEVNULL,
                                       stdout=job.out.open("wb"), stderr=subprocess.STDOUT)
    load = Load()
    deadline = time.monotonic() + seconds + 60
    for job in jobs:
        assert job.process is not None
        rusage = None
        while time.monotonic() < deadline:
            pid, _status, usage = os.wait4(job.process.pid, os.WNOHANG)
            if pid:
                rusage = usage
                job.process.returncode = 0
                break
            time.sleep(0.05)
        if rusage is None:
            job.process.kill()
            job.process.wait()
            raise RuntimeError(f"{job.name} did not finish in time")
        load.loadgen_cpu_s += rusage.ru_utime + rusage.ru_stime
        text = job.out.read_text(errors="replace")
        figures = parse_wrk(text, blocked_share) if job.kind == "wrk" else parse_hey(text)
        load.components[job.name] = figures
    comps = list(load.components.values())
    load.requests = int(sum(c["requests"] for c in comps))
    load.ok = int(sum(c["ok"] for c in comps))
    load.errors = int(sum(c["errors"] for c in comps))
    load.seconds = max(c["seconds"] for c in comps)
    # One component: its percentiles. Several: the worst component's (a bound, not a merge).
    load.p50_ms = max(c["p50_ms"] for c in comps)
    load.p99_ms = max(c["p99_ms"] for c in comps)
    return load


def https_origin_url(host: str, port: int, path: str) -> str:
    """An HTTPS URL on the origin, without ``:443``: hey (Go) sends no TLS server name for a
    URL that spells the default port, which no browser does, and esafety closes a tunnel to
    a host it decrypts (safe search) when the ClientHello names no server."""
    return f"https://{host}{'' if port == 443 else f':{port}'}{path}"


def workload_jobs(workload: str, proxy: Proxy, ctx: Context, connections: int, seconds: float,
                  tag: str) -> tuple[list[Job], float]:
    """The load generators of one workload and the share of requests meant to be blocked."""
    http_url = f"http://{ALLOWED}:{ctx.origin.http_port}/bench/page?id=1"
    https_url = https_origin_url(ALLOWED, ctx.origin.https_port, "/bench/page?id=1")
    work = ctx.work
    if workload == "http_keepalive":
        return [wrk_job(f"{tag}-http", proxy, [http_url], connections, seconds, work)], 0.0
    if workload == "https_keepalive":
        return [hey_job(f"{tag}-https", proxy, https_url, connections, seconds, work)], 0.0
    if workload == "https_new_tunnel":
        return [hey_job(f"{tag}-tunnel", proxy, https_url, connections, seconds, work,
                        keepalive=False)], 0.0
    assert workload == "mix"
    quarter = max(1, connections // 4)
    blocked = [f"http://{BLOCKED_HTTP}:{ctx.origin.http_port}/spin",
               f"http://{BLOCKED_URL_HOST}:{ctx.origin.http_port}{BLOCKED_URL_PATH}"]
    allowed = [f"http://{ALLOWED}:{ctx.origin.http_port}/mix/{i}?q={i}" for i in range(18)]
    http_urls = allowed[:9] + blocked[:1] + allowed[9:] + blocked[1:]  # one in ten blocked
    search_url = https_origin_url(SEARCH, ctx.origin.https_port, "/search?q=bench")
    jobs = [
        wrk_job(f"{tag}-mix-http", proxy, http_urls, quarter, seconds, work),
        hey_job(f"{tag}-mix-https-keepalive", proxy, https_url,
                max(1, connections - 3 * quarter + quarter // 2), seconds, work),
        hey_job(f"{tag}-mix-https-tunnel", proxy, https_url, quarter, seconds, work,
                keepalive=False),
        hey_job(f"{tag}-mix-search", proxy, search_url, max(1, quarter // 2), seconds, work),
    ]
    return jobs, 2 / len(http_urls)


# -- runs ----------------------------------------------------------------------------------

@dataclass
class Result:
    proxy: str
    workload: str
    connections: int
    load: Load
    cpu_s: float
    origin_cpu_s: float
    redis_cpu_s: float | None
    other_cpu_s: float = 0.0
    switches: tuple[int, int] = (0, 0)
    """The proxy's (voluntary, involuntary) context switches during the run."""

    def as_dict(self) -> dict[str, Any]:
        load = self.load
        per = 1000 / load.requests if load.requests else float("nan")
        out: dict[str, Any] = {
            "rps": round(load.requests / load.seconds, 1) if load.seconds else 0.0,
            "p50_ms": round(load.p50_ms, 3),
            "p99_ms": round(load.p99_ms, 3),
            "cpu_ms_per_request": round(self.cpu_s * per, 4),
            "requests": load.requests,
            "errors": load.errors,
            "connections": self.connections,
            "proxy_cpu_s": round(self.cpu_s, 2),
            "proxy_cores_busy": round(self.cpu_s / load.seconds, 2) if load.seconds else 0.0,
            "origin_cpu_ms_per_request": round(self.origin_cpu_s * per, 4),
            "loadgen_cpu_ms_per_request": round(load.loadgen_cpu_s * per, 4),
            "other_cores_busy": round(self.other_cpu_s / load.seconds, 2) if load.seconds
            else 0.0,
            "voluntary_switches_per_request": round(self.switches[0] / load.requests, 3)
            if load.requests else None,
            "involuntary_switches_per_request": round(self.switches[1] / load.requests, 3)
            if load.requests else None,
        }
        if self.workload == "https_new_tunnel":
            out["cpu_ms_per_tunnel"] = out["cpu_ms_per_request"]
        if self.redis_cpu_s is not None:
            out["redis_cpu_ms_per_request"] = round(self.redis_cpu_s * per, 4)
        if len(load.components) > 1:
            out["components"] = {
                k.split("-mix-", 1)[-1]: {"rps": round(c["requests"] / c["seconds"], 1),
                                          "p50_ms": round(c["p50_ms"], 3),
                                          "p99_ms": round(c["p99_ms"], 3)}
                for k, c in load.components.items()}
        return out


@contextmanager
def running(start: Callable[[str], Proxy], workload: str) -> Iterator[Proxy]:
    proxy = start(workload)
    try:
        yield proxy
    finally:
        proxy.stop()


def measure(proxy: Proxy, workload: str, ctx: Context, connections: int, seconds: float,
            warmup: float, tag: str) -> Result:
    if warmup > 0:
        jobs, share = workload_jobs(workload, proxy, ctx, connections, warmup, tag + "-warm")
        run_jobs(jobs, warmup, share)
    jobs, share = workload_jobs(workload, proxy, ctx, connections, seconds, tag)
    profiling = start_profiles(proxy, ctx, seconds, tag) if connections > 1 else []
    cpu0, origin0 = proxy.cpu(), cpu_seconds([ctx.origin.process.pid])
    switches0 = context_switches(proxy.roots)
    redis0 = cpu_seconds([ctx.redis_pid]) if ctx.redis_pid else 0.0
    busy0 = system_busy_seconds()
    load = run_jobs(jobs, seconds, share)
    busy1 = system_busy_seconds()
    cpu1, origin1 = proxy.cpu(), cpu_seconds([ctx.origin.process.pid])
    switches1 = context_switches(proxy.roots)
    redis1 = cpu_seconds([ctx.redis_pid]) if ctx.redis_pid else 0.0
    redis_cpu = (redis1 - redis0) if proxy.name.startswith("esafety") else None
    if profiling:
        ctx.profiles[tag] = finish_profiles(profiling)
    # CPU used on the machine by anything else (other people's jobs) during the run.
    other = max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (origin1 - origin0) - (redis1 - redis0)
                - load.loadgen_cpu_s)
    return Result(proxy.name, workload, connections, load, cpu1 - cpu0, origin1 - origin0,
                  redis_cpu, other, (switches1[0] - switches0[0], switches1[1] - switches0[1]))


def check_blocks(proxy: Proxy, ctx: Context) -> dict[str, bool]:
    """Whether the proxy blocks what it should (True = blocked/refused) and passes the rest."""
    hp, sp = ctx.origin.http_port, ctx.origin.https_port

    def blocked_get(url: str) -> bool:
        status, body = proxy_get(proxy.port, url)
        return status != 200 or ORIGIN_MARK not in body

    out = {
        "http_allowed_passes": not blocked_get(f"http://{ALLOWED}:{hp}/x"),
        "http_blocked_domain": blocked_get(f"http://www.{BLOCKED_HTTP}:{hp}/x"),
        "http_blocked_url": blocked_get(f"http://{BLOCKED_URL_HOST}:{hp}{BLOCKED_URL_PATH}"),
        "connect_allowed_passes": proxy_connect(proxy.port, f"{ALLOWED}:{sp}") == 200,
    }
    with suppress(OSError):
        out["connect_blocked_domain"] = proxy_connect(proxy.port, f"{BLOCKED_HTTP}:{sp}") != 200
    return out


# -- profiles (--profile) ------------------------------------------------------------------

PROFILE_RATE = 250
"""py-spy samples per second per process."""


def py_spy_binary() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_profiles(proxy: Proxy, ctx: Context, seconds: float, tag: str
                   ) -> list[tuple[Path, subprocess.Popen[bytes]]]:
    """py-spy on each of an esafety proxy's processes for the measured run (``--profile``)."""
    if ctx.profile_dir is None or not proxy.name.startswith("esafety"):
        return []
    out = []
    for pid in tree_pids(proxy):
        path = ctx.profile_dir / f"{tag}-{pid}.txt"
        process = subprocess.Popen(
            [py_spy_binary() or "py-spy", "record", "--pid", str(pid), "--duration",
             str(max(1, round(seconds))),
             "--rate", str(PROFILE_RATE), "--format", "raw", "--nonblocking", "-o", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append((path, process))
    return out


def _where(frame: str) -> str:
    """The part of the system a stack frame belongs to (``func (path:line)``)."""
    path = frame.rsplit("(", 1)[-1]
    for part, name in (("mitmproxy/proxy/layers", "mitmproxy layers"),
                       ("mitmproxy/", "mitmproxy other"), ("asyncio/", "asyncio"),
                       ("ssl.py", "ssl"), ("redis/", "redis-py"), ("aiohttp/", "aiohttp"),
                       ("proxy_addons/tunnel_front", "esafety fast path"),
                       ("proxy_addons/", "esafety addons"), ("categories/", "esafety matcher"),
                       ("store/", "esafety store")):
        if part in path:
            return name
    return "other"


def finish_profiles(profiles: Sequence[tuple[Path, subprocess.Popen[bytes]]]
                    ) -> dict[str, Any]:
    """Where the samples of a run fell: the leaf functions and the parts of the system
    (share of all samples, in %), merged over the processes."""
    leaves: dict[str, int] = {}
    parts: dict[str, int] = {}
    total = 0
    for path, process in profiles:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            leaf = frames[-1]
            total += count
            leaves[leaf] = leaves.get(leaf, 0) + count
            # The innermost frame of our code or mitmproxy's says whose work it is.
            part = next((_where(f) for f in reversed(frames) if _where(f) != "other"), "other")
            parts[part] = parts.get(part, 0) + count
    top = sorted(leaves.items(), key=lambda item: -item[1])[:15]
    return {"samples": total,
            "parts_pct": {k: round(100 * v / total, 1) for k, v in
                          sorted(parts.items(), key=lambda item: -item[1])} if total else {},
            "top_leaf_pct": {k: round(100 * v / total, 1) for k, v in top} if total else {}}


def print_profiles(profiles: dict[str, dict[str, Any]]) -> None:
    for tag, profile in profiles.items():
        print(f"\nprofile {tag} ({profile['samples']} samples at {PROFILE_RATE}/s per process):")
        print("  by part: " + ", ".join(f"{k} {v}%" for k, v in profile["parts_pct"].items()))
        for frame, pct in profile["top_leaf_pct"].items():
            print(f"  {pct:5.1f}%  {frame[:110]}")


# -- idle tunnels and memory at start ------------------------------------------------------

def tree_pids(proxy: Proxy) -> list[int]:
    return [pid for root in proxy.roots for pid in process_tree(root)]


def measure_idle(proxy: Proxy, ctx: Context, tunnels: int, samples: int) -> dict[str, Any]:
    """``tunnels`` idle tunnels through ``proxy``: what each costs it, and the latency of a
    fresh connection with them open."""
    run = asyncio.run(idle_run(proxy.port, ALLOWED, ctx.origin.https_port, ctx.origin.ca_file,
                               tunnels, tree_pids(proxy), samples))
    return run.as_dict()


def memory_at_start(pids: Sequence[int]) -> dict[str, Any]:
    processes = tree_memory(pids)
    return {"rss_mb": round(sum(p.rss_kb for p in processes) / 1024, 1),
            "pss_mb": round(sum(p.pss_kb for p in processes) / 1024, 1),
            "processes": [{"pid": p.pid, "command": p.command,
                           "rss_mb": round(p.rss_kb / 1024, 1),
                           "pss_mb": round(p.pss_kb / 1024, 1)} for p in processes]}


def start_deployment(ctx: Context) -> Proxy:
    """``esafety up`` on a data directory of its own (embedded Redis, the admin service, the
    proxy with 2 workers), the bench's lists imported into it through the running service."""
    import yaml

    assert ctx.esafety_config is not None
    directory = ctx.work / "deployment"
    directory.mkdir(exist_ok=True)
    proxy_port, admin_port, status_port = free_port(), free_port(), free_port(pair=True)
    config = yaml.safe_load(ctx.esafety_config.read_text())
    config["listen"] = {"proxy": f"127.0.0.1:{proxy_port}", "admin": f"127.0.0.1:{admin_port}",
                        "proxy_status": f"127.0.0.1:{status_port}"}
    config_file = directory / "esafety.yaml"
    config_file.write_text(yaml.safe_dump(config))
    base = [sys.executable, "-m", "esafety.cli", "--config", str(config_file), "--data-dir",
            str(directory / "data")]
    env = esafety_env(ctx)
    env.pop("ESAFETY_REDIS_URL", None)
    log_file = directory / "up.log"
    argv = with_hosts(ctx, [*base, "up"])
    process = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                               stdout=log_file.open("wb"), stderr=subprocess.STDOUT)
    proxy = Proxy("esafety_up", proxy_port, [process.pid], lambda: stop_process(process, 60))
    try:
        wait_proxy_ready(proxy_port, ctx, process, log_file, "esafety up", timeout=90)
        done = subprocess.run([*base, "lists", "import", str(PROXY_LISTS), "--source",
                               "fixtures"], env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"lists import into esafety up failed: {done.stdout}{done.stderr}")
        blocked = f"http://{BLOCKED_HTTP}:{ctx.origin.http_port}/x"
        wait_for(lambda: proxy_get(proxy_port, blocked, timeout=2)[0] == 403, 60,
                 "esafety up blocking with the imported lists")
    except Exception:
        proxy.stop()
        raise
    return proxy


def started_in_turn(starters: dict[str, Callable[[], Proxy]], workload: str,
                    unavailable: dict[str, str], say: Callable[[str], None]
                    ) -> Iterator[tuple[str, Proxy]]:
    """Each contender started in turn (one at a time), and stopped once the caller is done
    with it; one that cannot start is reported as unavailable and skipped."""
    for name, starter in starters.items():
        try:
            proxy = starter()
        except Exception as exc:
            unavailable[f"{name} ({workload})"] = f"{type(exc).__name__}: {exc}"[:600]
            say(f"{name} unavailable: {exc}")
            continue
        try:
            say(f"{workload}: {name} ...")
            yield name, proxy
        finally:
            proxy.stop()


def run_idle_workloads(workloads: Sequence[str], ctx: Context, args: argparse.Namespace,
                       unavailable: dict[str, str], say: Callable[[str], None]
                       ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "concurrency" in workloads:
        limit = raise_descriptor_limit()
        count = tunnels_possible(args.tunnels, limit)
        say(f"concurrency: {count} idle tunnels per proxy (asked {args.tunnels}; open-files "
            f"limit {limit})")
        entry: dict[str, Any] = {"open_files_limit": limit, "tunnels": count}
        starters: dict[str, Callable[[], Proxy]] = {
            "mitmdump": lambda: start_mitmdump(ctx, ignore_all=True),
            "esafety": lambda: start_esafety(ctx, 1),
        }
        if ctx.baseline_tree is not None:
            starters["esafety_before"] = lambda: start_esafety(ctx, 1, baseline=True)
        for loop in args.event_loops:
            if loop != "asyncio":
                starters[f"esafety_{loop}"] = (
                    lambda loop=loop: start_esafety(ctx, 1, event_loop=loop))  # type: ignore[misc]
        if not args.no_peers:
            starters["squid"] = lambda: start_squid(ctx)
            starters["e2guardian"] = lambda: start_e2guardian(ctx, http_workers=count + 200)
        for name, proxy in started_in_turn(starters, "concurrency", unavailable, say):
            entry[name] = measure_idle(proxy, ctx, count, args.idle_samples)
        out["concurrency"] = entry
    if "startup_memory" in workloads:
        memory: dict[str, Any] = {}
        starters = {"esafety_up": lambda: start_deployment(ctx),
                    "mitmdump": lambda: start_mitmdump(ctx, ignore_all=True)}
        if not args.no_peers:
            starters["squid"] = lambda: start_squid(ctx)
            starters["e2guardian"] = lambda: start_e2guardian(ctx)
        for name, proxy in started_in_turn(starters, "startup_memory", unavailable, say):
            time.sleep(3.0)
            memory[name] = memory_at_start(tree_pids(proxy))
        out["startup_memory"] = memory
    return out


def idle_targets(idle: dict[str, Any]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    concurrency = idle.get("concurrency", {})
    if "esafety" in concurrency:
        mine = concurrency["esafety"]
        targets["idle_tunnels"] = {
            "kb_per_tunnel": mine["rss_kb_per_tunnel"],
            "kb_target": TARGET_KB_PER_IDLE_TUNNEL,
            "kb_met": mine["rss_kb_per_tunnel"] <= TARGET_KB_PER_IDLE_TUNNEL,
            "p99_ratio": mine["p99_ratio"], "p99_ratio_target": TARGET_IDLE_P99_RATIO,
            "p99_ratio_met": (mine["p99_ratio"] or 99) <= TARGET_IDLE_P99_RATIO,
            "tunnels": concurrency.get("tunnels")}
    memory = idle.get("startup_memory", {})
    if "esafety_up" in memory:
        targets["startup_memory"] = {"rss_mb": memory["esafety_up"]["rss_mb"],
                                     "pss_mb": memory["esafety_up"]["pss_mb"],
                                     "target_mb": TARGET_TREE_MB,
                                     "met": memory["esafety_up"]["rss_mb"] <= TARGET_TREE_MB}
    return targets


def print_idle(idle: dict[str, Any]) -> None:
    concurrency = idle.get("concurrency")
    if concurrency:
        print(f"\nconcurrency: {concurrency['tunnels']} idle HTTPS tunnels per proxy (open-files "
              f"limit {concurrency['open_files_limit']})")
        cols = ("proxy", "open", "failed", "KB/tunnel", "RSS MB", "p50 none", "p99 none",
                "p50 open", "p99 open", "p99 x")
        widths = (17, 7, 7, 10, 8, 9, 9, 9, 9, 7)
        print("  ".join(c.rjust(w) if i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(cols, widths, strict=True))))
        for name, d in concurrency.items():
            if not isinstance(d, dict):
                continue
            cells = (name, str(d["tunnels_open"]), str(d["tunnels_failed"]),
                     fmt(d["rss_kb_per_tunnel"], 1), fmt(d["rss_after_mb"], 0),
                     fmt(d["fresh_p50_ms_none_open"]), fmt(d["fresh_p99_ms_none_open"]),
                     fmt(d["fresh_p50_ms_all_open"]), fmt(d["fresh_p99_ms_all_open"]),
                     fmt(d["p99_ratio"]))
            print("  ".join(c.rjust(w) if i else c.ljust(w)
                            for i, (c, w) in enumerate(zip(cells, widths, strict=True))))
            if d.get("first_error"):
                print(f"  {name}: first failure: {d['first_error']}")
    memory = idle.get("startup_memory")
    if memory:
        print("\nmemory at start (whole process tree, same lists):")
        for name, d in memory.items():
            print(f"  {name}: RSS {d['rss_mb']:.1f} MB, PSS {d['pss_mb']:.1f} MB")
            if len(d["processes"]) > 1:
                for p in d["processes"]:
                    print(f"    {p['pid']:>7}  RSS {p['rss_mb']:6.1f} MB  PSS {p['pss_mb']:6.1f} MB"
                          f"  {p['command']}")


# -- report --------------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per measured run (default 10)")
    parser.add_argument("--quick", action="store_true",
                        help="3-second runs and shorter warm-ups, for a smoke check")
    parser.add_argument("--connections", type=int, default=32,
                        help="concurrent client connections under load (default 32)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated subset of " + ",".join(WORKLOADS))
    parser.add_argument("--no-peers", action="store_true", help="skip squid and e2guardian")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--host-map", action="store_true",
                        help="route mitmdump/esafety upstream with tests/harness/addons/host_map.py "
                             "instead of a private /etc/hosts (note: it defeats mitmproxy's "
                             "upstream keep-alive, see the module docstring)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the figures as the last line")
    parser.add_argument("--tunnels", type=int, default=10_000,
                        help="idle tunnels per proxy in the concurrency workload (default "
                             "10000; fewer if the open-files limit cannot hold them)")
    parser.add_argument("--idle-samples", type=int, default=200,
                        help="fresh-connection requests timed before and with the idle "
                             "tunnels open (default 200)")
    parser.add_argument("--profile", action="store_true",
                        help="sample esafety's processes with py-spy during each measured run "
                             "and print where the time goes (the sampling itself costs a "
                             "little of the machine's CPU)")
    parser.add_argument("--event-loops", default="asyncio",
                        help="comma-separated event loops esafety runs on, each a contender "
                             "(asyncio, uvloop; default asyncio)")
    parser.add_argument("--baseline-tree", type=Path, metavar="DIR",
                        help="an earlier esafety source tree (e.g. `git worktree add DIR REV`), "
                             "run as a further contender, esafety_before, in the same run")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else args.duration
    warmup = 0.5 if args.quick else min(2.0, max(1.0, seconds / 5))
    light_seconds = max(2.0, seconds / 3)
    workloads = [w for w in args.workloads.split(",") if w]
    args.event_loops = [e for e in args.event_loops.split(",") if e]
    if set(args.event_loops) - {"asyncio", "uvloop"}:
        parser.error("--event-loops takes asyncio and uvloop")
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    for tool in ("wrk", "hey", "nginx", "unshare"):
        if shutil.which(tool) is None:
            sys.stderr.write(f"bench/proxy.py needs {tool} (apt-get install wrk hey nginx-light)\n")
            return 2

    work = Path(tempfile.mkdtemp(prefix="esafety-bench-proxy-"))
    work.chmod(0o755)
    results: dict[str, dict[str, Result]] = {w: {} for w in workloads if w in LOAD_WORKLOADS}
    light: dict[str, dict[str, Result]] = {w: {} for w in workloads if w in LOAD_WORKLOADS}
    idle: dict[str, Any] = {}
    checks: dict[str, dict[str, bool]] = {}
    unavailable: dict[str, str] = {}
    notes: dict[str, str] = {}
    origin: Origin | None = None
    ctx: Context | None = None
    started = time.monotonic()

    def say(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    try:
        origin = start_origin(work)
        ctx = here = Context(work, origin, use_host_map=args.host_map)
        if args.profile:
            if py_spy_binary() is None:
                sys.stderr.write("--profile needs py-spy (pip install py-spy)\n")
                return 2
            here.profile_dir = work / "profiles"
            here.profile_dir.mkdir()
        prepare_esafety(here, args.baseline_tree.resolve() if args.baseline_tree else None)
        say(f"origin nginx on 127.0.0.1:{origin.http_port} (http) and :{origin.https_port} "
            f"(https); blocked for learners now: {len(here.blocked_domains)} domains, "
            f"{len(here.blocked_urls)} URLs")
        starters: dict[str, Callable[[str], Proxy]] = {
            "mitmdump": lambda w: start_mitmdump(here, ignore_all=w != "http_keepalive"),
            "esafety": lambda w: start_esafety(here, 1),
            "esafety_workers2": lambda w: start_esafety(here, 2),
        }
        if here.baseline_tree is not None:
            starters["esafety_before"] = lambda w: start_esafety(here, 1, baseline=True)
        if "uvloop" in args.event_loops:
            starters["esafety_uvloop"] = lambda w: start_esafety(here, 1, event_loop="uvloop")
        if not args.no_peers:
            starters["squid"] = lambda w: start_squid(here)
            starters["e2guardian"] = lambda w: start_e2guardian(here)
        idle = run_idle_workloads([w for w in workloads if w in IDLE_WORKLOADS], here, args,
                                  unavailable, say)
        for workload in [w for w in workloads if w in LOAD_WORKLOADS]:
            for name, starter in starters.items():
                if name in unavailable:
                    continue
                if workload == "mix" and name in ("esafety", "esafety_before", "esafety_uvloop"):
                    continue  # the mix compares deployments: esafety runs one worker per core
                try:
                    with running(starter, workload) as proxy:
                        if proxy.notes:
                            notes[name] = proxy.notes
                        if name not in checks:
                            checks[name] = check_blocks(proxy, here)
                        say(f"{workload}: {name} ...")
                        result = measure(proxy, workload, here, args.connections, seconds,
                                         warmup, f"{name}-{workload}")
                        results[workload][name] = result
                        if name in ("mitmdump", "esafety", "esafety_before", "esafety_uvloop"):
                            light[workload][name] = measure(
                                proxy, workload, here, 1, light_seconds, 0.0,
                                f"{name}-{workload}-light")
                except Exception as exc:
                    if name in ("squid", "e2guardian"):
                        unavailable[name] = f"{type(exc).__name__}: {exc}"[:600]
                        say(f"{name} unavailable: {unavailable[name]}")
                    else:
                        raise
    finally:
        if ctx is not None and ctx.stop_redis is not None:
            ctx.stop_redis()
        if ctx is not None and ctx.stop_baseline_redis is not None:
            ctx.stop_baseline_redis()
        if origin is not None:
            origin.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    report = build_report(results, light, checks, unavailable, notes, ctx, seconds,
                          args.connections, time.monotonic() - started)
    report["idle"] = idle
    report["targets"].update(idle_targets(idle))
    if ctx is not None and ctx.profiles:
        report["profiles"] = ctx.profiles
    print_table(report)
    print_idle(idle)
    if ctx is not None:
        print_profiles(ctx.profiles)
    if args.keep:
        print(f"work directory kept: {work}")
    if args.json:
        print(json.dumps(report, sort_keys=False))
    return 0


def build_report(results: dict[str, dict[str, Result]], light: dict[str, dict[str, Result]],
                 checks: dict[str, dict[str, bool]], unavailable: dict[str, str],
                 notes: dict[str, str], ctx: Context | None, seconds: float, connections: int,
                 elapsed: float) -> dict[str, Any]:
    report: dict[str, Any] = {
        "bench": "proxy",
        "duration_s": seconds,
        "connections": connections,
        "cores": os.cpu_count(),
        "elapsed_s": round(elapsed, 1),
        "blocked_domains": ctx.blocked_domains if ctx else [],
        "blocked_urls": ctx.blocked_urls if ctx else [],
        "workloads": {},
        "worker_scaling": {},
        "peer_ratios": {},
        "before_after": {},
        "targets": {},
        "block_checks": checks,
        "peers_unavailable": unavailable,
        "peer_config": notes,
        "note": ("load generator (wrk/hey), origin (nginx) and proxy share the same cores; "
                 "cpu_ms_per_request counts the proxy's own processes only. p50/p99 are under "
                 f"{connections} connections; light_* are with one connection. For the mix, "
                 "p50/p99 are the worst component's, esafety runs 2 workers, and esafety "
                 f"decrypts {SEARCH} (safe search) while the others tunnel it. other_cores_busy "
                 "is CPU used on the machine by unrelated processes during the run (a shared "
                 "machine makes req/s noisy; CPU per request is much less affected). "
                 "e2guardian closes the client connection after each block page, so its mix "
                 "shows about one wrk read error per blocked request."),
    }
    for workload, by_proxy in results.items():
        entry: dict[str, Any] = {name: r.as_dict() for name, r in by_proxy.items()}
        for name, r in light.get(workload, {}).items():
            d = r.as_dict()
            entry[name]["light_p50_ms"] = d["p50_ms"]
            entry[name]["light_p99_ms"] = d["p99_ms"]
            entry[name]["light_rps"] = d["rps"]
        base = entry.get("mitmdump")
        for name in ("esafety", "esafety_workers2", "esafety_before", "esafety_uvloop", "squid",
                     "e2guardian"):
            if base is None or name not in entry:
                continue
            mine = entry[name]
            mine["ratio_to_mitmdump"] = {
                "rps": ratio(mine["rps"], base["rps"]),
                "cpu_per_request": ratio(mine["cpu_ms_per_request"], base["cpu_ms_per_request"]),
                "added_p50_ms": round(mine["p50_ms"] - base["p50_ms"], 3),
            }
            if "light_p50_ms" in mine and "light_p50_ms" in base:
                mine["ratio_to_mitmdump"]["added_light_p50_ms"] = round(
                    mine["light_p50_ms"] - base["light_p50_ms"], 3)
        report["workloads"][workload] = entry
        one, two = entry.get("esafety"), entry.get("esafety_workers2")
        before = entry.get("esafety_before")
        if one and before:
            report["before_after"][workload] = {
                "cpu_per_request_ratio": ratio(one["cpu_ms_per_request"],
                                               before["cpu_ms_per_request"]),
                "rps_ratio": ratio(one["rps"], before["rps"]),
                "cpu_ms_per_request_before": before["cpu_ms_per_request"],
                "cpu_ms_per_request_after": one["cpu_ms_per_request"],
                "target_cpu_ratio": TARGET_CHECKS_CPU_RATIO,
                "met": (ratio(one["cpu_ms_per_request"], before["cpu_ms_per_request"]) or 99)
                <= TARGET_CHECKS_CPU_RATIO,
            }
        uv = entry.get("esafety_uvloop")
        if one and uv:
            report.setdefault("event_loop", {})[workload] = {
                "uvloop_rps_ratio": ratio(uv["rps"], one["rps"]),
                "uvloop_cpu_per_request_ratio": ratio(uv["cpu_ms_per_request"],
                                                      one["cpu_ms_per_request"])}
        if one and two:
            report["worker_scaling"][workload] = {
                "rps_ratio": ratio(two["rps"], one["rps"]),
                "cpu_per_request_ratio": ratio(two["cpu_ms_per_request"],
                                               one["cpu_ms_per_request"]),
            }
        peers: dict[str, Any] = {}
        for peer in ("squid", "e2guardian"):
            if peer in entry:
                peers[peer] = {
                    "esafety_1_worker": ratio(one["rps"], entry[peer]["rps"]) if one else None,
                    "esafety_2_workers": ratio(two["rps"], entry[peer]["rps"]) if two else None,
                    "cpu_per_request_esafety_1_worker": ratio(
                        one["cpu_ms_per_request"], entry[peer]["cpu_ms_per_request"])
                    if one else None,
                }
        if peers:
            report["peer_ratios"][workload] = peers
        if one and base:
            added = one["ratio_to_mitmdump"]
            report["targets"][workload] = {
                "rps_ratio_to_mitmdump": added["rps"],
                "rps_ratio_target": TARGET_RATIO_TO_MITMDUMP,
                "rps_ratio_met": (added["rps"] or 0) >= TARGET_RATIO_TO_MITMDUMP,
                "added_p50_ms": added["added_p50_ms"],
                "added_light_p50_ms": added.get("added_light_p50_ms"),
                "added_p50_target_ms": TARGET_ADDED_P50_MS,
                "added_p50_met": added.get("added_light_p50_ms", added["added_p50_ms"])
                <= TARGET_ADDED_P50_MS,
            }
        if one and two:
            report["targets"].setdefault(workload, {})["worker_scaling_met"] = (
                report["worker_scaling"][workload]["rps_ratio"] or 0) >= TARGET_WORKER_SCALING
    mix = report["peer_ratios"].get("mix", {}).get("e2guardian")
    if mix:
        report["targets"]["mix_vs_e2guardian"] = {
            "ratio": mix["esafety_2_workers"], "target": TARGET_RATIO_TO_E2GUARDIAN,
            "met": (mix["esafety_2_workers"] or 0) >= TARGET_RATIO_TO_E2GUARDIAN}
    return report


def print_table(report: dict[str, Any]) -> None:
    cols = ("proxy", "req/s", "p50 ms", "p99 ms", "light p50", "cpu ms/req", "x mitm rps",
            "+p50 ms", "origin ms/req", "errors", "other load")
    widths = (17, 9, 8, 8, 9, 10, 10, 8, 13, 7, 10)
    line = "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                     enumerate(zip(cols, widths, strict=True)))
    print(f"proxy benchmark: {report['duration_s']:g}s per run, {report['connections']} "
          f"connections, {report['cores']} cores shared by load generator, origin and proxy")
    for workload, entry in report["workloads"].items():
        print(f"\n{workload}")
        print(line)
        for name, d in entry.items():
            r = d.get("ratio_to_mitmdump", {})
            cells = (name, fmt(d["rps"], 0), fmt(d["p50_ms"]), fmt(d["p99_ms"]),
                     fmt(d.get("light_p50_ms")), fmt(d["cpu_ms_per_request"], 3),
                     fmt(r.get("rps"), 2), fmt(r.get("added_p50_ms")),
                     fmt(d["origin_cpu_ms_per_request"], 3), str(d["errors"]),
                     fmt(d["other_cores_busy"]))
            print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                            enumerate(zip(cells, widths, strict=True))))
        for name, d in entry.items():
            if "redis_cpu_ms_per_request" in d:
                print(f"  {name}: redis-server {d['redis_cpu_ms_per_request']:.3f} CPU ms/req, "
                      f"proxy busy {d['proxy_cores_busy']:.2f} cores, load generator "
                      f"{d['loadgen_cpu_ms_per_request']:.3f} CPU ms/req, context switches "
                      f"per request {d['voluntary_switches_per_request']} voluntary, "
                      f"{d['involuntary_switches_per_request']} involuntary")
            if "components" in d:
                parts = ", ".join(f"{k} {c['rps']:.0f}/s p50 {c['p50_ms']:.1f}ms"
                                  for k, c in d["components"].items())
                print(f"  {name} mix: {parts}")
    if report["worker_scaling"]:
        print("\nworker scaling, esafety --workers 2 / --workers 1 (2 cores, shared with the "
              "load generator and origin):")
        for workload, s in report["worker_scaling"].items():
            print(f"  {workload}: {fmt(s['rps_ratio'])}x req/s; CPU per request "
                  f"{fmt(s['cpu_per_request_ratio'])}x")
    if report["peer_ratios"]:
        print("\nesafety req/s / peer req/s (same lists, HTTPS tunnelled):")
        for workload, peers in report["peer_ratios"].items():
            for peer, r in peers.items():
                print(f"  {workload} vs {peer}: 1 worker {fmt(r['esafety_1_worker'])}x, "
                      f"2 workers {fmt(r['esafety_2_workers'])}x; CPU/request (1 worker) "
                      f"{fmt(r['cpu_per_request_esafety_1_worker'])}x")
    if report.get("event_loop"):
        print("\nesafety on uvloop / on asyncio (1 worker each, same run):")
        for workload, e in report["event_loop"].items():
            print(f"  {workload}: {fmt(e['uvloop_rps_ratio'])}x req/s; CPU per request "
                  f"{fmt(e['uvloop_cpu_per_request_ratio'])}x")
    if report["before_after"]:
        print("\nthis tree against --baseline-tree (esafety / esafety_before, 1 worker each, same "
              "run):")
        for workload, b in report["before_after"].items():
            print(f"  {workload}: CPU per request {fmt(b['cpu_ms_per_request_after'], 3)} ms "
                  f"against {fmt(b['cpu_ms_per_request_before'], 3)} ms = "
                  f"{fmt(b['cpu_per_request_ratio'], 3)}x (target <= "
                  f"{b['target_cpu_ratio']:.2f}x); req/s {fmt(b['rps_ratio'], 2)}x")
    for peer, why in report["peers_unavailable"].items():
        print(f"\n{peer}: NOT MEASURED: {why}")
    print("\nblock checks (True = blocked for *_blocked_*, passed for *_passes):")
    for name, c in report["block_checks"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in c.items()))
    print("\ntargets:")
    for workload, t in report["targets"].items():
        print(f"  {workload}: " + ", ".join(f"{k}={fmt(v)}" for k, v in t.items()))


if __name__ == "__main__":
    sys.exit(main())
