"""Signed answers to the extension's network probe, so a fake server cannot claim to be the
centre's proxy.

The extension asks ``http://esafety-proxy.invalid/status?nonce=<32 hex>`` (the name exists
only inside the centre proxy). The proxy answers with its usual JSON plus ``nonce``, ``ts``
and ``sig``: an Ed25519 signature, under the deployment's private probe key
(:mod:`store.probe_key`), of::

    esafety-probe-v1 \\n <nonce> \\n <centre> \\n <ts>

The extension checks it with the public key (from the backend, or managed policy), that the
nonce is the one it just sent (so an answer cannot be replayed) and that ``ts`` is recent.
Anything else counts as off the centre network, so the extension keeps filtering. The
extension never holds anything that could sign an answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

NONCE = re.compile(r"[0-9a-f]{32}")
MAX_AGE_SECONDS = 120


class ProbeError(ValueError):
    """The probe request carried no usable nonce."""


def probe_message(nonce: str, centre: str, ts: int) -> bytes:
    return f"esafety-probe-v1\n{nonce}\n{centre}\n{ts}".encode()


def sign_probe(key: bytes, nonce: str, body: Mapping[str, Any], now: float | None = None
               ) -> dict[str, Any]:
    """``body`` with ``nonce``, ``ts`` and ``sig`` added, signed with the private probe key
    ``key`` (32 raw bytes); ``body["centre"]`` is signed too. Raises ProbeError for a nonce
    that is not 32 lowercase hex characters."""
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise ProbeError("the probe nonce must be 32 lowercase hex characters")
    ts = int(time.time() if now is None else now)
    centre = str(body.get("centre") or "")
    sig = Ed25519PrivateKey.from_private_bytes(key).sign(probe_message(nonce, centre, ts))
    return {**body, "centre": centre, "nonce": nonce, "ts": ts, "sig": sig.hex()}


def probe_is_genuine(public_key: bytes, nonce: str, answer: Mapping[str, Any],
                     now: float | None = None) -> bool:
    """What the extension checks (lib/signatures.js), in Python, with the public key."""
    ts = answer.get("ts")
    sig = answer.get("sig")
    if (answer.get("nonce") != nonce or not isinstance(ts, int) or isinstance(ts, bool)
            or not isinstance(sig, str) or not re.fullmatch(r"[0-9a-f]{128}", sig)):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > MAX_AGE_SECONDS:
        return False
    centre = str(answer.get("centre") or "")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            bytes.fromhex(sig), probe_message(nonce, centre, ts))
    except InvalidSignature:
        return False
    return True
