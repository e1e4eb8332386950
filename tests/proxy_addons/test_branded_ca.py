"""The CA devices are asked to trust carries the centre's name, never "mitmproxy", and so do
the certificates the proxy issues with it; an existing CA is kept."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from mitmproxy import certs

from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    read_response_head,
    write_config,
)

CENTRE = "Riverside Training"
SUBJECT_CN = f"esafety CA – {CENTRE}"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
          origins: Origins) -> Iterator[ProxyProcess]:
    directory = tmp_path_factory.mktemp("branded-ca")
    config = write_config(directory / "esafety.yaml", f"esafety-test-{uuid.uuid4().hex[:10]}:",
                          centre_name=CENTRE,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    process = ProxyProcess(directory / "data", config, redis_url, origins)
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process.start()
    yield process
    process.stop()


def names(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(attribute.value) for attribute in name.get_attributes_for_oid(oid)]


def test_exported_ca_is_named_for_the_centre(proxy: ProxyProcess) -> None:
    exported = proxy.cli("ca", "export")
    assert exported.returncode == 0, exported.stderr
    assert "PRIVATE KEY" not in exported.stdout
    assert exported.stdout.strip() == proxy.ca_cert.read_text().strip()
    ca = x509.load_pem_x509_certificate(exported.stdout.encode())
    assert names(ca.subject, NameOID.COMMON_NAME) == [SUBJECT_CN]
    assert names(ca.subject, NameOID.ORGANIZATION_NAME) == [CENTRE]
    assert "mitmproxy" not in ca.subject.rfc4514_string().lower()
    assert ca.issuer == ca.subject
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert 3600 <= lifetime.days <= 3700
    # The key stays with the proxy's user only.
    key_file = proxy.data_dir / "ca" / "mitmproxy-ca.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (proxy.data_dir / "ca").stat().st_mode & 0o777 == 0o700
    der = proxy.cli("ca", "export", "--format", "der", "--out", str(proxy.data_dir / "ca.der"))
    assert der.returncode == 0, der.stderr
    assert x509.load_der_x509_certificate((proxy.data_dir / "ca.der").read_bytes()) == ca
    shown = proxy.cli("ca", "show")
    assert shown.returncode == 0, shown.stderr
    sha256 = ":".join(f"{b:02X}" for b in ca.fingerprint(hashes.SHA256()))
    assert f"Subject: CN={SUBJECT_CN}, O={CENTRE}" in shown.stdout
    assert f"SHA-256 fingerprint: {sha256}" in shown.stdout


def leaf_through_proxy(proxy: ProxyProcess, host: str) -> x509.Certificate:
    """The certificate the proxy presents for ``host`` inside a CONNECT tunnel, checked
    against the centre's CA as a device that trusts it would."""
    context = ssl.create_default_context(cafile=str(proxy.ca_cert))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        assert read_response_head(sock).startswith("HTTP/1.1 200")
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_decrypted_sites_certificates_are_issued_by_the_centres_ca(
        proxy: ProxyProcess) -> None:
    leaf = leaf_through_proxy(proxy, "www.google.com")  # decrypted for safe search
    assert names(leaf.issuer, NameOID.COMMON_NAME) == [SUBJECT_CN]
    assert names(leaf.issuer, NameOID.ORGANIZATION_NAME) == [CENTRE]
    assert "mitmproxy" not in leaf.subject.rfc4514_string().lower()
    assert "mitmproxy" not in leaf.issuer.rfc4514_string().lower()


def cli(config: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esafety.cli", "--config", str(config),
                           "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=60)


def test_an_existing_ca_is_kept_and_its_name_shown(tmp_path: Path) -> None:
    """A CA made by an earlier version (under mitmproxy's name) is never replaced: devices
    trust it. ``ca show`` says what it is."""
    data_dir = tmp_path / "data"
    certs.CertStore.create_store(data_dir / "ca", "mitmproxy", 2048)
    before = (data_dir / "ca" / "mitmproxy-ca.pem").read_bytes()
    config = write_config(tmp_path / "esafety.yaml", "esafety-test-keep:", centre_name=CENTRE)
    exported = cli(config, data_dir, "ca", "export")
    assert exported.returncode == 0, exported.stderr
    ca = x509.load_pem_x509_certificate(exported.stdout.encode())
    assert names(ca.subject, NameOID.COMMON_NAME) == ["mitmproxy"]
    assert (data_dir / "ca" / "mitmproxy-ca.pem").read_bytes() == before
    assert (data_dir / "ca" / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600
    shown = cli(config, data_dir, "ca", "show")
    assert "Subject: CN=mitmproxy, O=mitmproxy" in shown.stdout
    assert "made by an earlier version" in shown.stdout


def test_the_ca_is_made_once(tmp_path: Path) -> None:
    config = write_config(tmp_path / "esafety.yaml", "esafety-test-once:", centre_name=CENTRE)
    first = cli(config, tmp_path / "data", "ca", "export")
    second = cli(config, tmp_path / "data", "ca", "export")
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert SUBJECT_CN in x509.load_pem_x509_certificate(
        first.stdout.encode()).subject.rfc4514_string()


def test_processes_starting_together_make_one_ca(tmp_path: Path) -> None:
    """Workers (or ``ca export`` next to a starting proxy) racing on a new data directory all
    end up with the same CA, and its key is written once."""
    config = write_config(tmp_path / "esafety.yaml", "esafety-test-race:", centre_name=CENTRE)
    command = [sys.executable, "-m", "esafety.cli", "--config", str(config),
               "--data-dir", str(tmp_path / "data"), "ca", "show"]
    racing = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(4)]
    outputs = [process.communicate(timeout=60) for process in racing]
    assert all(process.returncode == 0 for process in racing), outputs
    fingerprints = {line for out, _err in outputs for line in out.splitlines()
                    if line.startswith("SHA-256")}
    assert len(fingerprints) == 1
    on_disk = x509.load_pem_x509_certificate(
        (tmp_path / "data" / "ca" / "mitmproxy-ca-cert.pem").read_bytes())
    assert fingerprints == {
        "SHA-256 fingerprint: " + ":".join(f"{b:02X}" for b in on_disk.fingerprint(hashes.SHA256()))}
    assert not list((tmp_path / "data" / "ca").glob(".*.new"))
