"""Running the admin API: ``esafety admin [--listen HOST:PORT]``."""

from __future__ import annotations

import logging
import re

from aiohttp import web

from admin_api.app import build_app
from admin_api.context import AdminSettings
from esafety.instance import Instance
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
    if not instance.redis_url:
        raise ListenError("the admin API needs Redis: set --redis-url, ESAFETY_REDIS_URL or "
                          "redis_url in the config (esafety up starts an embedded one)")
    return AdminSettings(instance=instance, redis_url=instance.redis_url,
                         keys=Keys(prefix=instance.config.redis_prefix))


def serve(instance: Instance, listen: str) -> None:
    host, port = parse_listen(listen)
    settings = settings_for(instance)
    logging.basicConfig(level=getattr(logging, instance.config.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(build_app(settings), host=host, port=port, access_log=None,
                print=lambda message: logging.getLogger("admin_api").info("%s", message))
