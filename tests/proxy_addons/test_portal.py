"""The Wi-Fi sign-in portal, end to end: a real ``esafety proxy`` and a real ``esafety admin``
on one Redis, a network ``127.0.0.0/8`` marked ``auth: portal`` (group ``guest``), headless
Chromium for the bring-your-own device, and curl from other loopback addresses
(``--interface 127.0.0.N``) for the other devices. The admin also takes RADIUS accounting from
Debian's ``radclient`` (the Wi-Fi controller), whose Stop ends a sign-in at that address.

The admin's public address is a name only the proxy can resolve, so the sign-in page Chromium
shows has come through the proxy, and the admin must learn the device's address from the
proxy's ``X-Forwarded-For``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis as sync_redis
from playwright.sync_api import Browser, expect, sync_playwright

from store.address_bindings import AddressBinding
from store.keys import Keys
from tests.harness.proxy import Origins, ProxyProcess, free_port, write_config
from tests.harness.ui import PASSWORD, WAIT_MS, AdminProcess, UiStack, chromium_path

ADMIN_NAME = "esafety-admin.test"
PROBES = ["http://connectivitycheck.gstatic.com/generate_204",
          "http://clients3.google.com/generate_204",
          "http://captive.apple.com/hotspot-detect.html",
          "http://www.msftconnecttest.com/connecttest.txt",
          "http://www.msftncsi.com/ncsi.txt"]
CSRF_VALUE = re.compile(r'name="csrf" value="([^"]+)"')
RADIUS_SECRET = "the controller's shared secret"
RADIUS_SECRET_ENV = "ESAFETY_TEST_PORTAL_RADIUS_SECRET"


class AdminWithRadiusSecret(AdminProcess):
    """The admin process, with the Wi-Fi controller's shared secret in its environment."""

    def env(self) -> dict[str, str]:
        return {**super().env(), RADIUS_SECRET_ENV: RADIUS_SECRET}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _marker() -> str:
    return "m" + uuid.uuid4().hex[:12]


@dataclass
class Reply:
    status: int
    headers: str
    body: str

    def header(self, name: str) -> str:
        for line in self.headers.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return ""


def curl_from(address: str, url: str, *args: str, proxy: str | None = None,
              jar: Path | None = None) -> Reply:
    """curl from the loopback ``address``, through ``proxy`` or straight to the server."""
    cmd = ["curl", "-sS", "--max-time", "10", "--interface", address, "-D", "-", "-o", "-",
           "-w", "\n__STATUS__%{http_code}", "--noproxy", "" if proxy else "*"]
    if proxy:
        cmd += ["-x", proxy]
    if jar is not None:
        cmd += ["-b", str(jar), "-c", str(jar)]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run([*cmd, url, *args], capture_output=True, env=env, timeout=20)
    out, _, status = done.stdout.decode("utf-8", "replace").rpartition("\n__STATUS__")
    headers, _, body = out.partition("\r\n\r\n")
    while body.startswith("HTTP/"):  # a CONNECT's answer comes first
        headers, _, body = body.partition("\r\n\r\n")
    return Reply(int(status or 0), headers, body)


