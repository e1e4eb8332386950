"""Real components for the web UI's browser tests.

* the admin app as a real ``esafety admin`` process (its log feeder and alert consumer run),
  on a loopback port, with the test block lists imported into its data directory;
* optionally a real ``esafety proxy`` sharing its Redis prefix and data directory, as
  ``esafety up`` runs them, with the block page linking to this admin app;
* users and hits written straight to Redis (hits with :class:`store.hits.HitWriter`, exactly
  as the proxy writes them);
* Debian's Chromium driven by Playwright's sync API, one fresh browser context per page, with
  console errors collected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import redis as sync_redis
from playwright.sync_api import Browser, Page, sync_playwright

from store.accounts import create_user
from store.connection import connect
from store.hits import HitWriter
from store.keys import Keys
from store.records import HitRecord, day_of, new_hit_id
from tests.harness.proxy import (
    PROXY_LISTS,
    REPO,
    Origins,
    ProxyProcess,
    free_port,
    start_origins,
    stop_process,
    wait_until_healthy,
    write_config,
)

PASSWORD = "correct horse battery"
TZ = ZoneInfo("Europe/London")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
UI_VENDOR_FILE = REPO / "admin_api" / "web" / "static" / "vendor" / "chart.umd.min.js"
WAIT_MS = 10_000
"""Every browser wait gives up after this long."""
T = TypeVar("T")


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a thread of its own (Playwright's sync API keeps an
    event loop registered on the test's thread, so asyncio.run cannot be used there)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result(60)


def ensure_ui_vendor() -> None:
    """``make test`` builds the UI's vendored libraries first; a bare pytest run builds them."""
    if not UI_VENDOR_FILE.is_file():
        subprocess.run(["make", "ui-vendor"], cwd=REPO, check=True, timeout=300,
                       capture_output=True)


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("Chromium is needed for the UI tests: apt-get install chromium "
                           "(or make system-deps)")
    return found


@dataclass
class AdminProcess:
    """A real ``esafety admin`` subprocess."""

    data_dir: Path
    config_file: Path
    redis_url: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("ESAFETY_CONFIG", None)
        env["ESAFETY_REDIS_URL"] = self.redis_url
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "esafety.cli", "--config", str(self.config_file),
             "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, env=self.env(), timeout=120)

    def start(self, timeout: float = 30.0) -> AdminProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.data_dir / f"admin-{self.port}.log"
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "esafety.cli", "--config", str(self.config_file),
                 "--data-dir", str(self.data_dir), "admin", "--listen",
                 f"127.0.0.1:{self.port}"],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_until_healthy(self.process, f"{self.base_url}/readyz", "admin", self.log_text,
                           timeout)
        return self

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file else ""

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class UiStack:
    admin: AdminProcess
    keys: Keys
    redis_url: str
    proxy: ProxyProcess | None = None
    origins: Origins | None = None
    _tokens: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.admin.base_url + path

    def add_user(self, name: str, role: str, group: str | None = None) -> str:
        async def create() -> None:
            client = connect(self.redis_url)
            try:
                await create_user(client, self.keys, name, role,
                                  group or ("learner" if role == "learner" else "staff"),
                                  PASSWORD)
            finally:
                await client.aclose()

        run_async(create)
        return name

    def write_hits(self, hits: list[HitRecord]) -> None:
        """Write hits exactly as the proxy does, then wait until the admin's log store has
        them (its log feeder follows the stream)."""
        async def write() -> None:
            client = connect(self.redis_url)
            try:
                writer = HitWriter(client, self.keys, hits_days=90, counters_days=730)
                await writer.write_batch(uuid.uuid4().hex, [(day_of(h.ts, TZ), h) for h in hits])
            finally:
                await client.aclose()

        run_async(write)
        wanted = {h.id for h in hits}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if wanted <= self._logged_hit_ids():
                return
            time.sleep(0.1)
        raise RuntimeError("the admin's log store did not take in the seeded hits")

    def api(self, method: str, path: str, as_user: str, body: Any = None) -> Any:
        """Call the JSON API with a bearer token (for setting up state only)."""
        token = self._tokens.get(as_user)
        if token is None:
            token = str(self._call("POST", "/api/v1/auth/login", None,
                                   {"username": as_user, "password": PASSWORD})["token"])
            self._tokens[as_user] = token
        return self._call(method, path, token, body)

    def _call(self, method: str, path: str, token: str | None, body: Any) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url(path), data=data, headers=headers,
                                         method=method)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def _logged_hit_ids(self) -> set[str]:
        if "ui-harness-reader" not in self._tokens:
            self.add_user("ui-harness-reader", "it_support")
        found = self.api("GET", "/api/v1/hits?limit=500", "ui-harness-reader")
        return {item["id"] for item in found["items"]}

    def stop(self) -> None:
        self.admin.stop()
        if self.proxy is not None:
            self.proxy.stop()
        if self.origins is not None:
            self.origins.stop()
        client = sync_redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(match=self.keys.prefix + "*"):
            client.delete(key)
        client.close()


