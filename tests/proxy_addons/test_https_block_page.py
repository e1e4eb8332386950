"""A blocked HTTPS site shows the block page on devices that trust the centre's CA, and the
site itself is never contacted.

The proxy here sends every connection for port 443 to the origins' raw TCP listener, which
records each connection it accepts: a TLS connection the proxy opened to a blocked site, even
only to read its certificate, would show there. A tunnel to an allowed site is the control
that shows the listener does see the proxy's connections.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as sync_redis
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import sync_playwright

from store.accounts import create_user, issue_token
from store.connection import connect
from store.keys import Keys
from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    curl,
    read_response_head,
    write_config,
)
from tests.harness.ui import chromium_path

MANAGED = "127.0.0.1"
"""Clients connecting from here are on the managed network (the CA is pushed to them)."""
UNMANAGED = "127.0.0.2"
"""Clients connecting from here are on the same group's network without the CA."""
IWF_HOST = "abuse-material.test"
PINNED_HOST = "bet-now.test"
PASSWORD = "correct horse battery"


@dataclass
class CountingProxy(ProxyProcess):
    """Port 443 goes to the origins' raw listener, which records every connection."""

    def __post_init__(self) -> None:
        super().__post_init__()
        config = yaml.safe_load(self.config_file.read_text())
        config["upstream"]["allow_internal"].append(f"127.0.0.1:{self.origins.raw_port}")
        self.config_file.write_text(yaml.safe_dump(config))

    def env(self) -> dict[str, str]:
        env = super().env()
        env["ESAFETY_TEST_PORTS"] = (f"80={self.origins.http_port},"
                                     f"443={self.origins.raw_port}")
        return env


def lists_with_iwf(directory: Path) -> Path:
    """The proxy test lists plus an IWF list naming one host."""
    tree = directory / "lists"
    shutil.copytree(PROXY_LISTS, tree)
    (tree / "iwf").mkdir()
    (tree / "iwf" / "domains").write_text(f"{IWF_HOST}\n")
    return tree


@pytest.fixture(scope="module")
def module_keys() -> Keys:
    return Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")


@pytest.fixture(scope="module")
def token(redis_url: str, module_keys: Keys) -> str:
    async def make() -> str:
        client = connect(redis_url)
        try:
            await create_user(client, module_keys, "trainee1", "learner", "trainee", PASSWORD)
            return await issue_token(client, module_keys, "trainee1")
        finally:
            await client.aclose()

    return asyncio.run(make())


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, redis_url: str, origins: Origins,
          module_keys: Keys, token: str) -> Iterator[CountingProxy]:
    directory = tmp_path_factory.mktemp("https-block")
    config = write_config(
        directory / "esafety.yaml", module_keys.prefix,
        centre_name="Riverside Training",
        groups={"trainee": {"block": ["gambling", "banking"]}},
        networks=[{"cidr": f"{MANAGED}/32", "group": "trainee", "managed": True},
                  {"cidr": "127.0.0.0/8", "group": "trainee"}],
        decryption={"never_decrypt_hosts": [PINNED_HOST]})
    process = CountingProxy(directory / "data", config, redis_url, origins)
    imported = process.cli("lists", "import", str(lists_with_iwf(directory)),
                           "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process.start()
    yield process
    process.stop()
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=module_keys.prefix + "*"):
        client.delete(key)
    client.close()


def connections_after(proxy: CountingProxy, mark: int, settle: float = 0.5) -> list[bytes]:
    time.sleep(settle)
    return proxy.origins.raw_connections_since(mark)


