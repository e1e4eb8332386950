"""The browser extension end to end: Debian's Chromium with the unpacked extension, the real
proxy, the real admin API and Redis, loopback origins named like real sites."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import redis as sync_redis
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Playwright, expect, sync_playwright

from store.accounts import create_user
from store.connection import connect
from store.keys import Keys
from tests.browser_harness import AdminProcess, ExtensionBrowser, extension_browser
from tests.proxy_harness import PROXY_LISTS, Origins, ProxyProcess, write_config

pytestmark = pytest.mark.timeout(120)
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
    status, reports = admin.call("GET", "/api/v1/reports", learner)
    assert status == 200
    assert [(r["hit_id"], r["what_happened"]) for r in reports["items"]] == [
        (hit_id, "I mistyped the address.")]

    page.get_by_role("button", name="Ask for a review").click()
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
