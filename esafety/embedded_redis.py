"""An embedded Redis for a single-machine install: ``redis-server`` as a child process.

It listens on loopback only, on a port chosen at start, with protected mode on, and keeps its
data in its directory with AOF ``everysec``; it stops with its parent.

It is locked: the ``default`` user is off, and each role (``store.redis_acl``) has its own
ACL user with a generated password. The passwords live in ``<role>.password`` files (0600)
in the directory and are reused on restart; the server reads a generated ``redis.conf`` and
``users.acl`` (both 0600, the latter with password hashes only), so no password is ever on a
command line or in a log.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from deployment.redis_url import with_password_file
from esafety.supervisor import die_with_parent
from store import redis_acl


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise EmbeddedRedisError(
            "redis-server is not installed: install it (apt-get install redis-server) or set "
            "redis_url in the config / ESAFETY_REDIS_URL")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by the owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def load_or_create_password(path: Path) -> str:
    """The password kept in ``path``, made (32 random bytes, URL-safe) on first use."""
    if path.exists():
        path.chmod(0o600)
        password = path.read_text(encoding="utf-8").strip()
        if password:
            return password
    password = secrets.token_urlsafe(32)
    write_private(path, password + "\n")
    return password


def _quoted(path: Path) -> str:
    """A path as a redis.conf string argument."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    def __init__(self, directory: Path, port: int | None = None, persistent: bool = True,
                 prefix: str = "") -> None:
        """``prefix``: the deployment's key prefix the ACL users are limited to (``esafety
        up`` gives it); "" (the default) covers the whole key space of this dedicated server."""
        self.directory = directory
        self.port = port or free_port()
        self.persistent = persistent
        self.prefix = prefix
        self._process: subprocess.Popen[bytes] | None = None

    def password_file(self, role: str = "admin") -> Path:
        return self.directory / f"{role}.password"

    def url_for(self, role: str) -> str:
        """A URL for ``role`` naming its password file; it holds no secret itself."""
        return with_password_file(
            f"redis://{redis_acl.ROLES[role]}@127.0.0.1:{self.port}/0", self.password_file(role))

    @property
    def url(self) -> str:
        """The admin user's URL with the password in it, for callers in this process (and
        the test suite's plain redis-py clients). Child processes get :meth:`url_for`."""
        password = load_or_create_password(self.password_file("admin"))
        return (f"redis://{redis_acl.ADMIN_USER}:{quote(password, safe='')}"
                f"@127.0.0.1:{self.port}/0")

    def _write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)
        passwords = {role: load_or_create_password(self.password_file(role))
                     for role in redis_acl.ROLES}
        acl = self.directory / "users.acl"
        write_private(acl, redis_acl.acl_file(self.prefix, passwords))
        lines = [
            "bind 127.0.0.1", f"port {self.port}", "protected-mode yes",
            f"dir {_quoted(self.directory)}", "daemonize no", 'save ""',
            f"logfile {_quoted(self.directory / 'redis.log')}", f"aclfile {_quoted(acl)}",
            "appendonly yes" if self.persistent else "appendonly no",
        ]
        if self.persistent:
            lines.append("appendfsync everysec")
        log = self.directory / "redis.log"
        os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        log.chmod(0o600)
        conf = self.directory / "redis.conf"
        write_private(conf, "\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        conf = self._write_config()
        # It stops (saving its AOF) when the process that started it dies, even by SIGKILL.
        self._process = subprocess.Popen([find_redis_server(), str(conf)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE,
                                         preexec_fn=die_with_parent(os.getpid()))
        password = load_or_create_password(self.password_file("admin"))
        hello = (f"AUTH {redis_acl.ADMIN_USER} {password}\r\nPING\r\n").encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                log = self.directory / "redis.log"
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise EmbeddedRedisError(f"redis-server exited: {err or tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(hello)
                    answer = b""
                    while answer.count(b"\r\n") < 2:
                        chunk = s.recv(64)
                        if not chunk:
                            break
                        answer += chunk
                    if answer.startswith(b"+OK\r\n+PONG"):
                        return self
                    if answer.startswith(b"-"):
                        self.stop()
                        raise EmbeddedRedisError(
                            "redis-server refused the admin credentials: "
                            f"{answer.decode(errors='replace').splitlines()[0]}")
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as in a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
