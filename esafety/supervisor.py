"""Run several esafety processes together, restart any that dies, stop all on a signal.

``esafety up`` runs Redis (embedded when none is configured), the proxy and the admin API.
``esafety proxy --workers N`` runs N proxy workers on one port.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from esafety.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from esafety.instance import Instance

log = logging.getLogger("esafety.supervisor")

RESTART_BACKOFF_MAX = 10.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = field(default=0.5)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL)
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


class Supervisor:
    def __init__(self, children: Sequence[Child]) -> None:
        self.children = list(children)
        self._stopping = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                child.start()
            while not self._stopping:
                time.sleep(0.2)
                for child in self.children:
                    assert child.process is not None
                    code = child.process.poll()
                    if code is None or self._stopping:
                        continue
                    lived = time.monotonic() - child.started_at
                    child.backoff = 0.5 if lived > 30 else min(RESTART_BACKOFF_MAX,
                                                               child.backoff * 2)
                    log.error("%s exited with %s; restarting in %.1fs", child.name, code,
                              child.backoff)
                    time.sleep(child.backoff)
                    child.start()
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 0

    def stop(self, timeout: float = 15.0) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in time; killing it", child.name)
                child.process.kill()
                child.process.wait()


def esafety_argv(instance: Instance, *args: str) -> list[str]:
    argv = [sys.executable, "-m", "esafety.cli", "--data-dir", str(instance.data_dir)]
    if instance.config.path is not None:
        argv += ["--config", str(instance.config.path)]
    return argv + list(args)


def run_proxy_workers(instance: Instance, workers: int, *, listen: str | None,
                      status_listen: str | None, extra: Sequence[str] = ()) -> int:
    """N proxy workers on one port (SO_REUSEPORT); worker i answers status on port + i."""
    from proxy_addons.certificate_authority import load_or_create_ca
    from proxy_addons.runner import split_listen

    load_or_create_ca(instance)  # once, before the workers race to create it
    children = []
    status_host, status_port = split_listen(status_listen, 9180) if status_listen else ("", 0)
    for index in range(workers):
        args = ["proxy", "--workers", "1", "--worker-id", str(index), "--reuse-port"]
        if listen:
            args += ["--listen", listen]
        args += ["--status-listen",
                 f"{status_host}:{status_port + index}" if status_listen else "off"]
        children.append(Child(f"proxy worker {index}", esafety_argv(instance, *args, *extra),
                              dict(os.environ)))
    return Supervisor(children).run()


def run_all(instance: Instance, *, proxy_listen: str | None, admin_listen: str | None) -> int:
    from esafety.logs import configure_logging

    configure_logging("supervisor", instance.config.log_level, instance.config.log_format)
    instance.ensure_data_dir()
    env = dict(os.environ)
    redis: EmbeddedRedis | None = None
    if instance.redis_url is None:
        try:
            redis = EmbeddedRedis(instance.data_dir / "redis").start()
        except EmbeddedRedisError as exc:
            sys.stderr.write(f"esafety: {exc}\n")
            return 2
        log.info("embedded Redis on %s (data in %s)", redis.url, redis.directory)
        env["ESAFETY_REDIS_URL"] = redis.url
    else:
        env["ESAFETY_REDIS_URL"] = instance.redis_url
    proxy_args = ["proxy"] + (["--listen", proxy_listen] if proxy_listen else [])
    admin_args = ["admin"] + (["--listen", admin_listen] if admin_listen else [])
    children = [
        Child("proxy", esafety_argv(instance, *proxy_args), env),
        Child("admin", esafety_argv(instance, *admin_args), env),
    ]
    try:
        return Supervisor(children).run()
    finally:
        if redis is not None:
            redis.stop()
