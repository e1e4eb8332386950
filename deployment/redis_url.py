"""Redis URLs of one deployment: a password named by file, never written in the URL, and the
embedded Redis that ``esafety up`` runs in the data directory.

``?password_file=PATH`` names a file (mode 0600) holding the password; ``store.connection``
reads it afresh for every new connection.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PASSWORD_FILE_PARAM = "password_file"  # noqa: S105 - a query parameter name


def split_password_file(url: str) -> tuple[str, Path | None]:
    """``url`` without its ``password_file`` query parameter, and that parameter's path."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    files = [value for key, value in query if key == PASSWORD_FILE_PARAM]
    if not files:
        return url, None
    rest = urlencode([(k, v) for k, v in query if k != PASSWORD_FILE_PARAM])
    return urlunsplit(parts._replace(query=rest)), Path(files[-1])


def with_password_file(url: str, path: Path | str) -> str:
    """``url`` naming ``path`` as its password file (unless the URL carries a password)."""
    parts = urlsplit(url)
    if parts.password or PASSWORD_FILE_PARAM in dict(parse_qsl(parts.query)):
        return url
    query = [*parse_qsl(parts.query, keep_blank_values=True), (PASSWORD_FILE_PARAM, str(path))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def running_embedded_url(directory: Path, user: str) -> str | None:
    """The URL for ``user`` (naming the admin password file) of the embedded Redis that ``esafety up``
    runs in ``directory`` (``DATA_DIR/redis``), while it answers; None otherwise. (Commands
    find a running ``esafety up`` through its endpoints file first, which covers a configured
    Redis too: see :mod:`deployment.endpoints`; this finds an embedded Redis without one.)"""
    conf, password = directory / "redis.conf", directory / "admin.password"
    try:
        lines = conf.read_text(encoding="utf-8").splitlines()
        if not password.is_file():
            return None
    except OSError:
        return None
    ports = [line.split()[1] for line in lines if line.startswith("port ") and len(line.split()) > 1]
    if not ports or not ports[0].isdigit():
        return None
    try:
        socket.create_connection(("127.0.0.1", int(ports[0])), timeout=1).close()
    except OSError:
        return None
    return with_password_file(f"redis://{user}@127.0.0.1:{ports[0]}/0", password)
