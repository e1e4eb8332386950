"""Listen addresses (``HOST:PORT``, ``:PORT``, ``[v6]:PORT``): parsed in one place for every
service, the config schema and the command line."""

from __future__ import annotations

import re
from dataclasses import dataclass

LISTEN_PATTERN = r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):([0-9]{1,5})$"
_LISTEN = re.compile(LISTEN_PATTERN)


class ListenAddressError(ValueError):
    """A listen address that is not ``HOST:PORT``."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    """The interface's address or name; "" means every interface."""
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def connect_host(self) -> str:
        """Where a client on this machine reaches it: loopback when it listens everywhere."""
        return self.host or "127.0.0.1"


def parse_listen(text: str, default_port: int | None = None) -> ListenAddress:
    """``HOST:PORT``, ``:PORT`` (every interface) or ``[::1]:PORT``; with ``default_port``, a
    bare ``HOST`` too."""
    match = _LISTEN.match(text)
    if match is None:
        if default_port is not None and re.fullmatch(r"[A-Za-z0-9.-]+", text):
            return ListenAddress(text, default_port)
        raise ListenAddressError(f"{text!r} is not HOST:PORT like 127.0.0.1:8090 or :8090")
    port = int(match.group(2))
    if not 0 < port < 65536:
        raise ListenAddressError(f"{text!r}: the port must be 1-65535")
    return ListenAddress(match.group(1).strip("[]"), port)
