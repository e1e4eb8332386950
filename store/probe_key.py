"""The key pair the proxy signs its network probe answers with.

The private key lives in the data directory as ``probe.key`` (an Ed25519 key, 32 bytes in
hex, mode 0600), read by the proxy (see :mod:`proxy_addons.probe_signature`). Only its public
half ever leaves the server: the admin service hands it to the browser extension (at sign-in
and with the unsigned rules), and IT may set it by managed policy. A learner who reads it
from their browser can check answers with it but cannot make one, so no fake server can
claim to be the centre's proxy.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

PROBE_KEY_FILE = "probe.key"


def probe_key_path(data_dir: Path) -> Path:
    return data_dir / PROBE_KEY_FILE


def load_or_create_probe_key(data_dir: Path) -> bytes:
    """The deployment's private probe key (32 raw bytes), made on first use. Raises OSError
    if it cannot be read or written, and ValueError if the file is not a 32-byte hex key."""
    path = probe_key_path(data_dir)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        fresh = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
        # Written whole to a private file, then linked into place: a process that starts at the
        # same moment (another worker, the admin) reads either no key or the whole key.
        partial = path.with_name(f".{PROBE_KEY_FILE}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(fresh + "\n")
        try:
            os.link(partial, path)
            text = fresh
        except FileExistsError:
            text = path.read_text().strip()  # another process made it first
        finally:
            partial.unlink()
    key = bytes.fromhex(text)
    if len(key) != 32:
        raise ValueError(f"{path} must hold a 32-byte key in hex")
    return key


def public_probe_key(private_key: bytes) -> bytes:
    """The public half (32 raw bytes) the extension checks signatures with."""
    return Ed25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
