"""A real three-node Redis Cluster on loopback for the tests.

Three ``redis-server --cluster-enabled yes`` processes on free ports in a directory of their
own (no persistence), joined with ``redis-cli --cluster create ... --cluster-replicas 0``, so
every node is a master holding a third of the slots. The nodes ask for a password (given to
the tools by environment or file, never on a command line); :attr:`RedisCluster.url` is the
``redis+cluster://`` URL the services use, naming the password file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis as sync_redis

from esafety.embedded_redis import find_redis_server, free_port, write_private

MAX_CLIENT_PORT = 55535
"""redis-server refuses a cluster node on a higher port (it would put the cluster bus on port
+ 10000); the bus gets a free port of its own (``cluster-port``)."""


def find_redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("redis-cli is needed for the Redis Cluster tests: apt-get install "
                           "redis-tools (or make system-deps)")
    return found


@dataclass
class RedisClusterNodes:
    """Three cluster-enabled redis-server processes, joined into one cluster by :meth:`start`."""

    directory: Path
    size: int = 3
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def password_file(self) -> Path:
        return self.directory / "password"

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+cluster://{nodes}/?password_file={self.password_file}"

    def client(self, port: int) -> sync_redis.Redis:
        """A plain client to one node (not cluster-aware)."""
        return sync_redis.Redis(port=port, password=self.password, decode_responses=True,
                                socket_timeout=5)

    def start(self, timeout: float = 30.0) -> RedisClusterNodes:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.password_file, self.password + "\n")
        server = find_redis_server()
        try:
            for _ in range(self.size):
                port = free_port()
                while port > MAX_CLIENT_PORT:
                    port = free_port()
                node_dir = self.directory / str(port)
                node_dir.mkdir(mode=0o700)
                conf = node_dir / "redis.conf"
                write_private(conf, "\n".join([
                    f"port {port}", "bind 127.0.0.1", "cluster-enabled yes",
                    f"cluster-port {free_port()}",
                    f"cluster-config-file {node_dir / 'nodes.conf'}",
                    "cluster-node-timeout 5000", "save \"\"", "appendonly no",
                    f"dir {node_dir}", f"logfile {node_dir / 'redis.log'}",
                    f"requirepass {self.password}", f"masterauth {self.password}"]) + "\n")
                self.ports.append(port)
                self.processes.append(subprocess.Popen(
                    [server, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self._wait(lambda port: bool(self.client(port).ping()), timeout, "start")
            env = {**os.environ, "REDISCLI_AUTH": self.password}
            done = subprocess.run(
                [find_redis_cli(), "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                env=env, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout}"
                                   f"{done.stderr}")
            self._wait(self._cluster_ok, timeout, "join the cluster")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, ready: Callable[[int], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                try:
                    if ready(port):
                        break
                except (sync_redis.RedisError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Redis Cluster node {port} did not {what}")
                time.sleep(0.1)

    def _cluster_ok(self, port: int) -> bool:
        info = self.client(port).execute_command("CLUSTER", "INFO")
        if isinstance(info, dict):
            return info.get("cluster_state") == "ok"
        return "cluster_state:ok" in str(info)

    def masters(self) -> list[str]:
        """The ``host:port`` of every master, as one node's CLUSTER NODES lists them."""
        text = str(self.client(self.ports[0]).execute_command("CLUSTER", "NODES"))
        return sorted(line.split()[1].split("@")[0] for line in text.splitlines()
                      if "master" in line.split()[2].split(","))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
