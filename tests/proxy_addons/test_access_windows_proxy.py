"""Access windows through the real proxy: the learner Wi-Fi open only at break and lunch (a real
esafety proxy process, real Redis, loopback origins, curl and raw sockets; the decide stage's
clock set from the harness's clock file)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis as sync_redis

from admin_api.reports.summary import summary
from store.alerts import alerting
from store.connection import connect
from store.hits import Hits, hit_from_entry
from store.keys import Keys
from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    curl,
    raw_connection,
    read_response_head,
    write_config,
)

LONDON = ZoneInfo("Europe/London")


def recent_monday() -> date:
    """A Monday within the last fortnight (hits older than the retention are only counted)."""
    today = datetime.now(LONDON).date() - timedelta(days=1)
    return today - timedelta(days=today.weekday())


MONDAY = recent_monday()


def moment(hour: int, minute: int) -> str:
    return datetime(MONDAY.year, MONDAY.month, MONDAY.day, hour, minute,
                    tzinfo=LONDON).isoformat()


BEFORE_BREAK = moment(9, 0)
AT_LUNCH = moment(12, 30)
WINDOWS_TEXT = "break (10:30–10:45) and lunch (12:00–13:00)"


@pytest.fixture(scope="module")
def module_keys() -> Keys:
    return Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory, redis_url: str, origins: Origins,
            module_keys: Keys) -> Iterator[list[ProxyProcess]]:
    """Two proxies on the same store: with the fast path (it answers CONNECT itself) and
    without (mitmproxy does). Plain HTTP takes the same path on both, so only the HTTPS tests
    try both."""
    started: list[ProxyProcess] = []
    try:
        for fast_path in (True, False):
            directory = tmp_path_factory.mktemp("windows")
            config = write_config(
                directory / "esafety.yaml", module_keys.prefix,
                groups={"learner_byod": {"online_during": ["break", "lunch"],
                                         "always_allow": ["origin.test"]}},
                networks=[{"cidr": "127.0.0.0/8", "group": "learner_byod", "site": "byod",
                           "name": "learner Wi-Fi", "online_during": ["break", "lunch"]}],
            )
            process = ProxyProcess(directory / "data", config, redis_url, origins,
                                   clock_file=directory / "clock", fast_path=fast_path)
            imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
            assert imported.returncode == 0, imported.stdout + imported.stderr
            started.append(process.start())
        yield started
    finally:
        for process in started:
            process.stop()
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=module_keys.prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def proxy(proxies: list[ProxyProcess]) -> ProxyProcess:
    """The fast-path proxy, for what both would answer alike."""
    return proxies[0]


def set_clock(proxy: ProxyProcess | list[ProxyProcess], iso: str) -> None:
    for one in proxy if isinstance(proxy, list) else [proxy]:
        assert one.clock_file is not None
        one.clock_file.write_text(iso)


@pytest.fixture(autouse=True)
def real_time(proxies: list[ProxyProcess]) -> Iterator[None]:
    yield
    set_clock(proxies, "")


def hit_fields(redis_url: str, keys: Keys, hit_id: str) -> dict[str, str]:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for _id, fields in client.xrange(keys.hits):
                if fields.get("id") == hit_id:
                    return dict(fields)
            time.sleep(0.05)
        raise AssertionError(f"hit {hit_id} was never recorded")
    finally:
        client.close()


def connect_refusal(proxy: ProxyProcess, host: str) -> tuple[str, str]:
    """(head, body) of the proxy's answer to ``CONNECT host:443``."""
    with raw_connection(proxy) as sock:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = read_response_head(sock)
        header_part, _, body = head.partition("\r\n\r\n")
        length = next((int(line.split(":", 1)[1]) for line in header_part.split("\r\n")
                       if line.lower().startswith("content-length:")), 0)
        data = body.encode("latin-1")
        sock.settimeout(5)
        while len(data) < length:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    return header_part, data.decode("utf-8", "replace")


def test_outside_the_windows_http_gets_the_outside_hours_page(
        proxy: ProxyProcess, origins: Origins, redis_url: str, module_keys: Keys) -> None:
    set_clock(proxy, BEFORE_BREAK)
    marker = uuid.uuid4().hex
    result = curl(proxy, f"http://allowed.test/{marker}")
    assert result.status == 403
    assert (f"The learner Wi-Fi is open at {WINDOWS_TEXT}. It opens next today at 10:30."
            in result.body)
    assert "This page is blocked" not in result.body and "prohibited" not in result.body
    assert "I reached this by accident" not in result.body
    assert "Ask for this site to be reviewed" not in result.body
    assert not origins.saw(marker)
    hit_id = result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0].upper()
    fields = hit_fields(redis_url, module_keys, hit_id)
    assert fields["rule"] == "outside_hours" and fields["action"] == "block"
    assert fields["group"] == "learner_byod" and fields["category"] == ""
    assert not alerting(hit_from_entry(fields))


