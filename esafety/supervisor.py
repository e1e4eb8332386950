"""Run several esafety processes together, restart any that dies, stop all on a signal.

``esafety up`` runs Redis (embedded when none is configured), the proxy and the admin API.
``esafety proxy --workers N`` runs N proxy workers on one port: the supervisor binds it once
and the workers inherit the socket. Each child gets only its own Redis credentials (with the
embedded Redis, a URL naming its role's 0600 password file) and starts from the package's
own location, whatever the working directory.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from deployment.config import ListenSettings
from deployment.instance import Instance
from deployment.listen_address import parse_listen
from deployment.listen_socket import ListenError, bind_listener, inherited_listener
from deployment.site_settings import settings_path
from esafety.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from esafety.first_run import print_first_run
from proxy_addons.certificate_authority import load_or_create_ca
from store.key_migration import move_legacy_keys_at

log = logging.getLogger("esafety.supervisor")
DEFAULTS = ListenSettings()
"""The built-in listen addresses; their ports are the default for a bare ``HOST``."""

RESTART_BACKOFF_MAX = 10.0


EXIT_CONFIG = 2
"""A child's exit code for a problem a restart cannot fix (its port is taken, bad config):
the supervisor stops everything and exits with it instead of restarting in a loop."""

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
"""The folder holding the esafety packages, from this file's own location."""

BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
             "from esafety.cli import main; sys.exit(main())")
"""How a child starts: ``python -P -c BOOTSTRAP PACKAGE_ROOT args...`` imports esafety from
PACKAGE_ROOT whatever the working directory (``-P``: never from the working directory)."""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = field(default=0.5)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                        pass_fds=self.pass_fds,
                                        preexec_fn=_die_with_parent(os.getpid()))
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """On Linux, a function for ``preexec_fn`` that has the kernel send the child SIGTERM
    when the supervisor dies, even by SIGKILL, so no orphaned worker goes on serving the
    inherited port with nobody to stop it. (The supervisor runs no threads.)"""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the call took effect
            os._exit(1)

    return arrange


class Supervisor:
    def __init__(self, children: Sequence[Child], watched: Path | None = None) -> None:
        self.children = list(children)
        self._stopping = False
        self.watched = watched
        """A settings file: when it changes, every child is restarted to read it."""
        self._watched_stamp = _file_stamp(watched)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        """Run until a signal (exit 0) or a child fails with :data:`EXIT_CONFIG` (exit 2)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            for child in self.children:
                child.start()
            while not self._stopping:
                time.sleep(0.2)
                self._restart_if_settings_changed()
                for child in self.children:
                    assert child.process is not None
                    code = child.process.poll()
                    if code is None or self._stopping:
                        continue
                    if code == EXIT_CONFIG:
                        log.critical("%s cannot run (exit %d, see its message above); stopping "
                                     "everything instead of restarting it", child.name, code)
                        self._stopping = True
                        status = EXIT_CONFIG
                        break
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
        return status

    def _restart_if_settings_changed(self) -> None:
        stamp = _file_stamp(self.watched)
        if stamp == self._watched_stamp or self._stopping:
            return
        self._watched_stamp = stamp
        log.info("%s changed: restarting the services to use it", self.watched)
        self.stop()
        for child in self.children:
            child.start()

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


def _file_stamp(path: Path | None) -> tuple[int, int, int] | None:
    try:
        found = path.stat() if path is not None else None
    except OSError:
        return None
    return (found.st_mtime_ns, found.st_size, found.st_ino) if found is not None else None


def esafety_argv(instance: Instance, *args: str) -> list[str]:
    """The command line of an esafety child process with this instance's data and config."""
    argv = [sys.executable, "-P", "-c", BOOTSTRAP, PACKAGE_ROOT,
            "--data-dir", str(instance.data_dir)]
    if instance.config.path is not None:
        argv += ["--config", str(Path(instance.config.path).resolve())]
    return argv + list(args)