def start_stack(directory: Path, redis_url: str, *, with_proxy: bool) -> UiStack:
    ensure_ui_vendor()
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    admin_port = free_port()
    config = write_config(
        directory / "esafety.yaml", keys.prefix,
        admin_public_url=f"http://127.0.0.1:{admin_port}",
        networks=[{"cidr": "127.0.0.0/8", "group": "learner", "site": "test-wifi"}])
    data_dir = directory / "data"
    admin = AdminProcess(data_dir, config, redis_url, admin_port)
    imported = admin.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    stack = UiStack(admin, keys, redis_url)
    try:
        if with_proxy:
            stack.origins = start_origins(directory)
            stack.proxy = ProxyProcess(data_dir, config, redis_url, stack.origins).start()
        admin.start()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            args=["--headless=new", "--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"])
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class BrowserTab:
    """One page in a fresh browser context, with what the console reported."""

    page: Page
    stack: UiStack
    console_errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.page.goto(self.stack.url(path), timeout=WAIT_MS)
        self.wait_until_drawn()

    def wait_until_drawn(self) -> None:
        self.page.wait_for_selector("main[aria-busy=false]", state="attached", timeout=WAIT_MS)

    def heading(self) -> str:
        return self.page.locator("h1").first.inner_text(timeout=WAIT_MS)

    def sign_in(self, name: str, password: str = PASSWORD) -> None:
        """Sign in with the form (from wherever the tab is, or the sign-in page)."""
        if "/sign-in" not in self.page.url:
            self.open("/sign-in")
        self.page.get_by_label("User name").fill(name, timeout=WAIT_MS)
        self.page.get_by_label("Password").fill(password, timeout=WAIT_MS)
        self.page.get_by_role("button", name="Sign in").click(timeout=WAIT_MS)
        self.page.locator("#signed-in-as", has_text=f"Signed in as {name}").wait_for(
            timeout=WAIT_MS)
        self.wait_until_drawn()

    def nav_links(self) -> list[str]:
        return [text.strip() for text in
                self.page.locator("nav[aria-label=Main] a").all_inner_texts()]

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True, timeout=WAIT_MS)
        return path

    def unlabelled_controls(self) -> list[str]:
        """Form controls without an accessible name (label, aria-label or aria-labelledby)."""
        found: list[str] = self.page.evaluate("""() => {
            const named = (el) => {
              const text = (node) => (node ? node.textContent.trim() : "");
              if ([...(el.labels || [])].some((label) => text(label))) return true;
              if ((el.getAttribute("aria-label") || "").trim()) return true;
              const ids = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
              return ids.some((id) => text(document.getElementById(id)));
            };
            return [...document.querySelectorAll("input, select, textarea")]
              .filter((el) => el.type !== "hidden" && !named(el))
              .map((el) => el.outerHTML.slice(0, 120));
        }""")
        return found

    def tab_to(self, description: str, *, exact: bool = True, max_presses: int = 80) -> None:
        """Press Tab until the focused element's label or text is ``description`` (or, not
        exact, contains it)."""
        for _ in range(max_presses):
            self.page.keyboard.press("Tab")
            name = self.focused_name()
            if name == description or (not exact and description in name):
                return
        raise AssertionError(f"Tab never reached {description!r}; focus is on "
                             f"{self.focused_name()!r}")

    def focused_name(self) -> str:
        name: str = self.page.evaluate("""() => {
            const el = document.activeElement;
            if (!el) return "";
            if (el.getAttribute("aria-label")) return el.getAttribute("aria-label").trim();
            if (el.labels && el.labels.length) return el.labels[0].textContent.trim();
            return (el.textContent || "").trim();
        }""")
        return name


TabFactory = Callable[[], BrowserTab]


def tab_factory(browser: Browser, stack: UiStack) -> Iterator[TabFactory]:
    """Fresh browser contexts (no shared cookies) for one test; closed after it."""
    contexts: list[Any] = []

    def new_tab() -> BrowserTab:
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      accept_downloads=True, locale="en-GB",
                                      timezone_id="Europe/London")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        tab = BrowserTab(page, stack)
        page.on("console", lambda message: tab.console_errors.append(message.text)
                if message.type == "error" else None)
        page.on("pageerror", lambda error: tab.console_errors.append(str(error)))
        return tab

    try:
        yield new_tab
    finally:
        for context in contexts:
            context.close()


def hit(user: str, *, host: str, category: str, ts: float, action: str = "block",
        group: str = "learner", site: str = "main", alert: bool = False, path: str = "/",
        search_terms: str = "") -> HitRecord:
    """A hit as the proxy logs it (see proxy_addons/hitlog.py)."""
    return HitRecord(id=new_hit_id(ts, TZ), ts=round(ts, 3), user=user, group=group,
                     client_ip="10.0.20.5", site=site, host=host, path=path, action=action,
                     category=category, rule="category" if action == "block" else "default",
                     source=f"fixtures/{category}/domains" if category else "",
                     severity="critical" if alert else "medium", alert=alert,
                     decrypted=False, method="GET", search_terms=search_terms)
