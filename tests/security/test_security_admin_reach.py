"""The admin service is reachable through the proxy, for everyone, and nothing else on its
host is (with the CONNECT fast path and without it).

A fresh install (no list imported) with a real ``esafety proxy``, a real ``esafety admin``
whose public address is a name only the proxy can resolve (``esafety-admin.test`` and the
admin's port), real Redis behind a relay that records every connection (so a leak to the
"Redis port" is seen where it would happen), and a listener on a proxy status port. A learner
in headless Chromium, with every address (loopback included) sent through the proxy, is
blocked from a built-in starter site, follows the block page's "Ask for this site to be
reviewed" to the admin service through the proxy, signs in and files the request.
"""

from __future__ import annotations

import asyncio
import html
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis as sync_redis
from playwright.sync_api import Browser, expect, sync_playwright

from store.keys import Keys
from tests.harness.proxy import (
    Origins,
    ProxyProcess,
    curl_plain,
    free_port,
    read_response_head,
    write_config,
)
from tests.harness.ui import PASSWORD, WAIT_MS, AdminProcess, UiStack, chromium_path

ADMIN_NAME = "esafety-admin.test"
"""The admin's public host: a name only the proxy (through the test resolver) can resolve,
so a page that loads from it has come through the proxy."""
REVIEW_LINK = re.compile(r'href="([^"]*/request-review\?[^"]*)"')


def _marker() -> str:
    return "m" + uuid.uuid4().hex[:12]


@dataclass
class RecordingRelay:
    """A TCP listener that relays to ``target`` (or answers nothing, without one) and
    records every byte each connection sent it."""

    target: tuple[str, int] | None
    port: int = field(default_factory=free_port)
    seen: list[bytes] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    index: int | None) -> None:
        try:
            while chunk := await reader.read(65536):
                if index is not None:
                    self.seen[index] += chunk
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.seen)
        self.seen.append(b"")
        if self.target is None:
            try:
                while chunk := await asyncio.wait_for(reader.read(65536), 30):
                    self.seen[index] += chunk
            except (TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer, index),
                             self._pipe(up_reader, writer, None))

    def start(self) -> RecordingRelay:
        """Listen on ``port``; raises OSError when it is taken (the caller tries another)."""
        ready = threading.Event()
        failed: list[OSError] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def listen() -> None:
                self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

            try:
                self._loop.run_until_complete(listen())
            except OSError as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        if failed:
            raise failed[0]
        return self

    def saw(self, marker: bytes) -> bool:
        """A connection other than a Redis client's (whose commands start with ``*``; the
        proxy's hit records carry the marker to Redis, as they should) carried ``marker``."""
        return any(marker in data and not data.startswith(b"*") for data in list(self.seen))

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class Centre:
    """A fresh install: proxy, admin, Redis behind a relay, and a listener on a status port."""

    stack: UiStack
    proxy: ProxyProcess
    origins: Origins
    redis_relay: RecordingRelay
    status_listener: RecordingRelay
    admin_port: int

    @property
    def admin_url(self) -> str:
        return f"http://{ADMIN_NAME}:{self.admin_port}"


