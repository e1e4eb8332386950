"""Listening sockets a supervisor opens once and its children inherit (as gunicorn does).

One process binds the public port, without SO_REUSEPORT, so a second deployment started on
the same port fails at once with "address in use" instead of silently sharing it. Workers get
the socket's file descriptor (``--listen-fd N``, passed with ``pass_fds``) and accept on it.
"""

from __future__ import annotations

import errno
import socket

BACKLOG = 1024


class ListenError(RuntimeError):
    """The address cannot be listened on; the message says why, in one line."""


def describe(host: str, port: int) -> str:
    shown = host or "*"
    return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"


def bind_listener(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket on ``host:port`` ("" = every interface, IPv4 and IPv6)."""
    try:
        if not host and socket.has_dualstack_ipv6():
            sock = socket.create_server(("", port), family=socket.AF_INET6, backlog=backlog,
                                        dualstack_ipv6=True)
        elif not host:
            sock = socket.create_server(("0.0.0.0", port), backlog=backlog)
        else:
            family, _, _, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
            sock = socket.create_server(address[:2], family=family, backlog=backlog)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another esafety instance or program is on it)"
        else:
            reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {describe(host, port)}: {reason}") from exc
    sock.set_inheritable(True)
    return sock


def inherited_listener(fd: int) -> socket.socket:
    """The listening socket a parent passed down as file descriptor ``fd``."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenError(f"--listen-fd {fd} is not an open socket: {exc.strerror}") from exc
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
        sock.detach()
        raise ListenError(f"--listen-fd {fd} is not a listening socket")
    sock.setblocking(False)
    return sock
