"""Opening a Redis client from a URL: ``redis://``, ``rediss://``, ``unix://`` or Sentinel.

Sentinel URLs look like ``redis+sentinel://[:password@]host1:26379,host2:26379/mymaster/0``
(``rediss+sentinel://`` for TLS to the master).

A password never has to sit in the URL: ``?password_file=PATH`` (or ``password_file=`` given
to :func:`connect`) names a file (mode 0600) holding it, read afresh for every new
connection, so a rotated password is picked up without a restart. The URL's user name, if
any, goes with it (Redis ACL users: ``redis://esafety-proxy@host:6379/0?password_file=...``).
With Sentinel, the file's password is for the master; a password in the URL is for the
Sentinels as well, as before.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from deployment.redis_url import split_password_file, with_password_file

__all__ = ["anonymous_url", "connect", "read_password_file", "split_password_file", "with_password_file"]

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


def connect(url: str, *, decode_responses: bool = True,
            password_file: Path | str | None = None) -> Redis:
    """A client for ``url`` with timeouts, so an outage never hangs a caller for long."""
    url, from_url = split_password_file(url)
    secret_file = Path(password_file) if password_file is not None else from_url
    parts = urlsplit(url)
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
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
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
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
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
        return url  # the Sentinels' own password is not the data's; the master is checked
    return _without_userinfo(url)[0]


async def allows_anonymous_access(url: str) -> bool:
    """True when the Redis at ``url`` runs commands for a client that never authenticated.

    Raises RedisError/OSError when the server cannot be reached (the answer is unknown)."""
    parts = urlsplit(url)
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
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
    finally:
        await client.aclose()
    return True


UNAUTHENTICATED_WARNING = (
    "Redis accepts commands without a password: anyone who can reach it can write "
    "overrides, make themselves admin and read every account. Configure Redis ACL users "
    "(esafety redis acl) or use the embedded Redis (esafety up)")
