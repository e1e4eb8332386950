"""The key the proxy signs its network probe answers with, shared with the admin service.

It lives in the data directory as ``probe.key`` (32 random bytes, hex, mode 0600). The proxy
signs each answer to ``http://esafety-proxy.invalid/status?nonce=...`` with it (see
:mod:`proxy_addons.probe_signature`); the admin service hands it to the browser extension at
sign-in, so the extension can tell a real centre proxy from a fake one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PROBE_KEY_FILE = "probe.key"


def probe_key_path(data_dir: Path) -> Path:
    return data_dir / PROBE_KEY_FILE


def load_or_create_probe_key(data_dir: Path) -> bytes:
    """The deployment's probe key, made on first use. Raises OSError if it cannot be read or
    written, and ValueError if the file is not a 32-byte hex key."""
    path = probe_key_path(data_dir)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        fresh = secrets.token_bytes(32).hex()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            text = path.read_text().strip()  # another process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(fresh + "\n")
            text = fresh
    key = bytes.fromhex(text)
    if len(key) != 32:
        raise ValueError(f"{path} must hold a 32-byte key in hex")
    return key
