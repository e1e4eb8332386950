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
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from admin_api.routes.proxy_config import proxy_address
from deployment import VERSION
from deployment.ca_certificate import name_unoffered_ca
from deployment.config import Config, ListenSettings
from deployment.endpoints import (
    Endpoint,
    Endpoints,
    EndpointsError,
    recordable_url,
    remove_endpoints,
    write_endpoints,
)
from deployment.instance import LISTEN_ENV, Instance, with_listen
from deployment.listen_address import parse_listen
from deployment.listen_socket import ListenError, bind_listener, inherited_listener
from deployment.site_settings import settings_path
from esafety.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from esafety.first_run import first_run_lines
from esafety.startup_notice import next_steps, public_admin_url
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

BOOTSTRAP = ("import sys, importlib; sys.path.insert(0, sys.argv.pop(1)); "
             "sys.exit(importlib.import_module(sys.argv.pop(1)).main())")
"""How a child starts: ``python -P -c BOOTSTRAP PACKAGE_ROOT MODULE args...`` imports esafety
from PACKAGE_ROOT whatever the working directory (``-P``: never from the working directory),
then runs MODULE's ``main`` with ``args``."""
SERVICE_MODULES = {"proxy": "esafety.proxy_worker_process", "admin": "esafety.admin_process"}
"""The entry module of each service a supervisor starts: it imports only that service's
packages (the full command line, ``esafety.cli``, imports them all)."""


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
    def __init__(self, children: Sequence[Child], watched: Path | None = None,
                 on_tick: Callable[[], None] | None = None,
                 on_settings_changed: Callable[[], None] | None = None) -> None:
        """``watched``: a settings file; when it changes, every child is restarted to read it,
        and ``on_settings_changed`` runs while they are stopped. ``on_tick`` is called every
        turn of the watch loop (esafety up announces itself from there once its services
        answer); it must return quickly."""
        self.on_settings_changed = on_settings_changed
        self.children = list(children)
        self.on_tick = on_tick
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
                if self.on_tick is not None and not self._stopping:
                    self.on_tick()
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
        if self.on_settings_changed is not None:
            try:
                self.on_settings_changed()
            except Exception:  # the services must come back whatever happened
                log.exception("applying the changed settings failed")
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


def esafety_argv(instance: Instance, service: str, *args: str) -> list[str]:
    """The command line of a child running ``service`` (proxy, admin) with this instance's
    data and config: the same options as ``esafety SERVICE``."""
    argv = [sys.executable, "-P", "-c", BOOTSTRAP, PACKAGE_ROOT, SERVICE_MODULES[service],
            "--data-dir", str(instance.data_dir)]
    if instance.config.path is not None:
        argv += ["--config", str(Path(instance.config.path).resolve())]
    return [*argv, service, *args]


def child_env(instance: Instance, redis_url: str | None = None) -> dict[str, str]:
    """The environment of a child: this one's, with the Redis URL the child must use (a URL
    naming a password file, never a password of its own making)."""
    env = dict(os.environ)
    env.pop("ESAFETY_REDIS_PASSWORD_FILE", None)  # already folded into instance.redis_url
    env[LISTEN_ENV["proxy"]] = str(instance.config.listen.proxy)
    env[LISTEN_ENV["admin"]] = str(instance.config.listen.admin)
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
    children = proxy_worker_children(instance, workers, listen, sock, status_listen,
                                     child_env(instance), extra)
    try:
        return Supervisor(children).run()
    finally:
        sock.close()


def proxy_worker_children(instance: Instance, workers: int, listen: str, sock: socket.socket,
                          status_listen: str | None, env: dict[str, str],
                          extra: Sequence[str] = ()) -> list[Child]:
    """The proxy's workers, sharing the listening socket ``sock``; worker i answers status on
    the status port + i."""
    sock.set_inheritable(True)
    status = (parse_listen(status_listen, DEFAULTS.proxy_status.port) if status_listen
              else None)
    children = []
    for index in range(workers):
        args = ["--workers", "1", "--worker-id", str(index), "--listen", listen,
                "--listen-fd", str(sock.fileno())]
        args += ["--status-listen", str(replace(status, port=status.port + index))
                 if status is not None else "off"]
        children.append(Child(f"proxy worker {index}",
                              esafety_argv(instance, "proxy", *args, *extra),
                              env, pass_fds=(sock.fileno(),)))
    return children


def _endpoint(listen: str, sock: socket.socket) -> Endpoint:
    host, port = sock.getsockname()[:2]
    return Endpoint(listen=listen, host=str(host), port=int(port))


