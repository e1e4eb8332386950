"""Pseudonymised exports: user names (and client addresses and device ids) replaced by a
keyed HMAC. A device id (a MAC address, a browser install's id, a host name) identifies a
person as surely as their name, so wherever a name is replaced its device is too.

The key is 32 random bytes in ``<data dir>/pseudonymisation.key``, created with mode 0600 on
first use and never leaving the server. The same user maps to the same pseudonym in every
export from this installation (so patterns can be studied), but the name cannot be recovered
without the key; deleting the key unlinks all earlier exports from people.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "pseudonymisation.key"


def load_or_create_key(data_dir: Path) -> bytes:
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise RuntimeError(f"{path} is damaged (shorter than 32 bytes)") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class Pseudonymiser:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._key: bytes | None = None

    def _digest(self, kind: str, value: str) -> str:
        if self._key is None:
            self._key = load_or_create_key(self._data_dir)
        mac = hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
        return mac[:20]

    def user(self, name: str) -> str:
        return f"u-{self._digest('user', name)}" if name else ""

    def address(self, ip: str) -> str:
        return f"ip-{self._digest('ip', ip)}" if ip else ""

    def device(self, device_id: str) -> str:
        return f"dev-{self._digest('device', device_id)}" if device_id else ""
