"""The CA ``esafety up`` makes before set-up names the centre takes the centre's name, once,
and only while no device can trust it yet (real key files in a data directory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509

from deployment.ca_certificate import (
    CERT_FILE,
    KEY_AND_CERT_FILE,
    ca_dir,
    ensure_ca,
    mark_offered,
    name_unoffered_ca,
    read_ca_certificate,
)

UNNAMED = "esafety"


def _key_file(data_dir: Path) -> bytes:
    return (ca_dir(data_dir) / KEY_AND_CERT_FILE).read_bytes()


def test_an_unnamed_ca_nobody_was_offered_takes_the_centres_name(tmp_path: Path) -> None:
    first = ensure_ca(tmp_path, UNNAMED)
    assert first.subject == "CN=esafety CA – esafety, O=esafety"
    renamed = name_unoffered_ca(tmp_path, "Riverside Training", UNNAMED)
    assert renamed is not None
    on_disk = read_ca_certificate(tmp_path)
    assert on_disk is not None and on_disk.subject == (
        "CN=esafety CA – Riverside Training, O=Riverside Training")
    # The file mitmproxy signs with holds the new certificate and its key, still owner-only.
    assert x509.load_pem_x509_certificate(_key_file(tmp_path)).subject == \
        on_disk.certificate.subject
    assert oct((ca_dir(tmp_path) / KEY_AND_CERT_FILE).stat().st_mode & 0o777) == "0o600"
    assert oct(ca_dir(tmp_path).stat().st_mode & 0o777) == "0o700"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ca-")]
    # Named now: a later change of name never replaces it.
    assert name_unoffered_ca(tmp_path, "Another Name", UNNAMED) is None
    assert read_ca_certificate(tmp_path) == on_disk


def test_a_ca_that_was_downloaded_or_exported_is_kept(tmp_path: Path) -> None:
    ensure_ca(tmp_path, UNNAMED)
    before = _key_file(tmp_path)
    mark_offered(tmp_path)
    assert name_unoffered_ca(tmp_path, "Riverside Training", UNNAMED) is None
    assert _key_file(tmp_path) == before


def test_esafety_ca_export_marks_the_ca_as_offered(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = subprocess.run([sys.executable, "-m", "esafety.cli", "--data-dir", str(data_dir),
                           "ca", "export"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    exported = x509.load_pem_x509_certificate(done.stdout)
    assert exported.subject == x509.load_pem_x509_certificate(
        (ca_dir(data_dir) / CERT_FILE).read_bytes()).subject
    assert name_unoffered_ca(data_dir, "Riverside Training", UNNAMED) is None
    kept = read_ca_certificate(data_dir)
    assert kept is not None and kept.certificate == exported
