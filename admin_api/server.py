"""Running the admin API: ``esafety admin [--listen HOST:PORT]``.

The command line sets up logging (``deployment.json_logging``) before it calls :func:`serve`."""

from __future__ import annotations

import asyncio
import logging
import socket

from aiohttp import web

from admin_api.app import build_app
from admin_api.context import AdminSettings
from admin_api.routes.health import redis_auth_warning
from deployment.instance import Instance, NoStoreError
from deployment.listen_address import ListenAddress, ListenAddressError, parse_listen
from deployment.listen_socket import ListenError as SocketListenError
from deployment.listen_socket import bind_listener, inherited_listener
from store import redis_acl
from store.key_migration import move_legacy_keys_at
from store.keys import Keys


class ListenError(ValueError):
    pass


def settings_for(instance: Instance) -> AdminSettings:
    try:
        url = instance.required_store_url(redis_acl.ADMIN_USER)
    except NoStoreError as exc:
        raise ListenError(f"the admin API needs Redis: {exc}") from exc
    return AdminSettings(instance=instance, redis_url=url,
                         keys=Keys(prefix=instance.config.redis_prefix))


def open_socket(listen: ListenAddress, listen_fd: int | None = None) -> socket.socket:
    """The admin API's listening socket: inherited (``listen_fd``) or bound here, never with
    SO_REUSEPORT. A port in use is one :class:`ListenError`, not a traceback."""
    try:
        if listen_fd is not None:
            return inherited_listener(listen_fd)
        return bind_listener(listen.host, listen.port)
    except SocketListenError as exc:
        raise ListenError(str(exc)) from exc


def listen_address(text: str) -> ListenAddress:
    """``--listen``'s address; a malformed one is a :class:`ListenError`."""
    try:
        return parse_listen(text)
    except ListenAddressError as exc:
        raise ListenError(f"--listen {exc}") from exc


def serve(instance: Instance, listen: ListenAddress, listen_fd: int | None = None) -> None:
    settings = settings_for(instance)
    sock = open_socket(listen, listen_fd)
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