@dataclass
class Centre:
    stack: UiStack
    proxy: ProxyProcess
    origins: Origins
    admin_port: int
    directory: Path
    radius_port: int

    @property
    def admin_url(self) -> str:
        return f"http://{ADMIN_NAME}:{self.admin_port}"

    @property
    def keys(self) -> Keys:
        return self.stack.keys

    def redis(self) -> sync_redis.Redis:
        return sync_redis.Redis.from_url(self.stack.redis_url, decode_responses=True)

    def bindings(self) -> dict[str, AddressBinding]:
        client = self.redis()
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

    def hits(self) -> list[dict[str, str]]:
        client = self.redis()
        try:
            entries: list[tuple[str, dict[str, str]]] = client.xrange(  # type: ignore[assignment]
                self.keys.hits)
        finally:
            client.close()
        return [fields for _id, fields in entries]

    def audit_actions(self) -> list[tuple[str, str]]:
        client = self.redis()
        try:
            entries: list[tuple[str, dict[str, str]]] = client.xrange(  # type: ignore[assignment]
                self.keys.audit)
        finally:
            client.close()
        return [(fields["action"], fields["target"]) for _id, fields in entries]

    def wait_for_hit(self, path_part: str) -> dict[str, str]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for fields in self.hits():
                if path_part in fields.get("path", ""):
                    return fields
            time.sleep(0.05)
        raise AssertionError(f"no hit for {path_part}")

    def radclient(self, attributes: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """One Accounting-Request from Debian's radclient, as the Wi-Fi controller sends it."""
        secret_file = self.directory / "radius-secret"
        secret_file.write_text(RADIUS_SECRET + "\n")
        text = "\n".join(f"{name} = {value}" for name, value in attributes.items()) + "\n"
        return subprocess.run(["radclient", "-r", "1", "-t", "2", "-S", str(secret_file),
                               f"127.0.0.1:{self.radius_port}", "acct"], input=text,
                              capture_output=True, text=True, timeout=20)

    def through_proxy(self, address: str, url: str, *args: str) -> Reply:
        return curl_from(address, url, *args, proxy=self.proxy.proxy_url)

    def sign_in(self, address: str, user: str, password: str = PASSWORD, *,
                via_proxy: bool = False, extra: tuple[str, ...] = ()) -> Reply:
        """The page's form, as a browser posts it: GET the page (the CSRF cookie and field),
        then POST them back with the user name and password."""
        jar = self.directory / f"jar-{uuid.uuid4().hex[:8]}"
        base = self.admin_url if via_proxy else self.stack.admin.base_url
        proxy = self.proxy.proxy_url if via_proxy else None
        page = curl_from(address, f"{base}/portal", *extra, proxy=proxy, jar=jar)
        found = CSRF_VALUE.search(page.body)
        assert found, page.body[:500]
        return curl_from(address, f"{base}/portal/sign-in", *extra, "--data-urlencode",
                         f"username={user}", "--data-urlencode", f"password={password}",
                         "--data-urlencode", f"csrf={found.group(1)}", proxy=proxy, jar=jar)

    def sent_to_portal(self, address: str) -> bool:
        reply = self.through_proxy(address, f"http://origin.test/{_marker()}")
        return reply.status == 302 and reply.header("Location").startswith(
            f"{self.admin_url}/portal?return=")

    def wait_until_sent_to_portal(self, address: str, within: float) -> float:
        """Seconds until a request from ``address`` is sent to the portal (fails after
        ``within``)."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            if self.sent_to_portal(address):
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"{address} was not sent to the portal within {within} s")

    def wait_until_attributed(self, address: str, within: float = 2.0) -> None:
        start = time.monotonic()
        while time.monotonic() - start < within:
            if not self.sent_to_portal(address):
                return
            time.sleep(0.05)
        raise AssertionError(f"{address} still sent to the portal after {within} s")


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
           origins: Origins) -> Iterator[Centre]:
    directory = tmp_path_factory.mktemp("portal")
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    admin_port = free_port()
    radius_port = free_udp_port()
    config = write_config(
        directory / "esafety.yaml", keys.prefix,
        admin_public_url=f"http://{ADMIN_NAME}:{admin_port}",
        listen={"admin": f"127.0.0.1:{admin_port}"},
        logging={"format": "text", "level": "info", "log_allowed": True},
        identity={"portal": {"session_hours": 2},
                  "radius_accounting": {
                      "listen": f"127.0.0.1:{radius_port}",
                      "clients": [{"address": "127.0.0.1", "secret_env": RADIUS_SECRET_ENV}]}},
        networks=[{"cidr": "127.0.0.0/8", "group": "guest", "site": "byod-wifi",
                   "auth": "portal"}])
    data_dir = directory / "data"
    proxy = ProxyProcess(data_dir, config, redis_url, origins)
    admin = AdminWithRadiusSecret(data_dir, config, redis_url, admin_port)
    stack = UiStack(admin, keys, redis_url)
    try:
        proxy.start()
        admin.start()
        for name in ("kai", "lou", "mo", "nia"):
            stack.add_user(name, "learner")
        stack.add_user("it-sam", "admin")
        yield Centre(stack, proxy, origins, admin_port, directory, radius_port)
    finally:
        admin.stop()
        proxy.stop()
        client = sync_redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=keys.prefix + "*"):
            client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def browser_through_proxy(centre: Centre) -> Iterator[Browser]:
    """Chromium with every address, loopback included, sent through the proxy."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            args=["--headless=new", "--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run",
                  f"--proxy-server={centre.proxy.proxy_url}",
                  "--proxy-bypass-list=<-loopback>",
                  "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"])
        try:
            yield launched
        finally:
            launched.close()


