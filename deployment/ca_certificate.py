"""The centre's certificate authority in the data directory: made once with the centre's name,
its key kept to the owner (0600), and its certificate readable by the admin service, which
offers it to devices on the onboarding page.

The proxy (mitmproxy) reads the CA from ``<data dir>/ca/mitmproxy-ca.pem`` (key and
certificate) and would make its own, named "mitmproxy", if that file were missing; so
:func:`ensure_ca` writes every file mitmproxy expects there before the proxy starts. An
existing CA is never replaced: devices already trust it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

CA_FOLDER = "ca"
FILE_PREFIX = "mitmproxy"
"""mitmproxy reads its CA files under this name (its ``CONF_BASENAME``); only the file names
say it, never the certificates."""
KEY_AND_CERT_FILE = f"{FILE_PREFIX}-ca.pem"
CERT_FILE = f"{FILE_PREFIX}-ca-cert.pem"
CA_KEY_SIZE = 2048
CA_VALIDITY = datetime.timedelta(days=3650)
SUBJECT_PREFIX = "esafety CA – "


class CAError(Exception):
    """The CA files exist but cannot be read as a CA (a clear message, never a traceback)."""


@dataclass(frozen=True, slots=True)
class CACertificate:
    """The CA certificate as devices see it: never the key."""

    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def subject(self) -> str:
        """The subject as people read it: ``CN=esafety CA – Riverside Training, O=...``."""
        return ", ".join(attribute.rfc4514_string() for attribute in self.certificate.subject)

    @property
    def common_name(self) -> str:
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    @property
    def sha256(self) -> str:
        return fingerprint(self.certificate.fingerprint(hashes.SHA256()))

    @property
    def sha1(self) -> str:
        # Only shown for comparison: some devices still show SHA-1 fingerprints.
        return fingerprint(self.certificate.fingerprint(hashes.SHA1()))  # noqa: S303

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def branded(self) -> bool:
        """False for a CA that mitmproxy made under its own name (kept: devices trust it)."""
        return self.common_name.startswith(SUBJECT_PREFIX.strip())


def fingerprint(digest: bytes) -> str:
    """``AB:CD:...``, as Windows, macOS and browsers show a certificate's fingerprint."""
    return ":".join(f"{byte:02X}" for byte in digest)


def ca_dir(data_dir: Path) -> Path:
    return data_dir / CA_FOLDER


def ca_subject(centre_name: str) -> x509.Name:
    name = " ".join(centre_name.split()) or "esafety"
    common_name = f"{SUBJECT_PREFIX}{name}"
    if len(common_name) > 64:  # the X.509 upper bound of a common name
        common_name = common_name[:63] + "…"
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, name[:64])])


