"""The proxy's certificate authority: generated on first use, key kept 0600, exported for
devices to trust (it is also offered at http://mitm.it through the proxy)."""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from mitmproxy import certs

from deployment.instance import Instance
from proxy_addons.runner import ca_dir, protect_ca

CA_BASENAME = "mitmproxy"
CA_KEY_SIZE = 2048


def load_or_create_ca(instance: Instance) -> certs.CertStore:
    directory = ca_dir(instance)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = certs.CertStore.from_store(directory, CA_BASENAME, CA_KEY_SIZE)
    protect_ca(directory)
    return store


def export_ca(instance: Instance, out: Path | None, fmt: str = "pem") -> str:
    store = load_or_create_ca(instance)
    pem = store.default_ca.to_pem()
    data = pem if fmt == "pem" else x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    if out is None:
        if fmt == "pem":
            sys.stdout.write(data.decode("ascii"))
        else:
            sys.stdout.buffer.write(data)
        return "-"
    out.write_bytes(data)
    return str(out)
