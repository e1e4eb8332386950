"""``esafety up`` and ``esafety proxy --workers N``: what each supervisor starts.

``esafety up`` runs Redis (embedded when none is configured), the proxy's workers and the
admin API. It binds both public ports first, prepares everything, then becomes a small
supervisor (:mod:`esafety.up_supervisor_process`). ``esafety proxy --workers N`` runs N proxy
workers on one port: the supervisor binds it once and the workers inherit the socket. Each
child gets only its own Redis credentials (with the embedded Redis, a URL naming its role's
0600 password file) and starts from the package's own location, whatever the working
directory, through the entry module of its service (:data:`SERVICE_MODULES`), which imports
only that service's packages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from admin_api.routes.proxy_config import proxy_address
from deployment import VERSION
from deployment.config import ListenSettings
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
from esafety.supervisor import BOOTSTRAP, EXIT_CONFIG, PACKAGE_ROOT, Child, Supervisor
from esafety.up_supervisor_process import ChildSpec, UpPlan, become_up_supervisor
from proxy_addons.certificate_authority import load_or_create_ca
from store.key_migration import move_legacy_keys_at

log = logging.getLogger("esafety.supervisor")
DEFAULTS = ListenSettings()
"""The built-in listen addresses; their ports are the default for a bare ``HOST``."""
SERVICE_MODULES = {"proxy": "esafety.proxy_worker_process", "admin": "esafety.admin_process",
                   "ca-naming": "esafety.ca_naming_process"}
"""The entry module of each service a supervisor starts: it imports only that service's
packages (the full command line, ``esafety.cli``, imports them all)."""


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
    status_endpoint = Endpoint(str(status), status.host, status.port)
    plan = UpPlan(
        children=[ChildSpec(c.name, c.argv, c.env, list(c.pass_fds)) for c in children],
        data_dir=str(instance.data_dir),
        notice_text=next_steps(instance, extra_lines),
        notice_services=[(e.local_host, e.port) for e in (admin_endpoint, status_endpoint)],
        watched=str(settings_path(instance.data_dir)),
        on_settings_changed=esafety_argv(instance, "ca-naming"),
        settings_env=admin_env,
        redis_pid=redis.pid if redis is not None else None,
        listen_fds=[s.fileno() for s in sockets],
        log_level=instance.config.log_level, log_format=instance.config.log_format)
    try:
        become_up_supervisor(plan)  # this process becomes the supervisor: no return
    except OSError as exc:
        log.critical("cannot start the supervisor: %s", exc)
    remove_endpoints(instance.data_dir, pid=os.getpid())
    for sock in sockets:
        sock.close()
    if redis is not None:
        redis.stop()
    return 1