def test_every_os_probe_is_sent_to_the_portal_and_a_connect_is_refused_naming_it(
        centre: Centre) -> None:
    for probe in PROBES:
        reply = centre.through_proxy("127.0.0.9", probe)
        assert reply.status == 302, (probe, reply.status, reply.body[:200])
        assert reply.header("Location") == f"{centre.admin_url}/portal?return={quote(probe, safe='')}"
    marker = _marker()
    refused = centre.through_proxy("127.0.0.9", f"https://origin.test/{marker}")
    assert "HTTP/1.1 403" in refused.headers and refused.body == ""  # curl shows no body
    raw_mark = centre.origins.raw_mark()
    with socket.create_connection(("127.0.0.1", centre.proxy.port), timeout=10,
                                  source_address=("127.0.0.9", 0)) as sock:
        sock.sendall(b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"again."):
                break
    text = answer.decode()
    assert text.startswith("HTTP/1.1 403"), text
    assert f"Sign in at {centre.admin_url}/portal" in text and "not signed in" in text
    assert centre.origins.saw(marker) == []
    assert centre.origins.raw_connections_since(raw_mark) == []
    # Nothing was logged as a block; the redirects are counted in the proxy's metrics.
    assert not any(fields.get("action") == "block" for fields in centre.hits())
    status, metrics = centre.proxy.status("/metrics")
    counted = re.search(r'^esafety_proxy_portal_redirects_total\{worker="[^"]*"\} (\S+)$',
                        metrics, re.M)
    assert status == 200 and counted and float(counted.group(1)) >= len(PROBES) + 1


def test_a_bring_your_own_device_signs_in_on_the_probe_browses_and_is_attributed(
        centre: Centre, browser_through_proxy: Browser) -> None:
    context = browser_through_proxy.new_context(locale="en-GB", timezone_id="Europe/London")
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(PROBES[0])
        assert page.url.startswith(f"{centre.admin_url}/portal?return="), page.url
        expect(page.locator("h1")).to_have_text("Sign in to use the internet")
        page.get_by_label("User name").fill("kai")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("[data-field=signed-in-as]")).to_contain_text("Signed in as kai")
        expect(page.locator("[data-field=continue]")).to_have_attribute("href", PROBES[0])
        binding = centre.bindings()["127.0.0.1"]
        assert (binding.user, binding.source, binding.group) == ("kai", "portal", "learner")
        assert 2 * 3600 - 60 < binding.expires_at - time.time() <= 2 * 3600

        marker = _marker()
        time.sleep(0.5)  # every proxy follows the bindings within a second
        browsed = page.goto(f"http://origin.test/{marker}")
        assert browsed is not None and browsed.status == 200
        assert centre.origins.saw(marker)
        hit = centre.wait_for_hit(marker)
        assert (hit["user"], hit["group"], hit["identified_by"], hit["client_ip"]) == (
            "kai", "learner", "portal", "127.0.0.1")

        # Another device on the same network is not attributed: still sent to the portal.
        assert centre.sent_to_portal("127.0.0.9")

        # Sign-out ends it: the next request goes to the portal again within a second.
        page.goto(f"{centre.admin_url}/portal")
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("h1")).to_have_text("Sign in to use the internet")
        signed_out_at = time.monotonic()
        assert "127.0.0.1" not in centre.bindings()
        assert centre.wait_until_sent_to_portal("127.0.0.1", within=1.0) < 1.0
        assert time.monotonic() - signed_out_at < 1.5
        assert errors == []
    finally:
        context.close()
    actions = centre.audit_actions()
    assert ("portal.sign_in", "kai") in actions and ("portal.sign_out", "kai") in actions


def test_wrong_passwords_count_against_the_login_limits(centre: Centre) -> None:
    for _ in range(5):
        wrong = centre.sign_in("127.0.0.6", "lou", "not the password")
        assert wrong.status == 401 and "wrong" in wrong.body
    locked = centre.sign_in("127.0.0.6", "lou")  # even the right password, once locked
    assert locked.status == 429 and "Too many wrong passwords" in locked.body
    assert "127.0.0.6" not in centre.bindings()
    assert centre.sent_to_portal("127.0.0.6")
    assert ("portal.sign_in_failed", "lou") in centre.audit_actions()
    # The lock is this device's only: lou signs in from another.
    assert centre.sign_in("127.0.0.5", "lou").status == 303
    assert centre.bindings()["127.0.0.5"].user == "lou"
    assert curl_from("127.0.0.5", f"{centre.stack.admin.base_url}/portal/sign-out",
                     "-X", "POST").status == 400  # no CSRF token: nothing happens
    assert "127.0.0.5" in centre.bindings()


