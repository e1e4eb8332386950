"""`esafety lists update` downloads the configured sources (here from a loopback server)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml

from tests.harness.list_fixtures import list_tree

REPO = Path(__file__).resolve().parent.parent.parent
MINI = list_tree("ut1_mini")


@pytest.fixture
def list_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    with tarfile.open(root / "blacklists.tar.gz", "w:gz") as archive:
        archive.add(MINI, arcname="blacklists")
    (root / "malware-hosts.txt").write_text("0.0.0.0 evil-downloads.test\n0.0.0.0 trojan.test\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def esafety(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esafety.cli", "--config",
                           str(tmp_path / "esafety.yaml"), "--data-dir", str(tmp_path / "data"),
                           *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_update_downloads_and_imports_each_configured_source(tmp_path: Path,
                                                             list_server: str) -> None:
    (tmp_path / "esafety.yaml").write_text(yaml.safe_dump({"lists": {"sources": [
        {"name": "ut1", "url": f"{list_server}/blacklists.tar.gz", "format": "squidguard"},
        {"name": "malware-feed", "url": f"{list_server}/malware-hosts.txt", "format": "hosts",
         "list": "malware"},
    ]}}))
    result = esafety(tmp_path, "lists", "update")
    assert result.returncode == 0, result.stderr
    assert "source ut1" in result.stdout and "source malware-feed" in result.stdout
    check = esafety(tmp_path, "check", "http://trojan.test/", "--json")
    assert check.returncode == 1 and '"category":"malware_hacking"' in check.stdout
    status = esafety(tmp_path, "lists", "status", "--json")
    assert f"{list_server}/malware-hosts.txt" in status.stdout


def test_an_unreachable_source_keeps_what_was_imported(tmp_path: Path, list_server: str) -> None:
    good = {"name": "malware-feed", "url": f"{list_server}/malware-hosts.txt", "format": "hosts",
            "list": "malware"}
    (tmp_path / "esafety.yaml").write_text(yaml.safe_dump({"lists": {"sources": [good]}}))
    assert esafety(tmp_path, "lists", "update").returncode == 0
    missing = dict(good, url=f"{list_server}/gone.txt")
    (tmp_path / "esafety.yaml").write_text(yaml.safe_dump({"lists": {"sources": [missing]}}))
    result = esafety(tmp_path, "lists", "update")
    assert result.returncode == 1
    assert "cannot download malware-feed" in result.stderr and "kept" in result.stderr
    assert esafety(tmp_path, "check", "http://trojan.test/").returncode == 1  # still blocked


def test_update_without_sources_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "esafety.yaml").write_text("centre_id: main\n")
    result = esafety(tmp_path, "lists", "update")
    assert result.returncode == 2 and "no list sources configured" in result.stderr
