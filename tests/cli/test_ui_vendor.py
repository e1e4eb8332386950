"""`make run` gets the admin UI's Chart.js without npm: the exact tarball the lock file names,
refused unless it matches the lock's sha512 integrity."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from esafety.ui_vendor import LOCK_FILE, locked_package, main

REPO = Path(__file__).resolve().parent.parent.parent


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _lock(path: Path, tarball: Path, integrity_of: bytes) -> Path:
    digest = base64.b64encode(hashlib.sha512(integrity_of).digest()).decode()
    path.write_text(json.dumps({"lockfileVersion": 3, "packages": {
        "node_modules/chart.js": {"version": "4.5.1", "resolved": tarball.as_uri(),
                                  "integrity": f"sha512-{digest}"}}}))
    return path


BUNDLE = b"/*! Chart.js v4.5.1 */ window.Chart = function () {};\n"
LICENSE = b"The MIT License (MIT)\n"
PACKAGE = {"package/dist/chart.umd.min.js": BUNDLE, "package/LICENSE.md": LICENSE,
           "package/package.json": b"{}"}


def test_the_locked_tarball_is_checked_then_its_two_files_written(tmp_path: Path) -> None:
    tarball = tmp_path / "chart.js-4.5.1.tgz"
    tarball.write_bytes(_tarball(PACKAGE))
    lock = _lock(tmp_path / "package-lock.json", tarball, tarball.read_bytes())
    out = tmp_path / "vendor"
    assert main(["--lock-file", str(lock), "--out", str(out)]) == 0
    assert (out / "chart.umd.min.js").read_bytes() == BUNDLE
    assert (out / "chart.js-LICENSE.md").read_bytes() == LICENSE
    assert sorted(p.name for p in out.iterdir()) == ["chart.js-LICENSE.md", "chart.umd.min.js"]


def test_a_tarball_that_does_not_match_the_lock_is_refused_and_nothing_written(
        tmp_path: Path) -> None:
    tarball = tmp_path / "chart.js-4.5.1.tgz"
    tarball.write_bytes(_tarball({**PACKAGE, "package/dist/chart.umd.min.js": b"evil()"}))
    lock = _lock(tmp_path / "package-lock.json", tarball, _tarball(PACKAGE))
    out = tmp_path / "vendor"
    assert main(["--lock-file", str(lock), "--out", str(out)]) == 1
    assert not out.exists()


def test_a_tarball_without_the_bundle_is_an_error(tmp_path: Path) -> None:
    tarball = tmp_path / "chart.js-4.5.1.tgz"
    tarball.write_bytes(_tarball({"package/LICENSE.md": LICENSE}))
    lock = _lock(tmp_path / "package-lock.json", tarball, tarball.read_bytes())
    assert main(["--lock-file", str(lock), "--out", str(tmp_path / "vendor")]) == 1
    assert not (tmp_path / "vendor").exists()


def test_the_committed_lock_names_the_registry_tarball_and_a_sha512() -> None:
    package = locked_package(json.loads(LOCK_FILE.read_text()), "chart.js")
    assert package.tarball_url("https://registry.npmjs.org") == (
        f"https://registry.npmjs.org/chart.js/-/chart.js-{package.version}.tgz")
    assert package.integrity.startswith("sha512-")


def _make_dry_run(target: str) -> str:
    """The commands `make TARGET` would run on a machine where nothing is installed yet."""
    done = subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


def test_make_run_installs_only_redis_and_needs_no_npm() -> None:
    run = _make_dry_run("run")
    assert "redis-server" in run and "esafety.ui_vendor" in run
    for test_only in ("chromium", "nodejs", "npm"):
        assert test_only not in run
    tests = _make_dry_run("pytest")
    assert "chromium" in tests and "nodejs" in tests
