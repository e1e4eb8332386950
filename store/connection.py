"""Opening a Redis client from a URL: ``redis://``, ``rediss://``, ``unix://`` or Sentinel.

Sentinel URLs look like ``redis+sentinel://[:password@]host1:26379,host2:26379/mymaster/0``
(``rediss+sentinel://`` for TLS to the master).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

SOCKET_TIMEOUT = 3.0


def connect(url: str, *, decode_responses: bool = True) -> Redis:
    """A client for ``url`` with timeouts, so an outage never hangs a caller for long."""
    parts = urlsplit(url)
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
        netloc = parts.netloc.rpartition("@")[2]
        password = unquote(parts.password) if parts.password else None
        hosts = []
        for item in netloc.split(","):
            host, _, port = item.rpartition(":")
            hosts.append((host or item, int(port) if port.isdigit() else 26379))
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a Sentinel URL needs the master name: redis+sentinel://h:26379/mymaster")
        service, db = path[0], int(path[1]) if len(path) > 1 else 0
        sentinel_kwargs = {"password": password} if password else None
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            hosts, socket_timeout=SOCKET_TIMEOUT, sentinel_kwargs=sentinel_kwargs)
        client: Redis = sentinel.master_for(
            service, db=db, password=password, decode_responses=decode_responses,
            socket_timeout=SOCKET_TIMEOUT, ssl=parts.scheme.startswith("rediss"))
        return client
    return Redis.from_url(url, decode_responses=decode_responses,
                          socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
                          health_check_interval=15, retry_on_timeout=False)