def new_ca(centre_name: str, now: datetime.datetime | None = None
           ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A new CA key and self-signed certificate named for the centre."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_SIZE)
    subject = ca_subject(centre_name)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .serial_number(x509.random_serial_number())
        .public_key(public)
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256()))
    return key, certificate


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def write_ca(directory: Path, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> None:
    """The files mitmproxy reads or offers (it adds its Diffie-Hellman parameters itself), key
    files 0600. Never replaces a CA: the key file is claimed atomically (a hard link fails when
    the name exists), so of two processes starting at once, one CA is made and kept."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    partial = directory / f".{KEY_AND_CERT_FILE}.{os.getpid()}.new"
    with _private_umask():
        partial.write_bytes(key_pem + cert_pem)
    try:
        os.link(partial, directory / KEY_AND_CERT_FILE)
    except FileExistsError:
        raise CAError(f"a CA already exists in {directory}; devices trust it, so it is "
                      "kept") from None
    finally:
        partial.unlink()
    with _private_umask():
        (directory / f"{FILE_PREFIX}-ca.p12").write_bytes(
            pkcs12.serialize_key_and_certificates(b"esafety", key, certificate, None,
                                                  serialization.NoEncryption()))
    (directory / CERT_FILE).write_bytes(cert_pem)
    (directory / f"{FILE_PREFIX}-ca-cert.cer").write_bytes(cert_pem)
    (directory / f"{FILE_PREFIX}-ca-cert.p12").write_bytes(
        pkcs12.serialize_key_and_certificates(b"esafety", None, certificate, None,
                                              serialization.NoEncryption()))
    for name in (CERT_FILE, f"{FILE_PREFIX}-ca-cert.cer", f"{FILE_PREFIX}-ca-cert.p12"):
        (directory / name).chmod(0o644)
    directory.chmod(0o700)


def is_key_file(path: Path) -> bool:
    """Files holding the CA's private key: ``mitmproxy-ca.pem`` and ``mitmproxy-ca.p12``."""
    return path.name in (KEY_AND_CERT_FILE, f"{FILE_PREFIX}-ca.p12")


def ensure_ca(data_dir: Path, centre_name: str) -> CACertificate:
    """The deployment's CA: the existing one (whatever its name), else a new one named for
    the centre. Key files are (re)set to 0600 and the folder to 0700."""
    directory = ca_dir(data_dir)
    if not (directory / KEY_AND_CERT_FILE).exists():
        key, certificate = new_ca(centre_name)
        with contextlib.suppress(CAError):  # another process made it meanwhile: use that
            write_ca(directory, key, certificate)
    protect_ca(directory)
    try:
        found = read_ca_certificate(data_dir)
    except CAError:
        found = None
    if found is None:
        # A CA whose certificate file another process is still writing, or is missing: the
        # certificate is also in the key file (the one mitmproxy reads), after the key.
        found = _certificate_from_key_file(directory)
    return found


def _certificate_from_key_file(directory: Path) -> CACertificate:
    path = directory / KEY_AND_CERT_FILE
    try:
        return CACertificate(x509.load_pem_x509_certificate(path.read_bytes()))
    except ValueError as exc:
        raise CAError(f"{path} holds no PEM certificate") from exc


def protect_ca(directory: Path) -> None:
    """Keep the CA's private key files readable by the owner only."""
    if not directory.is_dir():
        return
    for path in directory.glob(f"{FILE_PREFIX}-*"):
        if is_key_file(path):
            path.chmod(0o600)
    directory.chmod(0o700)


OFFERED_MARKER = "offered"
"""A file in the CA folder, written the first time the certificate is handed out (downloaded
from the onboarding page, or ``esafety ca export``): from then on devices may trust it."""


def mark_offered(data_dir: Path) -> None:
    """Record that the CA certificate has been handed out (best effort: a reader that cannot
    write the folder, such as an admin service under another user, leaves it to the proxy's)."""
    with contextlib.suppress(OSError):
        (ca_dir(data_dir) / OFFERED_MARKER).touch(mode=0o600, exist_ok=True)


def name_unoffered_ca(data_dir: Path, centre_name: str, unnamed: str) -> CACertificate | None:
    """Replace the CA with one named for ``centre_name`` when it still carries the name given
    before the centre was named (``unnamed``, the built-in default) and has never been handed
    to a device. This is what a first run's set-up does: ``esafety up`` makes the CA at once,
    and the centre is named a few minutes later, before any device is onboarded. A CA that was
    offered, or named otherwise, is never replaced. Returns the new CA, or None."""
    directory = ca_dir(data_dir)
    current = read_ca_certificate(data_dir)
    if (current is None or centre_name == unnamed or (directory / OFFERED_MARKER).exists()
            or current.certificate.subject != ca_subject(unnamed)):
        return None
    key, certificate = new_ca(centre_name)
    retired = directory.with_name(f".{CA_FOLDER}-unnamed-{os.getpid()}")
    os.replace(directory, retired)
    try:
        write_ca(directory, key, certificate)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(retired, directory)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return CACertificate(certificate)


def read_ca_certificate(data_dir: Path) -> CACertificate | None:
    """The CA certificate (never the key), or None when there is no CA yet.

    Read from ``mitmproxy-ca-cert.pem``, which holds only the certificate, so a reader (the
    admin service) never opens the key file."""
    path = ca_dir(data_dir) / CERT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CAError(f"cannot read the CA certificate {path}: {exc.strerror}") from exc
    try:
        return CACertificate(x509.load_pem_x509_certificate(data))
    except ValueError as exc:
        raise CAError(f"{path} is not a PEM certificate") from exc
