"""Opening a Redis client from a URL: ``redis://``, ``rediss://``, ``unix://``, Sentinel or
Redis Cluster.

Sentinel URLs look like ``redis+sentinel://[:password@]host1:26379,host2:26379/mymaster/0``
(``rediss+sentinel://`` for TLS to the master).

Redis Cluster URLs list one or more nodes to learn the cluster from:
``redis+cluster://[user[:password]@]host1:6379,host2:6379/`` (``rediss+cluster://`` for
TLS). The client is redis-py's :class:`redis.asyncio.cluster.RedisCluster`, which answers
the same commands as :class:`Redis` for everything esafety does: every key of a deployment
shares one hash tag (:mod:`store.keys`), so scripts and MULTI/EXEC transactions (which the
cluster client runs on the slot's node) see one slot, and PUBLISH reaches subscribers on any
node. A cluster has only database 0.

A password never has to sit in the URL: ``?password_file=PATH`` (or ``password_file=`` given
to :func:`connect`) names a file (mode 0600) holding it, read afresh for every new
connection, so a rotated password is picked up without a restart. The URL's user name, if
any, goes with it (Redis ACL users: ``redis://esafety-proxy@host:6379/0?password_file=...``).
With Sentinel, the file's password is for the master; a password in the URL is for the
Sentinels as well, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.credentials import CredentialProvider
from redis.exceptions import (
    AuthenticationError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from deployment.redis_url import split_password_file, with_password_file

__all__ = ["anonymous_url", "connect", "is_cluster_url", "read_password_file",
           "split_password_file", "with_password_file"]

SOCKET_TIMEOUT = 3.0


class PasswordFileCredentials(CredentialProvider):
    """A user name and the password held in a file, read when a connection authenticates."""

    def __init__(self, username: str | None, path: Path) -> None:
        self.username = username or ""
        self.path = path

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = read_password_file(self.path)
        return (self.username, password) if self.username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()


def read_password_file(path: Path) -> str:
    """The password in ``path``: its first line, without the line ending."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthenticationError(f"cannot read the Redis password file {path}: "
                                  f"{exc.strerror or exc}") from exc
    password = text.splitlines()[0] if text else ""
    if not password:
        raise AuthenticationError(f"the Redis password file {path} is empty")
    return password


