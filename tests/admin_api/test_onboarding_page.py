"""``/onboarding``: the centre's own page for setting up a device, with the real CA's
subject, fingerprints and downloads; ``http://mitm.it/`` through the proxy ends there."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from playwright.sync_api import sync_playwright

from deployment.ca_certificate import ensure_ca
from tests.harness.api import ApiFactory
from tests.harness.browser import AdminProcess
from tests.harness.proxy import Origins, ProxyProcess, free_port, write_config
from tests.harness.ui import chromium_path

CENTRE = "Riverside Training"


def colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


async def test_without_a_ca_the_page_says_so_plainly(make_api: ApiFactory) -> None:
    api = await make_api(centre_name=CENTRE)
    response = await api.client.get("/onboarding")
    assert response.status == 200
    page = await response.text()
    assert "The proxy has not made the centre&#x27;s certificate yet" in page
    assert 'data-field="sha256"' not in page and 'href="/onboarding/esafety-ca' not in page
    download = await api.client.get("/onboarding/esafety-ca.pem")
    assert download.status == 404
    body = await download.json()
    assert body["error"]["code"] == "no_certificate"


async def test_the_page_shows_the_real_ca_and_offers_it_for_download(
        make_api: ApiFactory) -> None:
    api = await make_api(centre_name=CENTRE, admin_public_url="https://filter.riverside.test")
    ensure_ca(api.data_dir, CENTRE)
    ca_folder = api.data_dir / "ca"
    on_disk = x509.load_pem_x509_certificate((ca_folder / "mitmproxy-ca-cert.pem").read_bytes())
    # The admin reads the certificate only: the key files need not even be there.
    for key_file in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        (ca_folder / key_file).unlink()

    response = await api.client.get("/onboarding")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert '<html lang="en-GB">' in page
    assert f"CN=esafety CA – {CENTRE}, O={CENTRE}" in page
    assert colon_hex(on_disk.fingerprint(hashes.SHA256())) in page
    assert colon_hex(on_disk.fingerprint(hashes.SHA1())) in page
    assert "mitmproxy" not in page.lower()
    assert "<img" not in page and "<script" not in page
    for platform in ("Group Policy", "Intune", "Google Admin", "macOS", "iPhone", "Android"):
        assert platform in page
    assert "https://filter.riverside.test/proxy.pac" in page
    # Every file the page links to is served.
    for link in re.findall(r'(?:href)="(/[^"]*)"', page):
        linked = await api.client.get(link)
        assert linked.status == 200, link

    pem = await api.client.get("/onboarding/esafety-ca.pem")
    assert pem.status == 200
    assert pem.headers["Content-Type"] == "application/x-pem-file"
    assert pem.headers["Content-Disposition"] == 'attachment; filename="esafety-ca.pem"'
    pem_body = await pem.read()
    assert b"PRIVATE KEY" not in pem_body
    assert x509.load_pem_x509_certificate(pem_body) == on_disk
    der = await api.client.get("/onboarding/esafety-ca.der")
    assert der.status == 200
    assert der.headers["Content-Type"] == "application/x-x509-ca-cert"
    assert der.headers["Content-Disposition"] == 'attachment; filename="esafety-ca.der"'
    assert x509.load_der_x509_certificate(await der.read()) == on_disk


@pytest.mark.xdist_group("browser")
def test_mitm_it_through_the_proxy_ends_on_the_onboarding_page(
        tmp_path: Path, redis_url: str, origins: Origins) -> None:
    admin_port = free_port()
    config = write_config(tmp_path / "esafety.yaml", f"esafety-test-{uuid.uuid4().hex[:10]}:",
                          centre_name=CENTRE, admin_public_url=f"http://127.0.0.1:{admin_port}",
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    data_dir = tmp_path / "data"
    proxy = ProxyProcess(data_dir, config, redis_url, origins).start()
    admin = AdminProcess(config, data_dir, redis_url, admin_port)
    try:
        admin.start()
        ca = x509.load_pem_x509_certificate(proxy.ca_cert.read_bytes())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), headless=True,
                # The admin service directly, as the PAC file sends it.
                proxy={"server": proxy.proxy_url, "bypass": "127.0.0.1"},
                args=["--headless=new", "--no-sandbox", "--disable-background-networking",
                      "--disable-component-update", "--no-first-run"])
            try:
                page = browser.new_page()
                page.goto("http://mitm.it/", timeout=20_000)
                assert page.url == f"{admin.url}/onboarding"
                assert page.locator("h1").inner_text() == \
                    "Set up a device for the centre's web filter"
                subject = page.locator('[data-field="subject"]').inner_text()
                assert subject == f"CN=esafety CA – {CENTRE}, O={CENTRE}"
                sha256 = page.locator('[data-field="sha256"]').inner_text()
                assert sha256 == colon_hex(ca.fingerprint(hashes.SHA256()))
                # The admin UI's stylesheet applied: nothing on the page is left unstyled.
                header_colour = page.locator(".site-header").evaluate(
                    "el => getComputedStyle(el).backgroundColor")
                assert header_colour not in ("rgba(0, 0, 0, 0)", "transparent")
                with page.expect_download() as download_info:
                    page.get_by_role("link", name="Download the certificate (PEM)").click()
                saved = download_info.value.path()
                assert x509.load_pem_x509_certificate(Path(saved).read_bytes()) == ca
            finally:
                browser.close()
    finally:
        admin.stop()
        proxy.stop()
