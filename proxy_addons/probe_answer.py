"""The proxy's answer to ``http://esafety-proxy.invalid/status``: who is browsing, signed.

The ``.invalid`` name never resolves, so a browser that gets an answer is on the centre proxy
(the extension's test)."""

from __future__ import annotations

import json

from proxy_addons.identify import Identity
from proxy_addons.probe_signature import ProbeError, sign_probe

PROBE_HOST = "esafety-proxy.invalid"


def probe_body(centre_id: str, identity: Identity, nonce: str, key: bytes | None) -> bytes:
    """The probe's JSON body; signed with ``key`` when the extension sent a nonce."""
    body: dict[str, object] = {"proxy": "esafety", "centre": centre_id, "site": identity.site,
                               "user": identity.user, "group": identity.group,
                               "identified_by": identity.source}
    if key is not None and nonce:
        try:
            body = sign_probe(key, nonce, body)
        except ProbeError:
            pass  # answered unsigned: the extension counts it as off-network
    return json.dumps(body).encode()


PROBE_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
"""No CORS header: the extension reads it with its host permission, and no web page may learn
who is browsing."""