def _relayed_url(redis_url: str, relay: RecordingRelay) -> str:
    parts = urlsplit(redis_url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{relay.port}" if userinfo else f"127.0.0.1:{relay.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _proxy_with_a_free_next_status_port(data_dir: Path, config: Path, redis_url: str,
                                        origins: Origins) -> tuple[ProxyProcess, RecordingRelay]:
    """A proxy whose status port + 1 (worker 1's, in the protected range) has our listener."""
    for _ in range(50):
        proxy = ProxyProcess(data_dir, config, redis_url, origins)
        listener = RecordingRelay(None, port=proxy.status_port + 1)
        try:
            return proxy, listener.start()
        except OSError:
            continue
    raise RuntimeError("no free pair of ports for the status listener")


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "no-fast-path"])
def centre(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           redis_url: str, origins: Origins) -> Iterator[Centre]:
    directory = tmp_path_factory.mktemp("admin-reach")
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    admin_port = free_port()
    config = write_config(
        directory / "esafety.yaml", keys.prefix,
        admin_public_url=f"http://{ADMIN_NAME}:{admin_port}",
        listen={"admin": f"127.0.0.1:{admin_port}"},
        networks=[{"cidr": "127.0.0.0/8", "group": "learner", "site": "test-wifi"}])
    data_dir = directory / "data"
    real_redis = urlsplit(redis_url)
    relay = RecordingRelay((real_redis.hostname or "127.0.0.1", real_redis.port or 6379)).start()
    proxy, status_listener = _proxy_with_a_free_next_status_port(
        data_dir, config, _relayed_url(redis_url, relay), origins)
    proxy.fast_path = bool(request.param)
    admin = AdminProcess(data_dir, config, redis_url, admin_port)
    stack = UiStack(admin, keys, redis_url)
    try:
        proxy.start()
        admin.start()
        stack.add_user("kai", "learner")
        stack.add_user("it-sam", "it_support")
        yield Centre(stack, proxy, origins, relay, status_listener, admin_port)
    finally:
        stack.admin.stop()
        proxy.stop()
        relay.stop()
        status_listener.stop()
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


def _hits(centre: Centre) -> list[dict[str, str]]:
    client = sync_redis.Redis.from_url(centre.stack.redis_url, decode_responses=True)
    try:
        entries: list[tuple[str, dict[str, str]]] = client.xrange(  # type: ignore[assignment]
            centre.stack.keys.hits)
    finally:
        client.close()
    return [fields for _id, fields in entries]


