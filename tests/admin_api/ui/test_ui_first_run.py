"""A centre's first day in a real browser: ``esafety up`` on an empty data directory prints a
set-up link; the set-up page makes the first admin, names the centre, sets the networks
(the services restart to use them), takes a block-list tarball, and points to onboarding;
then the real proxy blocks a listed site.

Real ``esafety up`` (embedded Redis, proxy workers, admin), Debian's Chromium through
Playwright, curl through the proxy. A screenshot of each step is saved in
``artifacts/screenshots/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, Page, expect

from tests.harness.list_fixtures import list_tree
from tests.harness.proxy import curl_plain, free_port
from tests.harness.ui import (
    SCREENSHOTS,
    browser,  # noqa: F401
    chromium_path,
)

LINK = re.compile(r"(http://\S+/setup\?token=[A-Za-z0-9_-]+)")
WAIT_MS = 20_000
RESTART_MS = 60_000
ADMIN_PASSWORD = "a long first password"
LISTED_SITE = "http://casino-royale.test/"
BLOCKED_HTTPS_HOST = "casino-royale.test"


def _spki_hash(ca_file: Path) -> str:
    """Chromium trusts certificates under this key: the centre's CA, as on a managed laptop."""
    spki = x509.load_pem_x509_certificate(ca_file.read_bytes()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _field(page: str, name: str) -> str:
    """The text of the block page's ``data-field`` element ``name``."""
    found = re.search(rf'data-field="{name}"[^>]*>([^<]*)<', page)
    assert found is not None, f"no {name} on the page: {page[:500]}"
    return found.group(1)


def _status_ports() -> int:
    while True:
        port = free_port()
        if free_port() != port + 1:
            return port


def _get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, None


def _wait_for_link(output: Path, up: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = LINK.search(output.read_text(errors="replace"))
        if found:
            return found.group(1)
        assert up.poll() is None, log.read_text(errors="replace")
        time.sleep(0.2)
    raise AssertionError("esafety up printed no set-up link:\n" + output.read_text())


def _wait_until(check: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"first-run-{name}.png"), full_page=True)


def _unlabelled(page: Page) -> list[str]:
    found: list[str] = page.evaluate("""() => [...document.querySelectorAll("input, select")]
        .filter((el) => el.type !== "hidden" && ![...(el.labels || [])].some((l) => l.textContent.trim()))
        .map((el) => el.outerHTML.slice(0, 120))""")
    return found


def test_a_first_run_from_the_printed_link_to_a_filtering_centre(browser: Browser,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    assert chromium_path()
    proxy_port, admin_port, status_port = free_port(), free_port(), _status_ports()
    config = tmp_path / "esafety.yaml"
    config.write_text(yaml.safe_dump({"listen": {"proxy_status": f"127.0.0.1:{status_port}"},
                                      "logging": {"format": "json"}}))
    data_dir = tmp_path / "data"
    tarball = tmp_path / "blacklists.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(list_tree("proxy_lists"), arcname="blacklists")
    env = {k: v for k, v in os.environ.items()
           if k not in ("ESAFETY_REDIS_URL", "ESAFETY_CONFIG", "ESAFETY_DATA_DIR")}
    output, log = tmp_path / "up.out", tmp_path / "up.log"
    with output.open("wb") as out, log.open("wb") as err:
        up = subprocess.Popen(
            [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
             str(data_dir), "up", "--proxy-listen", f"127.0.0.1:{proxy_port}",
             "--admin-listen", f"127.0.0.1:{admin_port}"], env=env, stdout=out, stderr=err)
    admin = f"http://127.0.0.1:{admin_port}"
    proxy = f"http://127.0.0.1:{proxy_port}"
    try:
        link = _wait_for_link(output, up, log)
        assert link.startswith(f"{admin}/setup?token=")
        printed = output.read_text()
        assert "No admin account exists yet" in printed
        assert "esafety users add NAME --role admin" in printed
        assert "No block lists are loaded: only the built-in starter lists are active" in printed
        logged = [json.loads(line) for line in log.read_text().splitlines()
                  if line.startswith("{")]
        assert any("there is no admin account" in entry.get("msg", "") for entry in logged)
        assert link.split("token=")[1] not in log.read_text()  # the token is never logged

        code, ready = _wait_until(lambda: (lambda r: r if r[0] == 200 else None)(
            _get_json(f"{admin}/readyz")), "the admin service")
        assert ready["ready"] is True and ready["degraded"] is True
        assert any("no admin account" in reason for reason in ready["reasons"])
        assert any("no block lists are loaded" in reason for reason in ready["reasons"])
        proxy_ready = _wait_until(lambda: (lambda r: r if r[0] == 200 else None)(
            _get_json(f"http://127.0.0.1:{status_port}/readyz")), "the proxy")[1]
        assert proxy_ready["degraded"] is True
        assert "no block lists are loaded" in proxy_ready["reasons"][0]
        assert curl_plain(proxy, LISTED_SITE)[0] != 403  # not listed yet

        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)

        # 1. the first admin, typed and submitted from the keyboard
        page.goto(link)
        expect(page.get_by_role("heading", name="Step 1 of 5: Admin account")).to_be_visible()
        assert _unlabelled(page) == []
        page.get_by_label("User name").focus()
        page.keyboard.type("centre.admin")
        page.keyboard.press("Tab")
        page.keyboard.type("Alex Admin")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")  # past the hint
        page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
        page.get_by_label("Password again").fill(ADMIN_PASSWORD)
        _shot(page, "1-admin")
        page.get_by_label("Password again").press("Enter")

        # 2. the centre: its name and addresses (the banner says no lists are loaded)
        expect(page.get_by_role("heading", name="Step 2 of 5: Centre")).to_be_visible()
        expect(page.locator("#signed-in-as")).to_contain_text("Signed in as Alex Admin (Administrator)")
        expect(page.locator("#site-notices")).to_contain_text("No block lists are loaded")
        expect(page.locator("#site-notices")).to_contain_text("Gambling")
        # Only what the filter misses: not the allow-list, nor categories that are allowed.
        expect(page.locator("#site-notices")).not_to_contain_text("allow-list")
        expect(page.locator("#site-notices")).not_to_contain_text("Banking")
        assert _unlabelled(page) == []
        page.get_by_label("Centre name").fill("Riverside Training")
        page.get_by_label("Admin address").fill(admin)
        page.get_by_label("Proxy address").fill(f"127.0.0.1:{proxy_port}")
        _shot(page, "2-centre")
        page.get_by_role("button", name="Continue").click()

        # 3. networks and proxy sign-in; saving restarts the services
        expect(page.get_by_role("heading", name="Step 3 of 5: Networks")).to_be_visible()
        # The learner Wi-Fi (unmanaged: its devices do not trust the CA), and within it the
        # centre's own laptops at 127.0.0.1 (managed: they trust it).
        page.get_by_role("button", name="Add a network").click()
        wifi = page.get_by_role("group", name="Network 1")
        expect(wifi.get_by_label("Address range")).to_be_focused()
        wifi.get_by_label("Address range").fill("127.0.0.0/8")
        wifi.get_by_label("Network name").fill("Test Wi-Fi")
        wifi.get_by_label("Group").select_option("learner")
        wifi.get_by_label("Site").fill("main")
        page.get_by_role("button", name="Add a network").click()
        laptops = page.get_by_role("group", name="Network 2")
        expect(laptops.get_by_label("Address range")).to_be_focused()
        laptops.get_by_label("Address range").fill("127.0.0.1/32")
        laptops.get_by_label("Network name").fill("Centre laptops")
        laptops.get_by_label("Group").select_option("learner")
        laptops.get_by_label("Site").fill("main")
        laptops.get_by_label("Managed devices: they trust the esafety certificate").check()
        page.get_by_label("Off", exact=True).check()
        assert _unlabelled(page) == []
        _shot(page, "3-networks")
        page.get_by_role("button", name="Save and apply").click()
        expect(page.get_by_role("heading", name="Step 4 of 5: Block lists")).to_be_visible(
            timeout=RESTART_MS)
        settings = yaml.safe_load((data_dir / "settings.yaml").read_text())
        assert settings["centre_name"] == "Riverside Training"
        assert [(n["cidr"], n.get("managed")) for n in settings["networks"]] == [
            ("127.0.0.0/8", False), ("127.0.0.1/32", True)]
        assert oct((data_dir / "settings.yaml").stat().st_mode & 0o777) == "0o600"
        assert "settings.yaml changed: restarting" in log.read_text()

        # 4. block lists: upload the tarball, follow its progress
        page.get_by_label("Block list tarball (.tar.gz)").set_input_files(str(tarball))
        page.get_by_role("button", name="Upload and import").click()
        expect(page.get_by_role("link", name="Continue to devices")).to_be_visible(
            timeout=RESTART_MS)
        expect(page.locator(".list-progress")).to_contain_text("Done. Loaded")
        expect(page.locator("#site-notices")).to_be_hidden()
        _shot(page, "4-lists")
        page.get_by_role("link", name="Continue to devices").click()

        # 5. devices: the CA and onboarding
        expect(page.get_by_role("heading", name="Step 5 of 5: Devices")).to_be_visible()
        expect(page.get_by_role("link", name=re.compile("Onboarding"))).to_have_attribute(
            "href", "/onboarding")
        _shot(page, "5-devices")

        # The link is used up: the page now says set-up is done.
        other = browser.new_context().new_page()
        other.goto(link)
        expect(other.get_by_text("Set-up is done: an admin account exists.")).to_be_visible(
            timeout=WAIT_MS)
        other.context.close()
        context.close()

        # The real proxy blocks a listed site, and nothing is missing any more.
        blocked = _wait_until(lambda: (lambda r: r if r[0] == 403 else None)(
            curl_plain(proxy, LISTED_SITE)), "the proxy to block the listed site", 30)
        page_text = blocked[1]
        assert _field(page_text, "centre") == "Riverside Training web filter"
        assert "<h1>This page is blocked</h1>" in page_text
        assert _field(page_text, "category") == "Gambling"
        assert 'data-category="gambling"' in page_text
        assert _field(page_text, "address") == LISTED_SITE
        assert ("This is a gambling site. Gambling is not allowed on the centre&#x27;s "
                "network.") in page_text
        hit_id = re.search(r'data-field="hit-id"><code>([^<]+)</code>', page_text)
        assert hit_id is not None and f"/report?hit_id={hit_id.group(1)}" in page_text
        code, ready = _get_json(f"{admin}/readyz")
        assert code == 200 and ready["reasons"] == [], ready

        # The CA esafety up made before the centre had a name now carries it (no device had
        # been offered it yet), and it is what the proxy signs with.
        ca_file = data_dir / "ca" / "mitmproxy-ca-cert.pem"
        subject = x509.load_pem_x509_certificate(ca_file.read_bytes()).subject
        assert subject.rfc4514_string() == "O=Riverside Training,CN=esafety CA – Riverside Training"

        # A managed laptop browsing to a blocked HTTPS site sees the block page.
        managed = browser.browser_type.launch(
            executable_path=chromium_path(), headless=True, proxy={"server": proxy},
            args=["--headless=new", "--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run",
                  f"--ignore-certificate-errors-spki-list={_spki_hash(ca_file)}"])
        try:
            blocked_page = managed.new_page()
            response = blocked_page.goto(f"https://{BLOCKED_HTTPS_HOST}/", timeout=WAIT_MS)
            assert response is not None and response.status == 403
            expect(blocked_page.locator("h1")).to_have_text("This page is blocked")
            expect(blocked_page.locator("[data-field=centre]")).to_have_text(
                "Riverside Training web filter")
            expect(blocked_page.locator("[data-field=category]")).to_have_text("Gambling")
            expect(blocked_page.locator("[data-field=address]")).to_have_text(
                f"https://{BLOCKED_HTTPS_HOST}/")
            expect(blocked_page.get_by_role(
                "link", name="Ask for this site to be reviewed")).to_be_visible()
            _shot(blocked_page, "6-https-block-page-managed")
        finally:
            managed.close()

        # A device elsewhere on the Wi-Fi (127.0.0.2, unmanaged) gets the CONNECT refusal.
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}

        def unmanaged_answer() -> str:
            return subprocess.run(
                ["curl", "-sS", "--max-time", "15", "--interface", "127.0.0.2", "-x", proxy,
                 "--noproxy", "", "-o", "/dev/null", f"https://{BLOCKED_HTTPS_HOST}/"],
                capture_output=True, text=True, env=env, timeout=30).stderr

        # Each of the two workers loads the uploaded lists within about a second of the
        # upload; the managed check above reached one of them. Then every connection, on
        # whichever worker takes it, is refused.
        refused = "CONNECT tunnel failed, response 403"
        deadline = time.monotonic() + 30
        answer = unmanaged_answer()
        while refused not in answer and time.monotonic() < deadline:
            time.sleep(0.3)
            answer = unmanaged_answer()
        for _ in range(6):
            assert refused in answer, answer
            answer = unmanaged_answer()

        # Exported, it still names esafety and the centre.
        exported = subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
             str(data_dir), "ca", "export"], capture_output=True, env=env, timeout=60)
        assert exported.returncode == 0, exported.stderr
        assert x509.load_pem_x509_certificate(exported.stdout).subject == subject
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    assert up.returncode == 0, log.read_text()[-3000:]
