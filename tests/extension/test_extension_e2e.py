"""The browser extension end to end: Debian's Chromium with the unpacked extension, the real
proxy, the real admin API and Redis, loopback origins named like real sites."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
import redis as sync_redis
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Playwright, expect, sync_playwright

from proxy_addons.probe_signature import sign_probe
from store.accounts import create_user
from store.connection import connect
from store.keys import Keys
from store.probe_key import load_or_create_probe_key
from tests.harness.browser import (
    EXTENSION,
    AdminProcess,
    ExtensionBrowser,
    RecordingOrigin,
    extension_browser,
    managed_policy,
    unpacked_extension_id,
)
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, free_port, write_config

pytestmark = pytest.mark.timeout(240)
PASSWORD = "correct horse battery"
HIT_ID = re.compile(r"^[0-9]{8}-[0-9A-Z]{8}$")
BLOCK_PAGE = re.compile(r"^chrome-extension://[a-z]+/block\.html")
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 20.0, every: float = 0.25,
               pause: Callable[[float], None] = time.sleep) -> T:
    """Poll until ``probe`` returns something truthy (the system is asynchronous). Pass a
    page's ``wait_for_timeout`` (milliseconds) as ``pause`` when the probe reads Playwright
    state: the sync API only takes in browser events while it is called."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {probe.__name__}")
        pause(every)


@pytest.fixture(scope="module")
def module_keys() -> Keys:
    return Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, redis_url: str, origins: Origins,
          module_keys: Keys) -> Iterator[ProxyProcess]:
    directory = tmp_path_factory.mktemp("extension-e2e")
    config = write_config(directory / "esafety.yaml", module_keys.prefix,
                          proxy_auth={"mode": "required", "realm": "esafety"})

    async def users() -> None:
        client = connect(redis_url)
        for name, role, group in (("learner1", "learner", "learner"),
                                  ("learner2", "learner", "learner"),
                                  ("learner3", "learner", "learner"),
                                  ("learner4", "learner", "learner"),
                                  ("learner5", "learner", "learner"),
                                  ("dsl1", "dsl", "staff"),
                                  ("it1", "it_support", "staff")):
            await create_user(client, module_keys, name, role, group, PASSWORD)
        await client.aclose()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API may own this thread's loop
        pool.submit(asyncio.run, users()).result(30)
    process = ProxyProcess(directory / "data", config, redis_url, origins)
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process.start()
    yield process
    process.stop()
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=module_keys.prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def admin(proxy: ProxyProcess, redis_url: str) -> Iterator[AdminProcess]:
    process = AdminProcess(proxy.config_file, proxy.data_dir, redis_url).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def driver() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def on_site(driver: Playwright, proxy: ProxyProcess, admin: AdminProcess,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExtensionBrowser]:
    """A browser at the centre: every request goes through the proxy (the backend, on
    loopback, does not)."""
    with extension_browser(driver, tmp_path_factory.mktemp("chromium-on-site"),
                           f"--proxy-server={proxy.proxy_url}") as browser:
        browser.configure(admin.url)
        yield browser


def _open_blocked(page: Page, url: str) -> None:
    try:
        page.goto(url, wait_until="commit", timeout=15_000)
    except PlaywrightError:
        pass  # the navigation is replaced by the block page (or aborted, for a refused tunnel)

    def on_block_page() -> bool:
        return BLOCK_PAGE.match(page.url) is not None

    eventually(on_block_page, timeout=15, pause=lambda s: page.wait_for_timeout(s * 1000))
    expect(page.locator("#hit-id")).not_to_have_text("", timeout=10_000)


def _hit_ids(admin: AdminProcess, token: str, **filters: str) -> list[str]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    status, body = admin.call("GET", f"/api/v1/hits?{query}", token)
    assert status == 200, body
    return [h["id"] for h in body["items"]]


