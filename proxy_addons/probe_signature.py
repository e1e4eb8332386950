"""Signed answers to the extension's network probe, so a fake server cannot claim to be the
centre's proxy.

The extension asks ``http://esafety-proxy.invalid/status?nonce=<32 hex>`` (the name exists
only inside the centre proxy). The proxy answers with its usual JSON plus ``nonce``, ``ts``
and ``sig``: HMAC-SHA256, under the deployment's probe key (:mod:`store.probe_key`), of::

    esafety-probe-v1 \\n <nonce> \\n <centre> \\n <ts>

The extension checks the signature with the key it got at sign-in (or from managed policy),
that the nonce is the one it just sent (so an answer cannot be replayed) and that ``ts`` is
recent. Anything else counts as off the centre network, so the extension keeps filtering.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Any

NONCE = re.compile(r"[0-9a-f]{32}")
MAX_AGE_SECONDS = 120


class ProbeError(ValueError):
    """The probe request carried no usable nonce."""


def probe_message(nonce: str, centre: str, ts: int) -> bytes:
    return f"esafety-probe-v1\n{nonce}\n{centre}\n{ts}".encode()


def sign_probe(key: bytes, nonce: str, body: Mapping[str, Any], now: float | None = None
               ) -> dict[str, Any]:
    """``body`` with ``nonce``, ``ts`` and ``sig`` added; ``body["centre"]`` is signed.
    Raises ProbeError for a nonce that is not 32 lowercase hex characters."""
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise ProbeError("the probe nonce must be 32 lowercase hex characters")
    ts = int(time.time() if now is None else now)
    centre = str(body.get("centre") or "")
    sig = hmac.new(key, probe_message(nonce, centre, ts), hashlib.sha256).hexdigest()
    return {**body, "centre": centre, "nonce": nonce, "ts": ts, "sig": sig}


def probe_is_genuine(key: bytes, nonce: str, answer: Mapping[str, Any],
                     now: float | None = None) -> bool:
    """What the extension checks, in Python (for tests and tools)."""
    ts = answer.get("ts")
    sig = answer.get("sig")
    if (answer.get("nonce") != nonce or not isinstance(ts, int) or isinstance(ts, bool)
            or not isinstance(sig, str)):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > MAX_AGE_SECONDS:
        return False
    centre = str(answer.get("centre") or "")
    expected = hmac.new(key, probe_message(nonce, centre, ts), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig)