def _answers(endpoint: Endpoint, path: str) -> bool:
    host = endpoint.local_host
    url = f"http://{f'[{host}]' if ':' in host else host}:{endpoint.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return int(response.status) == 200
    except (OSError, ValueError):
        return False


class ReadyNotice:
    """Prints the "what now" block (:func:`esafety.startup_notice.next_steps`) once, when
    every one of ``services`` answers /healthz, or after ``patience`` seconds in any case."""

    def __init__(self, instance: Instance, services: Sequence[Endpoint],
                 extra_lines: Sequence[str], patience: float = 60.0) -> None:
        self.instance = instance
        self.services = list(services)
        self.extra_lines = list(extra_lines)
        self.deadline = time.monotonic() + patience
        self.printed = False

    def __call__(self) -> None:
        if self.printed:
            return
        waiting = [s for s in self.services if not _answers(s, "/healthz")]
        self.services = waiting
        if waiting and time.monotonic() < self.deadline:
            return
        self.printed = True
        try:
            sys.stdout.write(next_steps(self.instance, self.extra_lines))
            sys.stdout.flush()
        except OSError as exc:  # nobody reads the output (a closed pipe): keep serving
            log.warning("cannot print the start-up summary: %s", exc)


def record_endpoints(instance: Instance, redis_url: str, proxy: Endpoint, admin: Endpoint
                     ) -> None:
    """Write DATA_DIR/endpoints.json for the other commands on this data directory."""
    config = instance.config
    status = config.listen.proxy_status
    write_endpoints(instance.data_dir, Endpoints(
        redis_url=recordable_url(redis_url, instance.data_dir),
        redis_prefix=config.redis_prefix, proxy=proxy, admin=admin,
        proxy_status=Endpoint(str(status), status.host, status.port),
        admin_public_url=public_admin_url(config), proxy_public_address=proxy_address(config),
        config=str(Path(config.path).resolve()) if config.path is not None else None,
        pid=os.getpid(), started_at=time.time(), version=VERSION))


def name_ca_for_centre(instance: Instance) -> None:
    """After set-up names the centre: the CA ``esafety up`` made before it was named takes the
    centre's name, unless a device may already trust it (see ``name_unoffered_ca``)."""
    config = instance.config
    current = Instance.resolve(str(config.path) if config.path else None,
                               str(instance.data_dir), instance.redis_url).config
    renamed = name_unoffered_ca(instance.data_dir, current.centre_name, Config.centre_name)
    if renamed is not None:
        log.info("the CA is now named for the centre: %s", renamed.subject)


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
    # Every child, and this process's own notices, know the ports really listened on.
    instance = replace(instance, config=with_listen(
        instance.config, parse_listen(proxy_listen, DEFAULTS.proxy.port),
        parse_listen(admin_listen, DEFAULTS.admin.port)))
    redis: EmbeddedRedis | None = None
    proxy_env = admin_env = child_env(instance)
    store_url = instance.redis_url
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
        store_url = redis.url_for("admin")
    admin_args = ["--listen", admin_listen, "--listen-fd", str(admin_sock.fileno())]
    # The proxy's workers are this supervisor's own children: no second supervisor process
    # (each Python process holds about 100 MB of imports).
    children = [
        *proxy_worker_children(instance, os.cpu_count() or 1, proxy_listen, proxy_sock,
                               str(instance.config.listen.proxy_status), proxy_env),
        Child("admin", esafety_argv(instance, "admin", *admin_args), admin_env,
              pass_fds=(admin_sock.fileno(),)),
    ]
    load_or_create_ca(instance)  # now, so that the start-up block names a file that exists
    proxy_endpoint = _endpoint(proxy_listen, proxy_sock)
    admin_endpoint = _endpoint(admin_listen, admin_sock)
    assert store_url is not None
    try:
        record_endpoints(instance, store_url, proxy_endpoint, admin_endpoint)
    except (OSError, EndpointsError) as exc:
        # The service still runs; only the other commands' automatic discovery is missing.
        log.error("cannot record the endpoints in %s: %s", instance.data_dir, exc)
    # Lines added to the start-up block ("what now"), after the CA certificate's line.
    extra_lines: list[str] = first_run_lines(
        instance, redis.url_for("admin") if redis is not None else instance.redis_url,
        admin_listen)
    status = instance.config.listen.proxy_status
    notice = ReadyNotice(instance, [admin_endpoint, Endpoint(str(status), status.host,
                                                             status.port)], extra_lines)
    try:
        return Supervisor(children, watched=settings_path(instance.data_dir), on_tick=notice,
                          on_settings_changed=lambda: name_ca_for_centre(instance)).run()
    finally:
        remove_endpoints(instance.data_dir, pid=os.getpid())
        for sock in sockets:
            sock.close()
        if redis is not None:
            redis.stop()