def test_learner_signs_in_reports_an_accident_and_gets_a_site_approved(
        on_site: ExtensionBrowser, admin: AdminProcess) -> None:
    popup = on_site.sign_in("learner1", PASSWORD)
    on_site.worker.evaluate("() => esafetyTick()")
    eventually(lambda: on_site.status()["network"] == "centre")
    popup.reload()
    expect(popup.locator("#network")).to_contain_text("On the centre network")
    expect(popup.locator("#network")).to_contain_text("learner1")  # the proxy knows who

    page = on_site.context.new_page()
    _open_blocked(page, "http://casino-royale.test/spin")
    expect(page.locator("#category")).to_have_text("Gambling")
    expect(page.locator("#address")).to_have_text("http://casino-royale.test/spin")
    hit_id = page.locator("#hit-id").inner_text()
    assert HIT_ID.match(hit_id)
    expect(page.locator("#when")).not_to_be_empty()
    learner = admin.login("learner1", PASSWORD)
    # the proxy attributed the block to the signed-in learner (via the 407 answer)
    eventually(lambda: hit_id in _hit_ids(admin, learner, host="casino-royale.test"))

    page.get_by_role("button", name="I reached this by accident").click()
    page.get_by_label("What happened? (optional)").fill("I mistyped the address.")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#confirmation")).to_contain_text("you are not in trouble")
    status, reports = admin.call("GET", "/api/v1/accident-reports", learner)
    assert status == 200
    assert [(r["hit_id"], r["what_happened"]) for r in reports["items"]] == [
        (hit_id, "I mistyped the address.")]

    page.get_by_role("button", name="Ask for this site to be reviewed").click()
    page.get_by_label("Why do you need this site?").fill("Maths project on probability")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # "Send request", by keyboard
    expect(page.locator("#confirmation")).to_contain_text("sent to IT support")
    request_id = page.locator("#confirmation").get_attribute("data-request-id")
    status, mine = admin.call("GET", "/api/v1/unblock-requests", learner)
    assert [(r["id"], r["hit_id"], r["status"]) for r in mine["items"]] == [
        (request_id, hit_id, "open")]

    it = admin.login("it1", PASSWORD)
    status, approved = admin.call("POST", f"/api/v1/unblock-requests/{request_id}/approve", it,
                                  {"scope": "user"})
    assert status == 200, approved

    def site_loads() -> bool:
        try:
            page.goto("http://casino-royale.test/spin", timeout=10_000)
        except PlaywrightError:
            return False
        return page.url == "http://casino-royale.test/spin"

    eventually(site_loads, timeout=20, every=0.5)
    assert '"host": "casino-royale.test"' in page.content()
    popup.reload()
    expect(popup.locator(f'li[data-request-id="{request_id}"]')).to_contain_text("approved")


def test_a_site_refused_at_connect_shows_the_block_page_with_its_reference(
        on_site: ExtensionBrowser, admin: AdminProcess) -> None:
    if not on_site.status()["user"]:
        on_site.sign_in("learner1", PASSWORD)
    page = on_site.context.new_page()
    _open_blocked(page, "https://warez-site.test/")
    expect(page.locator("#category")).to_have_text("Piracy and copyright infringement")
    hit_id = page.locator("#hit-id").inner_text()
    learner = admin.login("learner1", PASSWORD)
    assert hit_id in _hit_ids(admin, learner, host="warez-site.test")