def _without_userinfo(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    username = unquote(userinfo.partition(":")[0]) or None
    return urlunsplit(parts._replace(netloc=hostport)), username


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        if not host and not port.isdigit():
            host = item
        hosts.append((host.strip("[]") or "127.0.0.1",
                      int(port) if port.isdigit() else default_port))
    return hosts


@contextmanager
def _outage_as_connection_error() -> Iterator[None]:
    """An unreachable cluster (or a slot with no node) raised as a RedisConnectionError, the
    outage every caller already handles; any other cluster error as it is."""
    try:
        yield
    except RedisClusterException as exc:
        if _unreachable(exc):
            raise RedisConnectionError(f"Redis Cluster: {exc}") from exc
        raise


class ClusterSubscriber(ClusterPubSub):
    """A cluster pub/sub that learns the cluster's slots before its first SUBSCRIBE.

    redis-py picks a subscriber's node by the channel's slot, from a slot table it only fills
    when the client runs its first command: a process whose first command is SUBSCRIBE (a
    proxy's policy listener) would fail with a KeyError."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.cluster.initialize()
        with _outage_as_connection_error():
            return await super().execute_command(*args, **kwargs)


def _unreachable(exc: RedisClusterException) -> bool:
    """True for a cluster that cannot be reached or has no node for a slot (an outage, raised
    again as a RedisConnectionError); False for a command redis-py cannot route (a bug, raised
    as it is)."""
    return isinstance(exc, SlotNotCoveredError) or "connect" in str(exc).lower()


class ClusterClient(RedisCluster):
    """redis-py's cluster client with :class:`ClusterSubscriber` for pub/sub, and a cluster
    that cannot be reached (or has no node for a slot) reported as a
    :class:`redis.exceptions.ConnectionError`, a :class:`RedisError` like every other outage
    (redis-py raises a RedisClusterException, which is not one), so the proxy's and the admin
    service's outage handling works unchanged."""

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        with _outage_as_connection_error():
            return await super().initialize(*args, **kwargs)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with _outage_as_connection_error():
            return await super().execute_command(*args, **kwargs)

    def pubsub(self, node: ClusterNode | None = None, host: str | None = None,
               port: int | None = None, **kwargs: Any) -> ClusterPubSub:
        return ClusterSubscriber(self, node=node, host=host, port=port, **kwargs)


def _connect_cluster(url: str, *, decode_responses: bool, secret_file: Path | None) -> Redis:
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if path and path != ["0"]:
        raise ValueError("a Redis Cluster has only database 0: redis+cluster://h:6379,h:6380/")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    credentials: dict[str, object] = (
        {"credential_provider": PasswordFileCredentials(username, secret_file)}
        if secret_file is not None else {"username": username, "password": password})
    nodes = [ClusterNode(host, port) for host, port in _hosts(parts.netloc, 6379)]
    client = ClusterClient(
        startup_nodes=nodes, decode_responses=decode_responses,
        socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=15, ssl=parts.scheme.startswith("rediss"),
        **credentials)  # type: ignore[arg-type]
    # RedisCluster is not a subclass of Redis, but it has the same command methods (the
    # keys' shared hash tag sends each command, script and transaction to one node).
    return cast(Redis, client)


def connect(url: str, *, decode_responses: bool = True,
            password_file: Path | str | None = None) -> Redis:
    """A client for ``url`` with timeouts, so an outage never hangs a caller for long."""
    url, from_url = split_password_file(url)
    secret_file = Path(password_file) if password_file is not None else from_url
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        return _connect_cluster(url, decode_responses=decode_responses, secret_file=secret_file)
    if parts.scheme in SENTINEL_SCHEMES:
        netloc = parts.netloc.rpartition("@")[2]
        password = unquote(parts.password) if parts.password else None
        username = unquote(parts.username) if parts.username else None
        hosts = []
        for item in netloc.split(","):
            host, _, port = item.rpartition(":")
            hosts.append((host or item, int(port) if port.isdigit() else 26379))
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a Sentinel URL needs the master name: redis+sentinel://h:26379/mymaster")
        service, db = path[0], int(path[1]) if len(path) > 1 else 0
        sentinel_kwargs = {"password": password} if password else None
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
            hosts, socket_timeout=SOCKET_TIMEOUT, sentinel_kwargs=sentinel_kwargs)
        credentials = ({"credential_provider": PasswordFileCredentials(username, secret_file)}
                       if secret_file is not None else {"password": password})
        client: Redis = sentinel.master_for(
            service, db=db, decode_responses=decode_responses,
            socket_timeout=SOCKET_TIMEOUT, ssl=parts.scheme.startswith("rediss"), **credentials)
        return client
    provider: CredentialProvider | None = None
    if secret_file is not None:
        url, username = _without_userinfo(url)
        provider = PasswordFileCredentials(username, secret_file)
    return Redis.from_url(url, decode_responses=decode_responses,
                          socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
                          health_check_interval=15, retry_on_timeout=False,
                          credential_provider=provider)


def anonymous_url(url: str) -> str:
    """``url`` with every credential removed: what anyone who can reach the server has."""
    url, _ = split_password_file(url)
    parts = urlsplit(url)
    if parts.scheme in SENTINEL_SCHEMES:
        return url  # the Sentinels' own password is not the data's; the master is checked
    return _without_userinfo(url)[0]


async def allows_anonymous_access(url: str) -> bool:
    """True when the Redis at ``url`` runs commands for a client that never authenticated.

    Raises RedisError/OSError when the server cannot be reached (the answer is unknown)."""
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        client = connect(anonymous_url(url))
    elif parts.scheme in SENTINEL_SCHEMES:
        bare, _ = split_password_file(url)
        bare_parts = urlsplit(bare)
        netloc = bare_parts.netloc.rpartition("@")[2]
        keep = f":{bare_parts.password}@" if bare_parts.password else ""
        client = connect(urlunsplit(bare_parts._replace(netloc=keep + netloc)))
    else:
        client = Redis.from_url(anonymous_url(url), socket_timeout=SOCKET_TIMEOUT,
                                socket_connect_timeout=SOCKET_TIMEOUT)
    try:
        await client.dbsize()
    except AuthenticationError:
        return False
    except ResponseError as exc:
        # NOAUTH (no password given), NOPERM (a default user without this right).
        text = str(exc).upper()
        if text.startswith(("NOAUTH", "NOPERM", "WRONGPASS")) or "AUTH" in text:
            return False
        raise
    except RedisError as exc:
        if "AUTH" in str(exc).upper() or "NOPERM" in str(exc).upper():
            return False
        raise
    except RedisClusterException as exc:
        # A cluster client that cannot learn the slots says why only in its message.
        if "AUTH" in str(exc).upper() or "NOPERM" in str(exc).upper():
            return False
        raise RedisError(str(exc)) from exc
    finally:
        await client.aclose()
    return True


UNAUTHENTICATED_WARNING = (
    "Redis accepts commands without a password: anyone who can reach it can write "
    "overrides, make themselves admin and read every account. Configure Redis ACL users "
    "(esafety redis acl) or use the embedded Redis (esafety up)")