def child_env(instance: Instance, redis_url: str | None = None) -> dict[str, str]:
    """The environment of a child: this one's, with the Redis URL the child must use (a URL
    naming a password file, never a password of its own making)."""
    env = dict(os.environ)
    env.pop("ESAFETY_REDIS_PASSWORD_FILE", None)  # already folded into instance.redis_url
    url = redis_url or instance.redis_url
    if url:
        env["ESAFETY_REDIS_URL"] = url
    else:
        env.pop("ESAFETY_REDIS_URL", None)
    return env


def open_listener(listen: str, default_port: int) -> socket.socket:
    address = parse_listen(listen, default_port)
    return bind_listener(address.host, address.port)


def run_proxy_workers(instance: Instance, workers: int, *, listen: str,
                      status_listen: str | None, extra: Sequence[str] = (),
                      listen_fd: int | None = None) -> int:
    """N proxy workers accepting on one listening socket, bound here once (or inherited as
    ``listen_fd``); worker i answers status on port + i."""

    try:
        sock = (inherited_listener(listen_fd) if listen_fd is not None
                else open_listener(listen, DEFAULTS.proxy.port))
    except (ListenError, ValueError) as exc:
        log.critical("%s", exc)
        return EXIT_CONFIG
    sock.set_inheritable(True)
    load_or_create_ca(instance)  # once, before the workers race to create it
    children = []
    status = (parse_listen(status_listen, DEFAULTS.proxy_status.port) if status_listen
              else None)
    for index in range(workers):
        args = ["proxy", "--workers", "1", "--worker-id", str(index), "--listen", listen,
                "--listen-fd", str(sock.fileno())]
        args += ["--status-listen", str(replace(status, port=status.port + index))
                 if status is not None else "off"]
        children.append(Child(f"proxy worker {index}", esafety_argv(instance, *args, *extra),
                              child_env(instance), pass_fds=(sock.fileno(),)))
    try:
        return Supervisor(children).run()
    finally:
        sock.close()


def run_all(instance: Instance, *, proxy_listen: str | None, admin_listen: str | None) -> int:
    instance.ensure_data_dir()
    proxy_listen = proxy_listen or str(instance.config.listen.proxy)
    admin_listen = admin_listen or str(instance.config.listen.admin)
    # Both public ports first: a second deployment on the same ports stops here, clearly.
    sockets: list[socket.socket] = []
    try:
        sockets.append(open_listener(proxy_listen, DEFAULTS.proxy.port))
        sockets.append(open_listener(admin_listen, DEFAULTS.admin.port))
    except (ListenError, ValueError) as exc:
        for sock in sockets:
            sock.close()
        log.critical("%s", exc)
        return EXIT_CONFIG
    proxy_sock, admin_sock = sockets
    redis: EmbeddedRedis | None = None
    proxy_env = admin_env = child_env(instance)
    if instance.redis_url is None:
        try:
            redis = EmbeddedRedis(instance.data_dir / "redis",
                                  prefix=instance.config.redis_prefix).start()
        except EmbeddedRedisError as exc:
            sys.stderr.write(f"esafety: {exc}\n")
            for sock in sockets:
                sock.close()
            return 2
        log.info("embedded Redis on 127.0.0.1:%d (data in %s; ACL users, passwords in "
                 "0600 files there)", redis.port, redis.directory)
        # Keys of a version before the hash tag move before any worker reads them.
        asyncio.run(move_legacy_keys_at(redis.url_for("admin"), instance.config.redis_prefix))
        proxy_env = child_env(instance, redis.url_for("proxy"))
        admin_env = child_env(instance, redis.url_for("admin"))
    proxy_args = ["proxy", "--listen", proxy_listen, "--listen-fd", str(proxy_sock.fileno())]
    admin_args = ["admin", "--listen", admin_listen, "--listen-fd", str(admin_sock.fileno())]
    children = [
        Child("proxy", esafety_argv(instance, *proxy_args), proxy_env,
              pass_fds=(proxy_sock.fileno(),)),
        Child("admin", esafety_argv(instance, *admin_args), admin_env,
              pass_fds=(admin_sock.fileno(),)),
    ]
    print_first_run(instance, redis.url_for("admin") if redis is not None else instance.redis_url,
                    admin_listen, sys.stdout)
    try:
        return Supervisor(children, watched=settings_path(instance.data_dir)).run()
    finally:
        for sock in sockets:
            sock.close()
        if redis is not None:
            redis.stop()
