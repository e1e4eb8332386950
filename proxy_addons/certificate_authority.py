"""The proxy's certificate authority: made before mitmproxy starts, named for the centre
(``CN=esafety CA – <centre name>``, see deployment.ca_certificate), key kept 0600, and
exported for devices to trust (``esafety ca export``, and the admin's onboarding page).

mitmproxy signs the certificates of decrypted sites with it, so their issuer is the centre's
CA too. An existing CA is kept whatever its name: devices already trust it."""

from __future__ import annotations

import sys
from pathlib import Path

from deployment.ca_certificate import CACertificate, ensure_ca, mark_offered
from deployment.instance import Instance


def load_or_create_ca(instance: Instance) -> CACertificate:
    """The deployment's CA certificate, made with the centre's name if there is none yet."""
    return ensure_ca(instance.data_dir, instance.config.centre_name)


def export_ca(instance: Instance, out: Path | None, fmt: str = "pem") -> str:
    ca = load_or_create_ca(instance)
    mark_offered(instance.data_dir)
    data = ca.pem if fmt == "pem" else ca.der
    if out is None:
        if fmt == "pem":
            sys.stdout.write(data.decode("ascii"))
        else:
            sys.stdout.buffer.write(data)
        return "-"
    out.write_bytes(data)
    return str(out)


def describe_ca(ca: CACertificate) -> str:
    """What ``esafety ca show`` prints: what a technician compares on a device."""
    lines = [f"Subject: {ca.subject}",
             f"SHA-256 fingerprint: {ca.sha256}",
             f"SHA-1 fingerprint: {ca.sha1}",
             f"Valid until: {ca.not_after:%d %B %Y}"]
    if not ca.branded:
        lines.append("This CA was made by an earlier version, under the name of the software "
                     "it uses (mitmproxy). It keeps working and is kept; to replace it, see "
                     "the README (every device must then trust the new one).")
    return "\n".join(lines) + "\n"