def connect_head(proxy: ProxyProcess, host: str, source: str) -> str:
    """The proxy's answer to ``CONNECT host:443`` sent from ``source``."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        return read_response_head(sock)


def hits_with(redis_url: str, keys: Keys, hit_id: str) -> list[dict[str, str]]:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = [fields for _id, fields in client.xrange(keys.hits)
                     if fields.get("id") == hit_id]
            if found:
                return found
            time.sleep(0.05)
        return []
    finally:
        client.close()


def test_the_origin_listener_sees_the_proxys_connections(proxy: CountingProxy) -> None:
    """The control: an allowed tunnel does reach the listener (so "nothing" below means it)."""
    mark = proxy.origins.raw_mark()
    assert connect_head(proxy, "allowed.test", UNMANAGED).startswith("HTTP/1.1 200")
    assert len(connections_after(proxy, mark)) == 1


def test_managed_device_sees_the_block_page_and_the_site_is_never_contacted(
        proxy: CountingProxy, redis_url: str, module_keys: Keys) -> None:
    mark = proxy.origins.raw_mark()
    result = curl(proxy, "https://casino-royale.test/spin?x=1")
    assert result.status == 403, result.stderr
    assert "This page is blocked" in result.body
    assert 'data-category="gambling"' in result.body
    assert "https://casino-royale.test/spin?x=1" in result.body
    assert "I reached this by accident" in result.body
    assert "http://admin.test:8090/report?hit_id=" in result.body
    hit_id = result.body.split('data-field="hit-id"><code>')[1].split("<")[0]
    assert f"x-esafety-hit-id: {hit_id}".lower() in result.headers.lower()
    assert connections_after(proxy, mark) == []
    hits = hits_with(redis_url, module_keys, hit_id)
    assert len(hits) == 1
    assert hits[0]["host"] == "casino-royale.test" and hits[0]["path"] == "/spin"
    assert hits[0]["action"] == "block" and hits[0]["category"] == "gambling"


def test_one_hit_per_blocked_request_on_a_managed_device(proxy: CountingProxy, redis_url: str,
                                                          module_keys: Keys) -> None:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        def count() -> int:
            return sum(1 for _id, fields in client.xrange(module_keys.hits)
                       if fields.get("host") == "poker-palace.test")

        before = count()
        first = curl(proxy, "https://poker-palace.test/one")
        second = curl(proxy, "https://poker-palace.test/two")
        assert first.status == second.status == 403
        deadline = time.monotonic() + 5
        while count() < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert count() == before + 2
    finally:
        client.close()


def test_unmanaged_network_still_refuses_the_connect(proxy: CountingProxy) -> None:
    mark = proxy.origins.raw_mark()
    head = connect_head(proxy, "casino-royale.test", UNMANAGED)
    assert head.startswith("HTTP/1.1 403")
    assert "x-esafety-hit-id" in head.lower()
    result = curl(proxy, "https://casino-royale.test/", "--interface", UNMANAGED)
    assert result.exit_code != 0 and "403" in result.stderr
    assert connections_after(proxy, mark) == []


def test_extension_signed_in_device_sees_the_block_page_off_the_managed_network(
        proxy: CountingProxy, token: str) -> None:
    mark = proxy.origins.raw_mark()
    result = curl(proxy, "https://slots-galore.test/", "--interface", UNMANAGED,
                  user=("trainee1", token))
    assert result.status == 403, result.stderr
    assert "This page is blocked" in result.body
    # A password sign-in is not the extension: the CONNECT is refused as before.
    by_password = curl(proxy, "https://slots-galore.test/", "--interface", UNMANAGED,
                       user=("trainee1", PASSWORD))
    assert by_password.exit_code != 0 and "403" in by_password.stderr
    assert connections_after(proxy, mark) == []


def test_never_decrypted_sites_are_refused_at_connect_even_when_managed(
        proxy: CountingProxy) -> None:
    mark = proxy.origins.raw_mark()
    for host in ("mybank.test", PINNED_HOST):  # a no-decrypt category; a pinned host
        head = connect_head(proxy, host, MANAGED)
        assert head.startswith("HTTP/1.1 403"), (host, head)
    assert connections_after(proxy, mark) == []


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_illegal_list_page_never_repeats_the_address(proxy: CountingProxy,
                                                     scheme: str) -> None:
    mark = proxy.origins.raw_mark()
    seen_before = len(proxy.origins.seen)
    result = curl(proxy, f"{scheme}://{IWF_HOST}/gallery/item-4471?q=secret-term")
    assert result.status == 403, result.stderr
    assert "This page is blocked" in result.body
    assert "illegal" in result.body
    assert "x-esafety-hit-id" in result.headers.lower()
    for fragment in (IWF_HOST, "abuse-material", "gallery", "item-4471", "secret-term"):
        assert fragment not in result.body
        assert fragment not in result.headers
    assert connections_after(proxy, mark) == []
    assert proxy.origins.seen[seen_before:] == []


def spki_hash(ca_file: Path) -> str:
    certificate = x509.load_pem_x509_certificate(ca_file.read_bytes())
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_chromium_trusting_the_ca_shows_the_block_page(proxy: CountingProxy) -> None:
    mark = proxy.origins.raw_mark()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            proxy={"server": proxy.proxy_url},
            args=["--headless=new", "--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run",
                  # Trust the centre's CA only (its key signs every certificate it issues).
                  f"--ignore-certificate-errors-spki-list={spki_hash(proxy.ca_cert)}"])
        try:
            page = browser.new_page()
            response = page.goto("https://casino-royale.test/", timeout=20_000)
            assert response is not None and response.status == 403
            assert page.locator("h1").inner_text() == "This page is blocked"
            assert page.get_by_role("link", name="I reached this by accident").is_visible()
            assert page.get_by_role("link", name="Ask for this site to be reviewed").is_visible()
            assert "Gambling" in page.content()
        finally:
            browser.close()
    # Chromium's own background requests (to Google's services) may pass through the proxy;
    # none of the connections the listener saw is for the blocked site (its TLS name).
    seen = connections_after(proxy, mark)
    assert not [data for data in seen if b"casino-royale.test" in data], seen


def test_eager_connections_in_the_options_still_never_contact_a_blocked_site(
        tmp_path: Path, redis_url: str, origins: Origins) -> None:
    """``--mitm-option connection_strategy=eager`` makes mitmproxy connect at CONNECT time;
    a tunnel planned for the block page still never reaches the site."""
    config = write_config(tmp_path / "esafety.yaml", f"esafety-test-{uuid.uuid4().hex[:10]}:",
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner",
                                     "managed": True}])
    process = CountingProxy(tmp_path / "data", config, redis_url, origins, fast_path=False,
                            mitm_options=("connection_strategy=eager",))
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process.start()
    try:
        # Eager for real: an allowed tunnel reaches the listener at CONNECT, before any byte.
        mark = process.origins.raw_mark()
        with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
            sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
            read_response_head(sock)
        assert connections_after(process, mark), "the control saw no connection"
        mark = process.origins.raw_mark()
        result = curl(process, "https://casino-royale.test/")
        assert result.status != 200
        assert connections_after(process, mark) == []
    finally:
        process.stop()
