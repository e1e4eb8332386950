"""Single sign-on at the Wi-Fi portal: a bring-your-own device on an ``auth: portal`` network
signs in with the centre's identity provider instead of an esafety password.

Real ``esafety proxy`` and ``esafety admin`` on one Redis, a real OpenID Connect provider
process on loopback (tests/harness/oidc_provider.py), and headless Chromium sending every
address through the proxy: the portal, the provider's pages (reachable before sign-in, as the
issuer's host is) and the callback all come through it, so the admin learns the device's
address from the proxy.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis as sync_redis
from playwright.sync_api import expect, sync_playwright

from store.address_bindings import AddressBinding
from store.keys import Keys
from tests.admin_api.ui.test_ui_single_sign_on import SECRET_ENV, SecretAdminProcess
from tests.harness.proxy import (
    REPO,
    Origins,
    ProxyProcess,
    free_port,
    stop_process,
    wait_until_healthy,
    write_config,
)
from tests.harness.ui import WAIT_MS, chromium_path

ADMIN_NAME = "esafety-admin.test"
CLIENT_ID = "esafety-portal"
PROVIDER = "Centre Accounts"


@dataclass
class Centre:
    proxy: ProxyProcess
    keys: Keys
    redis_url: str
    admin_url: str

    def _client(self) -> sync_redis.Redis:
        return sync_redis.Redis.from_url(self.redis_url, decode_responses=True)

    def bindings(self) -> dict[str, AddressBinding]:
        client = self._client()
        try:
            raw: dict[str, str] = client.hgetall(self.keys.address_bindings)  # type: ignore[assignment]
        finally:
            client.close()
        found = {}
        for address, value in raw.items():
            binding = AddressBinding.from_json(value)
            if binding is not None:
                found[address] = binding
        return found

    def hit_for(self, path_part: str) -> dict[str, str]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client = self._client()
            try:
                entries: list[tuple[str, dict[str, str]]] = client.xrange(  # type: ignore[assignment]
                    self.keys.hits)
            finally:
                client.close()
            for _id, fields in entries:
                if path_part in fields.get("path", ""):
                    return fields
            time.sleep(0.05)
        raise AssertionError(f"no hit for {path_part}")


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
           origins: Origins) -> Iterator[Centre]:
    directory = tmp_path_factory.mktemp("portal-sso")
    secret = secrets.token_urlsafe(24)
    admin_port, provider_port = free_port(), free_port()
    # By name, as real providers are (the learner profile blocks bare addresses).
    provider_url = f"http://localhost:{provider_port}"
    admin_url = f"http://{ADMIN_NAME}:{admin_port}"
    provider_log = directory / "provider.log"
    with provider_log.open("ab") as log:
        provider = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.oidc_provider", "--port", str(provider_port),
             "--client-id", CLIENT_ID, "--client-secret-env", SECRET_ENV,
             "--redirect-uri", f"{admin_url}/auth/oidc/callback", "--host-name", "localhost"],
            cwd=REPO, env={**os.environ, SECRET_ENV: secret}, stdout=log,
            stderr=subprocess.STDOUT)
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    config = write_config(
        directory / "esafety.yaml", keys.prefix, admin_public_url=admin_url,
        listen={"admin": f"127.0.0.1:{admin_port}"},
        logging={"format": "text", "level": "info", "log_allowed": True},
        networks=[{"cidr": "127.0.0.0/8", "group": "guest", "site": "byod-wifi",
                   "auth": "portal"}],
        # The provider's pages are reached through the proxy, before anyone signs in.
        upstream={"allow_internal": [f"127.0.0.1:{provider_port}"],
                  "http_ports": [80, provider_port]},
        identity={"portal": {"session_hours": 2},
                  "oidc": {"issuer": provider_url, "client_id": CLIENT_ID,
                           "client_secret_env": SECRET_ENV, "name": PROVIDER,
                           "scopes": ["openid", "email", "profile", "groups"],
                           "roles": {"manager": ["group:managers"]},
                           "groups": {"learner": ["group:learners"]}}})
    data_dir = directory / "data"
    proxy = ProxyProcess(data_dir, config, redis_url, origins)
    admin = SecretAdminProcess(data_dir, config, redis_url, admin_port, secret=secret)
    try:
        wait_until_healthy(provider, f"{provider_url}/.well-known/openid-configuration",
                           "OIDC provider", lambda: provider_log.read_text(errors="replace"))
        proxy.start()
        admin.start()
        yield Centre(proxy, keys, redis_url, admin_url)
    finally:
        admin.stop()
        proxy.stop()
        stop_process(provider)
        client = sync_redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=keys.prefix + "*"):
            client.delete(key)
        client.close()


def test_a_device_signs_in_at_the_portal_with_the_identity_provider(centre: Centre) -> None:
    assert "127.0.0.1" not in centre.bindings()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            args=["--headless=new", "--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run",
                  f"--proxy-server={centre.proxy.proxy_url}",
                  "--proxy-bypass-list=<-loopback>",
                  "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"])
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            # The phone's connectivity check lands on the portal, which offers the provider.
            page.goto("http://connectivitycheck.gstatic.com/generate_204")
            expect(page).to_have_url(f"{centre.admin_url}/portal?return="
                                     "http%3A%2F%2Fconnectivitycheck.gstatic.com%2Fgenerate_204")
            page.get_by_role("link", name=f"Sign in with {PROVIDER}").click()
            # The provider's own page, reached before anyone signed in on this device.
            page.get_by_label("E-mail address").fill("sam@centre.example")
            page.get_by_label("Groups").fill("learners")
            page.get_by_role("button", name="Sign in to the test provider").click()
            expect(page.locator("[data-field=signed-in-as]")).to_contain_text(
                "sam@centre.example")
            binding = centre.bindings()["127.0.0.1"]
            assert (binding.user, binding.source, binding.group) == (
                "sam@centre.example", "portal", "learner")
            # No admin UI session came with it: the portal sign-in names a device only.
            me = page.goto(f"{centre.admin_url}/api/v1/auth/me")
            assert me is not None and me.status == 401
        finally:
            browser.close()
    marker = "m" + uuid.uuid4().hex[:12]
    subprocess.run(["curl", "-sS", "--max-time", "10", "--noproxy", "", "-x",
                    centre.proxy.proxy_url, "-o", "/dev/null",
                    f"http://casino-royale.test/{marker}"],
                   env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
                   check=True, timeout=20)
    hit = centre.hit_for(marker)
    assert (hit["user"], hit["identified_by"], hit["group"]) == (
        "sam@centre.example", "portal", "learner")


def test_a_sign_in_started_for_one_address_cannot_bind_another(centre: Centre,
                                                               tmp_path: Path) -> None:
    """The provider's answer carried to another device (another address) binds nothing."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    jar = tmp_path / "jar"
    started = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--interface", "127.0.0.7", "--noproxy", "",
         "-x", centre.proxy.proxy_url, "-c", str(jar), "-o", "/dev/null", "-w",
         "%{redirect_url}", f"{centre.admin_url}/auth/oidc/start?for=portal"],
        capture_output=True, text=True, env=env, timeout=20, check=True)
    authorize = started.stdout
    assert "/authorize?" in authorize
    # The provider signs the person in (its form posts the request's fields back) and sends
    # the browser back with a code...
    parts = urlsplit(authorize)
    fields = [*parse_qsl(parts.query), ("email", "eve@centre.example"), ("groups", "learners")]
    posted = [arg for key, value in fields for arg in ("--data-urlencode", f"{key}={value}")]
    answer = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--noproxy", "*", "-o", "/dev/null", "-w",
         "%{redirect_url}", *posted, parts._replace(query="").geturl()],
        capture_output=True, text=True, env=env, timeout=20)
    callback = answer.stdout
    assert "/auth/oidc/callback?" in callback, (answer.stdout, answer.stderr)
    # ...which is finished from another address, with the first device's cookie.
    finished = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--interface", "127.0.0.8", "--noproxy", "",
         "-x", centre.proxy.proxy_url, "-b", str(jar), "-o", "/dev/null", "-w",
         "%{http_code}", callback],
        capture_output=True, text=True, env=env, timeout=20)
    assert finished.stdout == "400"
    assert "127.0.0.7" not in centre.bindings() and "127.0.0.8" not in centre.bindings()