def test_off_network_the_rules_still_block_and_hits_arrive_once_after_an_outage(
        driver: Playwright, admin: AdminProcess, origins: Origins,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    port = origins.http_port
    with extension_browser(driver, tmp_path_factory.mktemp("chromium-off-site"),
                           "--host-resolver-rules=MAP *.test 127.0.0.1, "
                           "MAP esafety-proxy.invalid ~NOTFOUND") as browser:
        browser.configure(admin.url)
        browser.sign_in("learner2", PASSWORD)
        def filtering_off_site() -> bool:
            status = browser.status()
            return status["network"] == "off" and bool(status["rulesVersion"])

        eventually(filtering_off_site)
        page = browser.context.new_page()
        page.goto(f"http://allowed.test:{port}/hello")  # not blocked: loads directly
        assert '"path": "/hello"' in page.content()

        _open_blocked(page, f"http://bet-now.test:{port}/")
        expect(page.locator("#category")).to_have_text("Gambling")
        expect(page.locator("#reason")).to_contain_text("away from the centre")
        first = page.locator("#hit-id").inner_text()
        learner = admin.login("learner2", PASSWORD)
        eventually(lambda: first in _hit_ids(admin, learner, site="off-network"))

        admin.stop()  # the backend is unreachable now
        _open_blocked(page, f"http://poker-palace.test:{port}/table")
        second = page.locator("#hit-id").inner_text()
        eventually(lambda: browser.status()["queued"] == 1)
        admin.start()
        eventually(lambda: browser.status()["queued"] == 0, timeout=45)
        learner = admin.login("learner2", PASSWORD)
        ids = eventually(lambda: (lambda found: found if second in found else None)(
            _hit_ids(admin, learner, site="off-network")))
        assert sorted(ids) == sorted([first, second])  # each exactly once
        status, body = admin.call("GET", "/api/v1/hits?site=off-network", learner)
        assert status == 200
        hosts: dict[str, Any] = {h["id"]: (h["host"], h["category"], h["user"])
                                 for h in body["items"]}
        assert hosts[second] == ("poker-palace.test", "gambling", "learner2")


# -- off the centre network, with real origins that record what reaches them ---------------

OFF_SITE_NAMES = ("*.test", "sanctioned-suicide.net")


def _off_site_args(probe: str = "~NOTFOUND") -> str:
    maps = [f"MAP {name} 127.0.0.1" for name in OFF_SITE_NAMES]
    maps.append(f"MAP esafety-proxy.invalid {probe}")
    return "--host-resolver-rules=" + ", ".join(maps)


@pytest.fixture
def recording() -> Iterator[RecordingOrigin]:
    origin = RecordingOrigin()
    yield origin
    origin.stop()


def _try_to_open(page: Page, url: str) -> None:
    try:
        page.goto(url, wait_until="commit", timeout=15_000)
    except PlaywrightError:
        pass


def _alerts(admin: AdminProcess) -> list[dict[str, Any]]:
    status, body = admin.call("GET", "/api/v1/alerts", admin.login("dsl1", PASSWORD))
    assert status == 200, body
    return list(body["items"])


def _user_hits(admin: AdminProcess, name: str) -> list[dict[str, Any]]:
    status, body = admin.call("GET", f"/api/v1/hits?user={name}", admin.login("it1", PASSWORD))
    assert status == 200, body
    return list(body["items"])


def _page_loaded(page: Page, url: str) -> bool:
    try:
        page.goto(url, timeout=10_000)
    except PlaywrightError:
        return False
    return page.url == url


def test_a_hostile_page_cannot_open_the_block_page_or_plant_a_hit_or_alert(
        driver: Playwright, admin: AdminProcess, tmp_path_factory: pytest.TempPathFactory
        ) -> None:
    extension_ids: list[str] = []

    def hostile(method: str, path: str, headers: dict[str, str]
                ) -> tuple[int, dict[str, str], bytes]:
        base = f"chrome-extension://{extension_ids[0]}/block.html"
        targets = [f"{base}?via=rules#https://extreme-views.test/",
                   f"{base}?t={'0' * 32}", f"{base}?via=check&category=extremism"]
        script = f"""
          const targets = {json.dumps(targets)};
          for (const t of targets) {{
            const frame = document.createElement("iframe"); frame.src = t;
            document.body.append(frame);
            window.open(t);
            fetch(t).catch(() => {{}});
          }}
          setTimeout(() => {{ location.href = targets[0]; }}, 500);
        """
        html = f"<!doctype html><title>Free games</title><body><script>{script}</script>"
        return 200, {"Content-Type": "text/html"}, html.encode()

    origin = RecordingOrigin(hostile)
    try:
        with extension_browser(driver, tmp_path_factory.mktemp("chromium-hostile"),
                               _off_site_args()) as browser:
            extension_ids.append(browser.extension_id)
            browser.configure(admin.url)
            browser.sign_in("learner3", PASSWORD)
            eventually(lambda: browser.status()["rulesSource"] == "signed")
            alerts_before = len(_alerts(admin))
            page = browser.context.new_page()
            page.goto(f"http://games.test:{origin.port}/free")
            pause = page.wait_for_timeout

            def refused_everywhere() -> bool:
                # the page's own navigation and its three pop-ups: Chrome's error page, as the
                # block page is web-accessible to nobody
                errors = [t for t in browser.context.pages if t.url.startswith("chrome-error:")]
                return page.url.startswith("chrome-error:") and len(errors) >= 4

            eventually(refused_everywhere, pause=lambda s: pause(s * 1000))
            for tab in browser.context.pages:
                assert "This page is blocked" not in tab.content(), tab.url
            status = browser.status()
            assert status["queued"] == 0
            # a control: a real block in this browser is logged, so nothing is lost here
            _open_blocked(page, f"http://bet-now.test:{origin.port}/")
            real = page.locator("#hit-id").inner_text()
            eventually(lambda: real in [h["id"] for h in _user_hits(admin, "learner3")])
            hosts = {h["host"] for h in _user_hits(admin, "learner3")}
            assert hosts == {"bet-now.test"}
            assert len(_alerts(admin)) == alerts_before
            assert not any(a.get("user") == "learner3" for a in _alerts(admin))
            assert origin.hosts() == {"games.test"}  # bet-now.test never reached the origin
    finally:
        origin.stop()


def test_after_a_restart_off_network_with_nobody_signed_in_prohibited_sites_stay_blocked(
        driver: Playwright, admin: AdminProcess, recording: RecordingOrigin,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    profile = tmp_path_factory.mktemp("chromium-restart")
    port = recording.port
    unreachable = f"http://127.0.0.1:{free_port()}"
    with extension_browser(driver, profile, _off_site_args()) as browser:
        browser.configure(unreachable)  # the backend is out of reach: only the shipped rules
        page = browser.context.new_page()
        _open_blocked(page, f"http://sanctioned-suicide.net:{port}/forum")
        expect(page.locator("#category")).to_have_text("Self-harm and suicide promotion")
        assert browser.status()["rulesSource"] == "shipped"
    for _restart in range(2):
        with extension_browser(driver, profile, _off_site_args()) as browser:
            status = browser.status()
            assert status["user"] is None and status["rulesSource"] == "shipped"
            page = browser.context.new_page()
            _open_blocked(page, f"http://sanctioned-suicide.net:{port}/")
            assert _page_loaded(page, f"http://allowed.test:{port}/hello")  # not everything
    assert ("sanctioned-suicide.net", "/forum") not in recording.requests
    assert "sanctioned-suicide.net" not in recording.hosts()
    assert "allowed.test" in recording.hosts()

    # the backend in reach, still nobody signed in: its strictest rules, from the lists too
    with extension_browser(driver, profile, _off_site_args()) as browser:
        browser.configure(admin.url)
        eventually(lambda: browser.status()["rulesSource"] == "unsigned")
        page = browser.context.new_page()
        _open_blocked(page, f"http://poker-palace.test:{port}/")
        expect(page.locator("#category")).to_have_text("Gambling")
        _open_blocked(page, f"http://sanctioned-suicide.net:{port}/")
        browser.sign_in("learner4", PASSWORD)
        eventually(lambda: browser.status()["rulesSource"] == "signed")
    assert "poker-palace.test" not in recording.hosts()

    # the sign-in survives a restart: no password asked, the learner's own rules and hits
    with extension_browser(driver, profile, _off_site_args()) as browser:
        eventually(lambda: (browser.status()["user"] or {}).get("name") == "learner4")
        page = browser.context.new_page()
        _open_blocked(page, f"http://slots-galore.test:{port}/")
        hit_id = page.locator("#hit-id").inner_text()
        eventually(lambda: hit_id in [h["id"] for h in _user_hits(admin, "learner4")])
        # signing out ends it: the popup names nobody, and the strictest rules are back
        popup = browser.context.new_page()
        popup.goto(browser.page_url("popup.html"))
        popup.get_by_role("button", name="Sign out").click()
        expect(popup.get_by_label("User name")).to_be_visible()
        expect(popup.locator("main")).not_to_contain_text("learner4")
        status = browser.status()
        assert status["user"] is None and status["rulesSource"] in ("shipped", "unsigned")
        _open_blocked(page, f"http://slots-galore.test:{port}/after")
    assert "slots-galore.test" not in recording.hosts()
    # and it stays ended after a restart: the install's refresh token was revoked
    with extension_browser(driver, profile, _off_site_args()) as browser:
        eventually(lambda: browser.status()["rulesSource"] == "unsigned")
        assert browser.status()["user"] is None


def test_block_all_sends_other_pages_to_the_sign_in_when_nobody_is_signed_in(
        driver: Playwright, admin: AdminProcess, recording: RecordingOrigin,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    port = recording.port
    with extension_browser(driver, tmp_path_factory.mktemp("chromium-block-all"),
                           _off_site_args()) as browser:
        browser.worker.evaluate(
            "s => chrome.storage.local.set({settings: s})",
            {"backendUrl": admin.url, "centreId": "test-centre",
             "offNetworkUnsigned": "block_all"})
        eventually(lambda: browser.status()["signInFirst"] is True)
        page = browser.context.new_page()
        _try_to_open(page, f"http://allowed.test:{port}/hello")
        eventually(lambda: "/popup.html?next=" in page.url,
                   pause=lambda s: page.wait_for_timeout(s * 1000))
        _open_blocked(page, f"http://bet-now.test:{port}/")  # prohibited: the block page
        assert recording.hosts() == set()
        page.goto(browser.page_url("popup.html") + "?next=" +
                  f"http://allowed.test:{port}/hello")
        page.get_by_label("User name").fill("learner1")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        eventually(lambda: page.url == f"http://allowed.test:{port}/hello",
                   pause=lambda s: page.wait_for_timeout(s * 1000))
        assert browser.status()["signInFirst"] is False
        assert ("allowed.test", "/hello") in recording.requests


def test_a_fake_probe_answer_leaves_the_rules_on(
        driver: Playwright, admin: AdminProcess, proxy: ProxyProcess,
        recording: RecordingOrigin, tmp_path_factory: pytest.TempPathFactory) -> None:
    key = load_or_create_probe_key(proxy.data_dir)  # the deployment's key, as the proxy has it
    mode = ["unsigned"]
    stale_nonce = "ab" * 16

    def probe(method: str, path: str, headers: dict[str, str]
              ) -> tuple[int, dict[str, str], bytes]:
        nonce = parse_qs(urlsplit(path).query).get("nonce", [""])[0]
        body: dict[str, Any] = {"proxy": "esafety", "centre": "test-centre", "site": "main",
                                "user": "learner5", "group": "learner", "identified_by": "x"}
        if mode[0] == "replayed":  # a genuine answer, but to another nonce
            body = sign_probe(key, stale_nonce, body)
        elif mode[0] == "wrong-key":
            body = sign_probe(b"k" * 32, nonce, body)
        elif mode[0] == "genuine":  # what the centre proxy answers
            body = sign_probe(key, nonce, body)
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    fake = RecordingOrigin(probe)
    port = recording.port
    try:
        with extension_browser(driver, tmp_path_factory.mktemp("chromium-fake-probe"),
                               _off_site_args(f"127.0.0.1:{fake.port}")) as browser:
            browser.configure(admin.url)
            browser.sign_in("learner5", PASSWORD)
            page = browser.context.new_page()
            for forged in ("unsigned", "replayed", "wrong-key"):
                mode[0] = forged
                seen = len(fake.requests)
                browser.worker.evaluate("() => esafetyTick()")
                assert len(fake.requests) > seen  # the fake server was asked, and answered
                status = browser.status()
                assert status["network"] == "off", forged
                assert status["rulesSource"] == "signed" and status["rules"] > 0, forged
                _open_blocked(page, f"http://lucky-odds.test:{port}/?{forged}")
            assert "lucky-odds.test" not in recording.hosts()
            # the control: only a genuine signed answer stands the rules down
            mode[0] = "genuine"
            browser.worker.evaluate("() => esafetyTick()")
            assert browser.status()["network"] == "centre"
            assert _page_loaded(page, f"http://lucky-odds.test:{port}/now")
            assert ("lucky-odds.test", "/now") in recording.requests
            mode[0] = "unsigned"  # and a forged answer afterwards puts them back at once
            browser.worker.evaluate("() => esafetyTick()")
            assert browser.status()["network"] == "off"
            _open_blocked(page, f"http://lucky-odds.test:{port}/again")
            assert ("lucky-odds.test", "/again") not in recording.requests
    finally:
        fake.stop()


def test_a_listed_url_path_off_network_never_reaches_the_origin(
        driver: Playwright, admin: AdminProcess, recording: RecordingOrigin,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    port = recording.port
    with extension_browser(driver, tmp_path_factory.mktemp("chromium-paths"),
                           _off_site_args()) as browser:
        browser.configure(admin.url)
        browser.sign_in("learner2", PASSWORD)
        eventually(lambda: browser.status()["rulesSource"] == "signed")
        page = browser.context.new_page()
        for path in ("/adult-section", "/adult-section/gallery?page=2", "/x/rated"):
            _open_blocked(page, f"http://mixed-content.test:{port}{path}")
            expect(page.locator("#address")).to_have_text(f"http://mixed-content.test:{port}{path}")
        # subresources on a listed path are refused too, from any page
        page.goto(f"http://allowed.test:{port}/hello")
        fetched = page.evaluate(f"""() => fetch("http://mixed-content.test:{port}/adult-section/a.jpg")
            .then(() => "loaded", () => "refused")""")
        assert fetched == "refused"
        assert _page_loaded(page, f"http://mixed-content.test:{port}/news")
    paths = [path for host, path in recording.requests if host == "mixed-content.test"]
    assert "/news" in paths  # the site itself is reachable...
    assert not [p for p in paths if p.startswith(("/adult-section", "/x/rated"))], paths
    assert set(paths) <= {"/news", "/favicon.ico"}  # ...and only the listed paths are not


def test_an_accident_report_made_while_the_backend_is_down_arrives_once_it_is_back(
        driver: Playwright, admin: AdminProcess, recording: RecordingOrigin,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    with extension_browser(driver, tmp_path_factory.mktemp("chromium-report"),
                           _off_site_args()) as browser:
        browser.configure(admin.url)
        browser.sign_in("learner2", PASSWORD)
        eventually(lambda: browser.status()["rulesSource"] == "signed")
        admin.stop()
        try:
            page = browser.context.new_page()
            _open_blocked(page, f"http://spin-to-win.test:{recording.port}/")
            hit_id = page.locator("#hit-id").inner_text()
            page.get_by_role("button", name="I reached this by accident").click()
            page.get_by_label("What happened? (optional)").fill("A pop-up opened it.")
            page.get_by_role("button", name="Send", exact=True).click()
            confirmation = page.locator("#confirmation")
            expect(confirmation).to_contain_text("will be sent when it can be")
            expect(confirmation).to_be_focused()
            assert browser.status()["reportsQueued"] == 1
        finally:
            admin.start()
        eventually(lambda: browser.status()["reportsQueued"] == 0, timeout=60)
        learner = admin.login("learner2", PASSWORD)
        status, reports = admin.call("GET", "/api/v1/accident-reports", learner)
        assert status == 200
        mine = [(r["hit_id"], r["what_happened"]) for r in reports["items"]
                if r["what_happened"] == "A pop-up opened it."]
        assert mine == [(hit_id, "A pop-up opened it.")]


EXAMPLE_POLICY = EXTENSION / "policies" / "chrome-extension-settings.json"
TEST_LOAD_ONLY = ("DeveloperToolsAvailability", "ExtensionDeveloperModeSettings",
                  "ExtensionInstallBlocklist")
"""Keys a test cannot apply: Playwright drives Chromium through the DevTools protocol, and
the extension is loaded unpacked from the command line instead of force-installed (a
force-installed extension is exempt from the install blocklist; an unpacked one is not)."""


def test_incognito_and_a_second_profile_stay_filtered_under_the_example_policy(
        driver: Playwright, recording: RecordingOrigin,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    port = recording.port
    url = f"http://sanctioned-suicide.net:{port}/"
    # the gap without the policy: an incognito window runs without the extension
    with extension_browser(driver, tmp_path_factory.mktemp("chromium-incognito-open"),
                           _off_site_args(), "--incognito") as browser:
        page = browser.context.pages[0]  # the window --incognito opened
        _try_to_open(page, url + "open")
    assert ("sanctioned-suicide.net", "/open") in recording.requests

    extension_id = unpacked_extension_id(EXTENSION)
    policy = json.loads(EXAMPLE_POLICY.read_text().replace("EXTENSION_ID", extension_id))
    for key in TEST_LOAD_ONLY:
        policy.pop(key)
    policy["ExtensionSettings"] = {extension_id: {"installation_mode": "allowed"}}
    assert policy["IncognitoModeAvailability"] == 1 and policy["DnsOverHttpsMode"] == "off"
    assert policy["ProxySettings"]["ProxyMode"] == "pac_script"
    profile = tmp_path_factory.mktemp("chromium-managed")
    with managed_policy(policy):
        for args in (("--incognito",), ("--profile-directory=Profile 2",)):
            with extension_browser(driver, profile, _off_site_args(), *args) as browser:
                assert browser.extension_id == extension_id
                assert browser.status()["user"] is None  # nobody ever signed in here
                page = browser.context.pages[0]  # the window the flag asked for
                _open_blocked(page, f"{url}{args[0][2:6]}")
                expect(page.locator("#category")).to_have_text("Self-harm and suicide promotion")
                policies = browser.context.new_page()
                policies.goto("chrome://policy")
                for name in ("IncognitoModeAvailability", "DnsOverHttpsMode", "ProxySettings",
                             "BrowserAddPersonEnabled", "BrowserGuestModeEnabled"):
                    expect(policies.locator("body")).to_contain_text(name)
    reached = {path for host, path in recording.requests if host == "sanctioned-suicide.net"}
    assert reached <= {"/open", "/favicon.ico"}  # under the policy, nothing reached the site