def test_a_forwarded_address_from_a_device_is_not_believed(centre: Centre) -> None:
    # Straight to the admin, claiming another device's address: the peer's is bound.
    reply = centre.sign_in("127.0.0.7", "mo", extra=("-H", "X-Forwarded-For: 127.0.0.8"))
    assert reply.status == 303
    bindings = centre.bindings()
    assert bindings["127.0.0.7"].user == "mo" and "127.0.0.8" not in bindings
    centre.wait_until_attributed("127.0.0.7")
    assert centre.sent_to_portal("127.0.0.8")
    # Through the proxy, which replaces what the device claimed with its real address.
    reply = centre.sign_in("127.0.0.10", "mo", via_proxy=True,
                           extra=("-H", "X-Forwarded-For: 127.0.0.11"))
    assert reply.status == 303, reply.body[:300]
    bindings = centre.bindings()
    assert bindings["127.0.0.10"].user == "mo" and "127.0.0.11" not in bindings
    assert centre.sent_to_portal("127.0.0.11")
    # From the proxy's own address without the header, nobody can tell who it is: refused.
    unknown = curl_from("127.0.0.1", f"{centre.stack.admin.base_url}/portal")
    assert unknown.status == 400 and "did not say which device" in unknown.body
    # A sign-in without the page's CSRF cookie binds nothing.
    forged = curl_from("127.0.0.12", f"{centre.stack.admin.base_url}/portal/sign-in",
                       "--data-urlencode", "username=mo", "--data-urlencode",
                       f"password={PASSWORD}", "--data-urlencode", "csrf=" + "a" * 43)
    assert forged.status == 400 and "127.0.0.12" not in centre.bindings()


def test_disabling_the_account_ends_its_portal_sign_ins(centre: Centre) -> None:
    assert centre.sign_in("127.0.0.13", "nia").status == 303
    centre.wait_until_attributed("127.0.0.13")
    marker = _marker()
    assert centre.through_proxy("127.0.0.13", f"http://origin.test/{marker}").status == 200
    assert centre.wait_for_hit(marker)["user"] == "nia"
    answer = centre.stack.api("POST", "/api/v1/users/nia/disable", "it-sam", {})
    assert answer["ended_sign_ins"] == 1
    assert "127.0.0.13" not in centre.bindings()
    centre.wait_until_sent_to_portal("127.0.0.13", within=1.0)
    assert json.dumps(centre.audit_actions()).count("user.disable") == 1


def test_a_radius_stop_ends_the_portal_sign_in_at_that_address(centre: Centre) -> None:
    device, neighbour = "127.0.0.20", "127.0.0.21"
    assert centre.sign_in(device, "kai").status == 303
    assert centre.sign_in(neighbour, "mo").status == 303
    centre.wait_until_attributed(device)
    centre.wait_until_attributed(neighbour)
    marker = _marker()
    assert centre.through_proxy(device, f"http://origin.test/{marker}").status == 200
    signed_in = centre.wait_for_hit(marker)
    assert (signed_in["user"], signed_in["identified_by"], signed_in["client_ip"]) == (
        "kai", "portal", device)

    # The Wi-Fi controller says the device left the Wi-Fi. It knows the device by its own
    # name (a MAC sign-in here), not by the portal's user: the Stop ends the sign-in anyway.
    stop = centre.radclient({"Acct-Status-Type": "Stop", "User-Name": "aabbccddee20",
                             "Framed-IP-Address": device,
                             "Calling-Station-Id": "AA-BB-CC-DD-EE-20",
                             "Acct-Session-Id": "byod-0020", "NAS-IP-Address": "127.0.0.1"})
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "Accounting-Response" in stop.stdout
    bindings = centre.bindings()
    assert device not in bindings and bindings[neighbour].user == "mo"

    # Within a second the device is unidentified again: sent to the portal, nothing fetched,
    # nothing recorded as kai's.
    centre.wait_until_sent_to_portal(device, within=1.5)
    after = _marker()
    reply = centre.through_proxy(device, f"http://origin.test/{after}")
    assert reply.status == 302
    assert reply.header("Location").startswith(f"{centre.admin_url}/portal?return=")
    assert centre.origins.saw(after) == []
    assert not [fields for fields in centre.hits() if after in fields.get("path", "")]
    # The neighbour's sign-in is untouched.
    kept = _marker()
    assert centre.through_proxy(neighbour, f"http://origin.test/{kept}").status == 200
    assert centre.wait_for_hit(kept)["user"] == "mo"
    assert "RADIUS Stop at 127.0.0.20 ended the portal sign-in there" in \
        centre.stack.admin.log_text()