def test_outside_the_windows_https_is_refused_at_connect(proxies: list[ProxyProcess],
                                                        origins: Origins) -> None:
    set_clock(proxies, moment(10, 50))
    for proxy in proxies:
        mark = origins.raw_mark()
        head, body = connect_refusal(proxy, "allowed.test")
        assert head.startswith("HTTP/1.1 403"), proxy.fast_path
        assert body.startswith(f"The learner Wi-Fi is open at {WINDOWS_TEXT}. "
                               "It opens next today at 12:00. Reference "), proxy.fast_path
        marker = uuid.uuid4().hex
        result = curl(proxy, f"https://allowed.test/{marker}")
        assert result.exit_code != 0 and "403" in result.stderr
        assert not origins.saw(marker) and not origins.raw_connections_since(mark)


def test_inside_a_window_requests_reach_the_origin(proxies: list[ProxyProcess],
                                                   origins: Origins) -> None:
    set_clock(proxies, AT_LUNCH)
    for proxy in proxies:
        for scheme in ("http", "https"):
            marker = uuid.uuid4().hex
            result = curl(proxy, f"{scheme}://allowed.test/{marker}", cacert=origins.ca_file)
            assert result.status == 200, (proxy.fast_path, result.stderr)
            assert origins.saw(marker), (proxy.fast_path, scheme)


def test_an_always_allow_host_is_reachable_outside_the_windows(proxies: list[ProxyProcess],
                                                                origins: Origins) -> None:
    set_clock(proxies, BEFORE_BREAK)
    for proxy in proxies:
        for url in ("http://origin.test/", "https://www.origin.test/"):
            marker = uuid.uuid4().hex
            result = curl(proxy, url + marker, cacert=origins.ca_file)
            assert result.status == 200, (proxy.fast_path, url, result.stderr)
            assert origins.saw(marker), (proxy.fast_path, url)


def test_a_prohibited_site_is_still_blocked_inside_the_window(proxy: ProxyProcess,
                                                              origins: Origins) -> None:
    set_clock(proxy, AT_LUNCH)
    marker = uuid.uuid4().hex
    result = curl(proxy, f"http://www.casino-royale.test/{marker}")
    assert result.status == 403
    assert "This page is blocked" in result.body and 'data-category="gambling"' in result.body
    assert not origins.saw(marker)


def test_outside_hours_refusals_are_counted_apart_from_blocked_content(
        proxy: ProxyProcess, redis_url: str, module_keys: Keys) -> None:
    set_clock(proxy, BEFORE_BREAK)
    for _ in range(2):
        assert curl(proxy, "http://allowed.test/counted").status == 403

    async def totals() -> dict[str, Any]:
        client = connect(redis_url)
        try:
            return await summary(Hits(client, module_keys), MONDAY, MONDAY, "category")
        finally:
            await client.aclose()

    # Hits reach Redis in batches a fraction of a second apart: wait for both refusals and
    # the gambling block from the test before.
    deadline = time.monotonic() + 5
    report = asyncio.run(totals())
    while (report["totals"]["outside_hours"] < 2 or not report["rows"]) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
        report = asyncio.run(totals())
    assert report["totals"]["outside_hours"] >= 2
    # The only blocks of content are the gambling site's: an outside-hours refusal is never
    # one (it would show as uncategorised), and never a top blocked site.
    assert [row["key"] for row in report["rows"] if row["block"]] == ["gambling"]
    assert "allowed.test" not in [site["host"] for site in report["top_blocked_sites"]]


def test_esafety_check_explains_the_windows_and_the_next_opening(proxy: ProxyProcess) -> None:
    done = proxy.cli("check", "http://allowed.test/", "--group", "learner_byod", "--at",
                     f"{MONDAY.isoformat()}T13:30")
    assert done.returncode != 0
    assert "BLOCK http://allowed.test/ rule=outside_hours" in done.stdout
    assert WINDOWS_TEXT in done.stdout
    tomorrow = "tomorrow at 10:30"
    assert tomorrow in done.stdout
    inside = proxy.cli("check", "http://allowed.test/", "--group", "learner_byod", "--at",
                       f"{MONDAY.isoformat()}T10:35")
    assert inside.returncode == 0 and "ALLOW" in inside.stdout
    network = proxy.cli("check", "http://allowed.test/", "--network", "learner Wi-Fi", "--at",
                        f"{MONDAY.isoformat()}T13:30")
    assert network.returncode != 0
    assert f"The learner Wi-Fi is open at {WINDOWS_TEXT}" in network.stdout
    unknown = proxy.cli("check", "http://allowed.test/", "--network", "Lab 4")
    assert unknown.returncode == 2 and "'Lab 4' is not a named network" in unknown.stderr