def _wait_for_hit(centre: Centre, host: str, path_part: str) -> dict[str, str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for fields in _hits(centre):
            if fields.get("host") == host and path_part in fields.get("path", ""):
                return fields
        time.sleep(0.05)
    raise AssertionError(f"no hit for {host} {path_part}")


def _raw(centre: Centre, request: bytes) -> str:
    with socket.create_connection(("127.0.0.1", centre.proxy.port), timeout=10) as sock:
        sock.sendall(request)
        return read_response_head(sock)


def test_a_fresh_install_blocks_a_built_in_starter_site_and_the_origin_sees_nothing(
        centre: Centre) -> None:
    marker = _marker()
    status, body = curl_plain(centre.proxy.proxy_url, f"http://pornhub.com/{marker}")
    assert status == 403 and "This page is blocked" in body
    assert 'data-category="pornography"' in body
    assert centre.origins.saw(marker) == []
    hit = _wait_for_hit(centre, "pornhub.com", marker)
    assert (hit["action"], hit["category"], hit["source"]) == (
        "block", "pornography", "built-in categories/definitions/pornography.yaml")
    # The block page shows the address as asked, its port included.
    status, body = curl_plain(centre.proxy.proxy_url, f"http://pornhub.com:8081/{marker}")
    assert status == 403
    assert f'<dd data-field="address">http://pornhub.com:8081/{marker}</dd>' in body
    # The same proxy does forward an unlisted name to the same origin.
    allowed = _marker()
    assert curl_plain(centre.proxy.proxy_url, f"http://origin.test/{allowed}")[0] == 200
    assert centre.origins.saw(allowed)


def test_the_admin_page_is_reached_through_the_proxy_and_nothing_is_logged(
        centre: Centre) -> None:
    for host in (ADMIN_NAME, "127.0.0.1"):
        marker = _marker()
        status, body = curl_plain(centre.proxy.proxy_url,
                                  f"http://{host}:{centre.admin_port}/sign-in?{marker}")
        assert status == 200, (host, body[:300])
        assert "<html" in body.lower() and "esafety" in body.lower()
    # A CONNECT to it (an https:// admin address) is opened too.
    with socket.create_connection(("127.0.0.1", centre.proxy.port), timeout=10) as sock:
        target = f"{ADMIN_NAME}:{centre.admin_port}"
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert read_response_head(sock).startswith("HTTP/1.1 200")
    # A block logged after the admin visits has reached Redis; the visits left no hit.
    flush = _marker()
    assert curl_plain(centre.proxy.proxy_url, f"http://bet365.com/{flush}")[0] == 403
    _wait_for_hit(centre, "bet365.com", flush)
    hosts = {fields.get("host") for fields in _hits(centre)}
    assert ADMIN_NAME not in hosts and "127.0.0.1" not in hosts
    assert not any(fields.get("category") == "circumvention" for fields in _hits(centre))


def test_ask_for_review_on_the_block_page_works_through_the_proxy(
        centre: Centre, browser_through_proxy: Browser) -> None:
    context = browser_through_proxy.new_context(locale="en-GB", timezone_id="Europe/London")
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # (pornhub.com is on Chromium's HSTS preload list, so its http:// link never stays
        # plain HTTP; beeg.com, on the same starter list, does.)
        blocked = page.goto("http://beeg.com/videos/watch", timeout=WAIT_MS)
        assert blocked is not None and blocked.status == 403
        body = page.content()
        assert 'data-category="pornography"' in body
        match = REVIEW_LINK.search(body)
        assert match, body
        review_link = html.unescape(match.group(1))
        # The link keeps the admin's port, and the page names the blocked address.
        assert review_link.startswith(f"{centre.admin_url}/request-review?hit_id="), review_link
        expect(page.locator("[data-field=address]")).to_have_text(
            "http://beeg.com/videos/watch")

        page.get_by_role("link", name="Ask for this site to be reviewed").click()
        page.wait_for_url(f"{centre.admin_url}/**")
        page.wait_for_selector("main[aria-busy=false]", state="attached")
        page.get_by_label("User name").fill("kai")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.locator("#signed-in-as", has_text="Signed in as kai").wait_for()
        expect(page.locator("h1")).to_have_text("Ask for a site to be reviewed")
        expect(page.get_by_label("Address of the site")).to_have_value(
            "http://beeg.com/videos/watch")
        page.get_by_label("Why do you need it?").fill("A media studies essay on regulation.")
        page.get_by_role("button", name="Send to IT support").click()
        expect(page.locator("h1")).to_have_text("Your request has been sent")
        assert errors == []
    finally:
        context.close()
    queue = centre.stack.api("GET", "/api/v1/unblock-requests?limit=50", "it-sam")
    assert [(r["user"], r["target"]) for r in queue["items"]] == [("kai", "beeg.com")]


@pytest.mark.parametrize("host", [ADMIN_NAME, "127.0.0.1", "localhost"])
def test_other_ports_on_the_admin_host_stay_refused(centre: Centre, host: str) -> None:
    for listener in (centre.redis_relay, centre.status_listener):
        port = listener.port
        marker = _marker()
        head = _raw(centre, f"GET http://{host}:{port}/{marker} HTTP/1.1\r\n"
                            f"Host: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        assert head.startswith("HTTP/1.1 403"), (host, port, head[:300])
        with socket.create_connection(("127.0.0.1", centre.proxy.port), timeout=10) as sock:
            sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
                         .encode())
            head = read_response_head(sock)
            assert head.startswith("HTTP/1.1 403"), (host, port, head[:300])
            try:
                sock.sendall(f"PING {marker}\r\n".encode())
            except OSError:
                pass  # closed after the refusal, as it should be
        time.sleep(0.2)
        assert not listener.saw(marker.encode()), (host, port)
    # The admin's own port on another loopback address is not the admin service.
    head = _raw(centre, f"GET http://127.0.0.2:{centre.admin_port}/ HTTP/1.1\r\n"
                        f"Host: 127.0.0.2:{centre.admin_port}\r\nConnection: close\r\n\r\n"
                .encode())
    assert head.startswith("HTTP/1.1 403"), head[:300]
