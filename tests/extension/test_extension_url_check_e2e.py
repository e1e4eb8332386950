"""The browser extension with more listed URL paths than Chrome's regex rules can hold: the
paths left over are checked with the backend before the request leaves the browser.
Debian's Chromium, the real admin API and Redis, and an origin that records what reaches
it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis as sync_redis
from playwright.sync_api import Playwright, expect, sync_playwright

from store.accounts import create_user
from store.connection import connect
from store.keys import Keys
from tests.harness.browser import AdminProcess, RecordingOrigin, extension_browser
from tests.harness.proxy import Origins, ProxyProcess, write_config
from tests.extension.test_extension_e2e import (
    PASSWORD,
    _off_site_args,
    _open_blocked,
    _page_loaded,
    eventually,
)

pytestmark = pytest.mark.timeout(240)
PATHS = sorted(f"paths{n % 3}.test/p{n:03d}" for n in range(460))
"""More than the 200 prefixes a category may have as regex rules: the last 260 are left."""


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory, redis_url: str, origins: Origins
          ) -> Iterator[AdminProcess]:
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    directory = tmp_path_factory.mktemp("extension-url-check")
    lists = directory / "lists"
    (lists / "adult").mkdir(parents=True)
    (lists / "adult" / "urls").write_text("".join(f"{p}\n" for p in PATHS))
    config = write_config(directory / "esafety.yaml", keys.prefix)
    with ThreadPoolExecutor(1) as pool:
        async def user() -> None:
            client = connect(redis_url)
            await create_user(client, keys, "learner1", "learner", "learner", PASSWORD)
            await client.aclose()
        pool.submit(asyncio.run, user()).result(30)
    proxy = ProxyProcess(directory / "data", config, redis_url, origins)
    imported = proxy.cli("lists", "import", str(lists), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process = AdminProcess(config, directory / "data", redis_url).start()
    yield process
    process.stop()
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=keys.prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def driver() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


def test_listed_paths_beyond_chromes_regex_limit_are_checked_before_the_request(
        driver: Playwright, admin: AdminProcess, tmp_path: Path) -> None:
    origin = RecordingOrigin()
    port = origin.port
    left_over, expressed = PATHS[-1], PATHS[0]
    host = left_over.split("/")[0]
    try:
        with extension_browser(driver, tmp_path / "profile", _off_site_args()) as browser:
            browser.configure(admin.url)
            browser.sign_in("learner1", PASSWORD)
            eventually(lambda: browser.status()["rulesSource"] == "signed")
            assert browser.status()["lastError"] == ""  # every rule fitted Chrome's limits
            page = browser.context.new_page()
            for listed in (expressed, left_over):
                h, path = listed.split("/", 1)
                _open_blocked(page, f"http://{h}:{port}/{path}")
                expect(page.locator("#category")).to_have_text("Pornography and sexual content")
            # a page of the same host that no list names loads, after the check
            assert eventually(lambda: _page_loaded(page, f"http://{host}:{port}/fine"),
                              every=0.5)
            assert (host, "/fine") in origin.requests
    finally:
        origin.stop()
    listed_paths = {"/" + p.split("/", 1)[1] for p in (expressed, left_over)}
    assert not [r for r in origin.requests if r[1] in listed_paths], origin.requests
