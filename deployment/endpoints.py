"""The live endpoints of a running ``esafety up``, in ``DATA_DIR/endpoints.json``.

``esafety up`` writes this file (atomically, mode 0600) once its sockets are bound and its
Redis answers, and removes it when it stops cleanly. Every other command run on the same data
directory reads it to find the deployment's Redis, so ``esafety --data-dir D users add ...``
works while ``esafety up`` runs, whatever port its embedded Redis got.

The Redis URL in the file never holds a password: it names a 0600 password file
(``?password_file=``). A configured URL that carries a password in clear has it moved to
``DATA_DIR/endpoints-redis.password`` (0600) for the file's readers.

A file left behind by a supervisor that was killed is ignored: readers take it only while the
recorded supervisor pid is alive and the recorded Redis accepts connections. They also ignore
a file that others may write, and one another user wrote that names a password file outside
the data directory.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from deployment.redis_url import split_password_file, with_password_file

FILE_NAME = "endpoints.json"
PASSWORD_FILE_NAME = "endpoints-redis.password"  # noqa: S105 - a file name
FORMAT = "esafety-endpoints/1"
CONNECT_TIMEOUT = 1.0


class EndpointsError(ValueError):
    """A Redis URL that cannot be recorded safely."""


@dataclass(frozen=True)
class Endpoint:
    """One listening service: the address it was told to listen on, and the bound port."""

    listen: str
    host: str
    port: int

    @property
    def local_host(self) -> str:
        """A host this machine reaches the service on (loopback for a wildcard address)."""
        return "127.0.0.1" if self.host in ("", "0.0.0.0") else ("::1" if self.host == "::"
                                                                  else self.host)


@dataclass(frozen=True)
class Endpoints:
    """What one running ``esafety up`` serves, and where."""

    redis_url: str
    """The admin role's Redis URL, naming a password file; never a password in clear."""
    redis_prefix: str
    proxy: Endpoint
    admin: Endpoint
    proxy_status: Endpoint | None
    admin_public_url: str
    proxy_public_address: str
    config: str | None
    """The config file ``esafety up`` runs with (None: built-in defaults)."""
    pid: int
    started_at: float
    version: str
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoints:
        if data.get("format") != FORMAT:
            raise ValueError(f"not an endpoints file of format {FORMAT}")
        status = data.get("proxy_status")
        return cls(
            redis_url=str(data["redis_url"]), redis_prefix=str(data["redis_prefix"]),
            proxy=Endpoint(**data["proxy"]), admin=Endpoint(**data["admin"]),
            proxy_status=Endpoint(**status) if status else None,
            admin_public_url=str(data["admin_public_url"]),
            proxy_public_address=str(data["proxy_public_address"]),
            config=data.get("config"), pid=int(data["pid"]),
            started_at=float(data["started_at"]), version=str(data["version"]))


def endpoints_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a 0600 temporary file, synced, then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _password_in(url: str) -> str | None:
    """The password ``url`` carries in clear: in its user info, or as ``?password=``."""
    parts = urlsplit(url)
    if parts.password is not None:
        return unquote(parts.password)
    given = [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "password"]
    return given[-1] if given else None


def recordable_url(url: str, data_dir: Path) -> str:
    """``url`` as the endpoints file may hold it: a password in it moves to a 0600 file in
    ``data_dir``, which the returned URL names instead. (With Sentinel, a password in the URL
    also authenticates to the Sentinels, and the file's only to the master.)"""
    password = _password_in(url)
    if password is None:
        return url
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k != "password"])
    stripped = urlunsplit(parts._replace(netloc=f"{user}@{hostport}" if user else hostport,
                                         query=query))
    if split_password_file(stripped)[1] is not None:
        raise EndpointsError("a Redis URL with both a password and a password_file")
    password_file = data_dir / PASSWORD_FILE_NAME
    _write_private(password_file, password + "\n")
    return with_password_file(stripped, password_file)


def write_endpoints(data_dir: Path, endpoints: Endpoints) -> Path:
    """Record ``endpoints`` in ``DATA_DIR/endpoints.json`` (0600, atomically)."""
    if _password_in(endpoints.redis_url) is not None:
        raise EndpointsError("the endpoints file never holds a Redis password")
    path = endpoints_path(data_dir)
    _write_private(path, endpoints.to_json())
    return path


def remove_endpoints(data_dir: Path, pid: int | None = None) -> None:
    """Remove the endpoints file (only if ``pid`` wrote it, when given) and its password
    file."""
    path = endpoints_path(data_dir)
    if pid is not None:
        recorded = _read(path)
        if recorded is not None and recorded.pid != pid:
            return
    for name in (path, data_dir / PASSWORD_FILE_NAME):
        try:
            name.unlink()
        except FileNotFoundError:
            pass


def _read(path: Path) -> Endpoints | None:
    try:
        return Endpoints.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, as another user
    return True


def redis_answers(url: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether the (first) Redis server ``url`` names accepts a connection."""
    parts = urlsplit(split_password_file(url)[0])
    try:
        if parts.scheme == "unix":
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(timeout)
                sock.connect(parts.path)
            return True
        first = parts.netloc.rpartition("@")[2].split(",")[0]
        host, _, port = first.rpartition(":")
        if not port.isdigit():
            host, port = first, ("26379" if "sentinel" in parts.scheme else "6379")
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                 timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def _trusted(path: Path, recorded: Endpoints, data_dir: Path) -> bool:
    """Whether a reader may follow the file: writable by its owner only, and written by this
    user, or by the data directory's owner naming a password file inside the data directory
    (as when root runs a command on the service user's deployment): a file another user
    wrote must not have the reader send one of its own secrets to some other server."""
    try:
        st = path.stat()
        if st.st_mode & 0o022:
            return False
        if st.st_uid == os.getuid():
            return True
        password_file = split_password_file(recorded.redis_url)[1]
        return st.st_uid == data_dir.stat().st_uid and (
            password_file is None
            or password_file.resolve().is_relative_to(data_dir.resolve()))
    except OSError:
        return False


def live_endpoints(data_dir: Path) -> Endpoints | None:
    """The endpoints of the ``esafety up`` running on ``data_dir``: None when there is no
    file, it cannot be trusted, it was left by a supervisor that is gone, or its Redis does
    not answer."""
    path = endpoints_path(data_dir)
    recorded = _read(path)
    if recorded is None or not _trusted(path, recorded, data_dir):
        return None
    if not _pid_alive(recorded.pid):
        return None
    if not redis_answers(recorded.redis_url):
        return None
    return recorded
