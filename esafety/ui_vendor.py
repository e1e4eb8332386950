"""The admin UI's browser libraries (Chart.js), fetched without npm.

``python -m esafety.ui_vendor`` (what ``make run`` does) reads the locked version of each
library from ``admin_api/web/ui_packages/package-lock.json``, downloads that exact npm tarball
from the registry (the lock's ``resolved`` URL, else the registry's standard tarball address),
checks it against the lock's ``integrity`` (Subresource Integrity: ``sha512-`` and base64)
before reading anything from it, and writes the few files the UI serves into
``admin_api/web/static/vendor/``. A tarball whose hash differs is refused and nothing is
written. Only the standard library is used, so it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
LOCK_FILE = REPO / "admin_api" / "web" / "ui_packages" / "package-lock.json"
VENDOR_DIR = REPO / "admin_api" / "web" / "static" / "vendor"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
TIMEOUT = 60.0
MAX_TARBALL_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class VendoredFile:
    package: str
    member: str
    """The file's path inside the npm tarball."""
    target: str
    """Its name in the vendor directory."""


FILES = (
    VendoredFile("chart.js", "package/LICENSE.md", "chart.js-LICENSE.md"),
    VendoredFile("chart.js", "package/dist/chart.umd.min.js", "chart.umd.min.js"),
)
"""What the admin UI serves under /static/vendor/, written in this order (the last one is
what ``make`` checks for, so it exists only once all do)."""


class VendorError(RuntimeError):
    pass


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    integrity: str
    resolved: str | None

    def tarball_url(self, registry: str) -> str:
        """The lock's ``resolved`` URL, else the registry's address for this version's
        tarball (``REGISTRY/@scope/name/-/name-1.2.3.tgz``)."""
        if self.resolved:
            return self.resolved
        basename = self.name.rpartition("/")[2]
        return f"{registry.rstrip('/')}/{self.name}/-/{basename}-{self.version}.tgz"


def locked_package(lock: dict[str, object], name: str) -> LockedPackage:
    """``name``'s entry in an npm lock file (lockfileVersion 2 or 3)."""
    packages = lock.get("packages")
    entry = packages.get(f"node_modules/{name}") if isinstance(packages, dict) else None
    if not isinstance(entry, dict):
        raise VendorError(f"{name} is not in the lock file")
    version, integrity = entry.get("version"), entry.get("integrity")
    if not isinstance(version, str) or not isinstance(integrity, str):
        raise VendorError(f"the lock file gives no version and integrity for {name}")
    resolved = entry.get("resolved")
    return LockedPackage(name, version, integrity,
                         resolved if isinstance(resolved, str) else None)


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    """Raise unless ``data`` matches one of the SRI hashes in ``integrity`` (sha512 only)."""
    wanted = [item.partition("-")[2] for item in integrity.split()
              if item.startswith("sha512-")]
    if not wanted:
        raise VendorError(f"{what}: the lock file has no sha512 integrity ({integrity!r})")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if actual not in wanted:
        raise VendorError(f"{what}: the download does not match the lock file's integrity "
                          f"(sha512-{actual}); nothing was written")


def download(url: str) -> bytes:
    if urlsplit(url).scheme not in ("https", "file"):
        raise VendorError(f"refusing to download {url}: not https")
    # The scheme is checked just above.
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310
        data: bytes = response.read(MAX_TARBALL_BYTES + 1)
    if len(data) > MAX_TARBALL_BYTES:
        raise VendorError(f"{url} is larger than {MAX_TARBALL_BYTES} bytes")
    return data


def members(tarball: bytes, names: list[str], what: str) -> dict[str, bytes]:
    """The regular files ``names`` from a gzip tarball, read into memory (nothing is
    extracted to disk, so no path in the archive can point anywhere)."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.name in names and member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    found[member.name] = handle.read()
    missing = [name for name in names if name not in found]
    if missing:
        raise VendorError(f"{what}: the tarball has no {', '.join(missing)}")
    return found


def write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def vendor(lock_file: Path = LOCK_FILE, out: Path = VENDOR_DIR,
           registry: str = DEFAULT_REGISTRY) -> list[Path]:
    """Fetch, check and write every file of :data:`FILES`; the paths written."""
    lock = json.loads(lock_file.read_text(encoding="utf-8"))
    contents: dict[str, bytes] = {}
    for name in sorted({f.package for f in FILES}):
        package = locked_package(lock, name)
        what = f"{package.name}@{package.version}"
        url = package.tarball_url(registry)
        try:
            tarball = download(url)
        except OSError as exc:
            raise VendorError(f"cannot download {what} from {url}: {exc}") from exc
        check_integrity(tarball, package.integrity, what)
        wanted = [f for f in FILES if f.package == name]
        found = members(tarball, [f.member for f in wanted], what)
        contents.update({f.target: found[f.member] for f in wanted})
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for target, data in contents.items():
        write_file(out / target, data)
        written.append(out / target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esafety.ui_vendor",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lock-file", type=Path, default=LOCK_FILE, metavar="FILE",
                        help="the npm lock file naming the versions and hashes")
    parser.add_argument("--out", type=Path, default=VENDOR_DIR, metavar="DIR",
                        help="where the UI's vendored files go")
    parser.add_argument("--registry", metavar="URL",
                        default=os.environ.get("npm_config_registry") or DEFAULT_REGISTRY,
                        help="npm registry for packages the lock gives no URL for "
                             f"(default: $npm_config_registry, else {DEFAULT_REGISTRY})")
    args = parser.parse_args(argv)
    try:
        written = vendor(args.lock_file, args.out, args.registry)
    except (VendorError, OSError, ValueError, tarfile.TarError) as exc:
        sys.stderr.write(f"esafety: admin UI libraries: {exc}\n")
        return 1
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
