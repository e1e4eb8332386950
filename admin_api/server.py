"""Running the admin API: ``esafety admin [--listen HOST:PORT]``."""

from __future__ import annotations

import asyncio
import logging
import re
import socket

from aiohttp import web

from admin_api.app import build_app
from admin_api.context import AdminSettings
from admin_api.routes.health import redis_auth_warning
from deployment.instance import Instance
from deployment.listen_socket import ListenError as SocketListenError
from deployment.listen_socket import bind_listener, inherited_listener
from store import redis_acl
from store.key_migration import move_legacy_keys_at
from store.keys import Keys

_LISTEN = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):([0-9]{1,5})$")


class ListenError(ValueError):
    pass


def parse_listen(text: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``:PORT`` (every interface) or ``[::1]:PORT``."""
    match = _LISTEN.match(text)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ListenError(f"--listen {text!r} is not HOST:PORT like 127.0.0.1:8090 or :8090")
    host = match.group(1).strip("[]") or None
    return host, int(match.group(2))


def settings_for(instance: Instance) -> AdminSettings:
    url = instance.store_url(redis_acl.ADMIN_USER)
    if not url:
        raise ListenError("the admin API needs Redis: set --redis-url, ESAFETY_REDIS_URL or "
                          "redis_url in the config (esafety up starts an embedded one, which "
                          "commands on the same data directory use while it runs)")
    return AdminSettings(instance=instance, redis_url=url,
                         keys=Keys(prefix=instance.config.redis_prefix))


def open_socket(listen: str, listen_fd: int | None = None) -> socket.socket:
    """The admin API's listening socket: inherited (``listen_fd``) or bound here, never with
    SO_REUSEPORT. A port in use is one :class:`ListenError`, not a traceback."""
    try:
        if listen_fd is not None:
            return inherited_listener(listen_fd)
        host, port = parse_listen(listen)
        return bind_listener(host or "", port)
    except SocketListenError as exc:
        raise ListenError(str(exc)) from exc


def serve(instance: Instance, listen: str, listen_fd: int | None = None) -> None:
    settings = settings_for(instance)
    sock = open_socket(listen, listen_fd)
    logging.basicConfig(level=getattr(logging, instance.config.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("admin_api")
    warn_if_redis_is_open(settings.redis_url, log)
    # Keys a version before the Redis Cluster hash tag wrote (esafety:x) move to {esafety}:x.
    asyncio.run(move_legacy_keys_at(settings.redis_url, instance.config.redis_prefix))
    web.run_app(build_app(settings), sock=sock, access_log=None,
                print=lambda message: log.info("%s on %s", message.splitlines()[0], listen))


def warn_if_redis_is_open(url: str, log: logging.Logger) -> None:
    """Log a warning at start when the Redis answers clients that never authenticated."""

    warning = asyncio.run(redis_auth_warning(url))
    if warning:
        log.warning("%s", warning)
