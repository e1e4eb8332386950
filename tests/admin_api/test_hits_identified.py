"""Who browsed, how they were identified and on which device, end to end: a real proxy, the
real admin process (its log feeder and alert consumer), real Redis, and Debian's Chromium.

A RADIUS-style sign-in binding (made with ``Store.address_bindings.bind``, as the accounting
listener does) names the person at 127.0.0.5 and their MAC address; 127.0.0.9 is in no
network range (unidentified); 127.0.0.7 is a browser signed in through the extension, whose
token the proxy maps to the install id.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from playwright.sync_api import Browser, expect

from admin_api.log_store import COLUMNS, HitQuery, LogStore
from admin_api.workers.alert_delivery import AlertDelivery
from deployment.config import AlertSettings
from store.accounts import create_user
from store.alerts import Alert
from store.connection import connect
from store.keys import Keys
from store.redis_store import Store
from tests.harness.proxy import PROXY_LISTS, ProxyProcess, curl, free_port, start_origins, write_config
from tests.harness.ui import (
    PASSWORD,
    SCREENSHOTS,
    AdminProcess,
    TabFactory,
    UiStack,
    browser,  # noqa: F401
    ensure_ui_vendor,
    run_async,
    tab_factory,
)

MAC = "aa:bb:cc:dd:ee:ff"
RADIUS_ADDRESS = "127.0.0.5"
EXTENSION_ADDRESS = "127.0.0.7"
UNIDENTIFIED_ADDRESS = "127.0.0.9"
BLOCKED = "http://casino-royale.test/tables"
PROBE = "http://esafety-proxy.invalid/status"
ALERTING = "http://nsm88.org/"  # extremism's starter list: a safeguarding alert


def _bind_radius(stack: UiStack) -> None:
    async def bind() -> None:
        client = connect(stack.redis_url)
        try:
            await create_user(client, stack.keys, "sam.learner", "learner", "learner", PASSWORD,
                              display_name="Sam Learner")
            await create_user(client, stack.keys, "lee.learner", "learner", "learner", PASSWORD)
            await create_user(client, stack.keys, "dee.dsl", "dsl", "staff", PASSWORD)
            await create_user(client, stack.keys, "max.manager", "manager", "staff", PASSWORD)
            await Store(client, stack.keys).address_bindings.bind(
                RADIUS_ADDRESS, "sam.learner", source="radius", seconds=3600, device=MAC)
        finally:
            await client.aclose()

    run_async(bind)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[UiStack]:
    """Admin and proxy sharing a prefix; only 127.0.0.1 is a known network range."""
    directory = tmp_path_factory.mktemp("identified")
    ensure_ui_vendor()
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    admin_port = free_port()
    config = write_config(
        directory / "esafety.yaml", keys.prefix,
        admin_public_url=f"http://127.0.0.1:{admin_port}",
        networks=[{"cidr": "127.0.0.1/32", "group": "learner", "site": "test-wifi"}])
    data_dir = directory / "data"
    admin = AdminProcess(data_dir, config, redis_url, admin_port)
    imported = admin.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    running = UiStack(admin, keys, redis_url)
    try:
        running.origins = start_origins(directory)
        running.proxy = ProxyProcess(data_dir, config, redis_url, running.origins).start()
        admin.start()
        _bind_radius(running)
        _wait_until_proxy_sees(running, RADIUS_ADDRESS, "sam.learner")
        yield running
    finally:
        running.stop()


def _wait_until_proxy_sees(stack: UiStack, address: str, user: str) -> None:
    """Every proxy takes a new binding within a second: ask its probe who is at ``address``."""
    assert stack.proxy is not None
    deadline = time.monotonic() + 5
    who: Any = None
    while time.monotonic() < deadline:
        result = curl(stack.proxy, PROBE, "--interface", address)
        who = result.json() if result.status == 200 else result.status
        if isinstance(who, dict) and who.get("user") == user:
            return
        time.sleep(0.1)
    raise AssertionError(f"the proxy never saw {user} at {address}: {who}; "
                         f"{stack.proxy.log_text()[-3000:]}")


@pytest.fixture
def new_tab(browser: Browser, stack: UiStack) -> Iterator[TabFactory]:  # noqa: F811
    yield from tab_factory(browser, stack)


def _browse(stack: UiStack, url: str, address: str,
            user: tuple[str, str] | None = None) -> str:
    """One request through the proxy from ``address``; the blocked hit's reference."""
    assert stack.proxy is not None
    result = curl(stack.proxy, url, "--interface", address, user=user)
    assert result.status == 403, (result.status, result.body[:300], stack.proxy.log_text()[-2000:])
    return result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0].upper()


def _logged(stack: UiStack, hit_id: str, as_user: str = "dee.dsl") -> dict[str, Any]:
    """The hit as the access log API returns it, once the log feeder has it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = stack.api("GET", "/api/v1/hits?limit=200", as_user)["items"]
        for item in items:
            if item["id"] == hit_id:
                return dict(item)
        time.sleep(0.1)
    raise AssertionError(f"hit {hit_id} never reached the access log")


def _sign_in_extension(stack: UiStack, managed_device_id: str = ""
                       ) -> tuple[str, str, ec.EllipticCurvePrivateKey, str]:
    """Sign in as the extension does (log in, register the install): the install id, the
    token it signs in to the proxy with, its device key and its refresh token."""
    token = str(stack._call("POST", "/api/v1/auth/login", None,
                            {"username": "lee.learner", "password": PASSWORD})["token"])
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint).hex()
    device_id = uuid.uuid4().hex
    body = {"device_id": device_id, "public_key": public}
    if managed_device_id:
        body["managed_device_id"] = managed_device_id
    grant = stack._call("POST", "/api/v1/extension/devices", token, body)
    assert grant["device_id"] == device_id
    return device_id, token, key, str(grant["refresh_token"])


def _session_token(stack: UiStack, device_id: str, refresh: str,
                   key: ec.EllipticCurvePrivateKey) -> str:
    """A new bearer token for the install, as the extension gets one after a restart."""
    ts = int(time.time())
    der = key.sign(f"esafety-session-v1\n{device_id}\n{ts}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    sig = (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()
    answer = stack._call("POST", "/api/v1/extension/session", None,
                         {"device_id": device_id, "refresh_token": refresh, "ts": ts, "sig": sig})
    return str(answer["token"])


def _download(stack: UiStack, path: str, as_user: str) -> tuple[int, str]:
    stack.api("GET", "/api/v1/hits?limit=1", as_user)  # signs in (keeps a token)
    request = urllib.request.Request(stack.url(path), headers={
        "Authorization": f"Bearer {stack._tokens[as_user]}"})
    try:
        with urllib.request.urlopen(request, timeout=15) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_access_log_says_who_how_and_on_which_device(stack: UiStack) -> None:
    radius_hit = _browse(stack, BLOCKED, RADIUS_ADDRESS)
    unknown_hit = _browse(stack, BLOCKED, UNIDENTIFIED_ADDRESS)

    sam = _logged(stack, radius_hit)
    assert (sam["user"], sam["display_name"], sam["device"], sam["identified_by"]) == (
        "sam.learner", "Sam Learner", MAC, "radius")
    nobody = _logged(stack, unknown_hit)
    assert (nobody["user"], nobody["device"], nobody["identified_by"]) == (
        "", "", "unidentified")

    by_device = stack.api("GET", f"/api/v1/hits?device={MAC}", "dee.dsl")["items"]
    assert {item["id"] for item in by_device} >= {radius_hit}
    assert all(item["device"] == MAC for item in by_device)

    status, body = _download(stack, "/api/v1/hits.csv", "max.manager")
    assert status == 200
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(body))}
    assert (rows[radius_hit]["device"], rows[radius_hit]["identified_by"]) == (MAC, "radius")
    assert rows[unknown_hit]["identified_by"] == "unidentified"


def test_the_access_log_page_shows_the_person_and_the_device(stack: UiStack,
                                                             new_tab: TabFactory) -> None:
    radius_hit = _browse(stack, BLOCKED, RADIUS_ADDRESS)
    unknown_hit = _browse(stack, BLOCKED, UNIDENTIFIED_ADDRESS)
    _logged(stack, radius_hit)
    _logged(stack, unknown_hit)
    tab = new_tab()
    tab.sign_in("dee.dsl")
    tab.open("/access-log")
    table = tab.page.locator("#access-log-table")
    sam_row = table.locator("tr", has_text="Sam Learner").first
    expect(sam_row).to_contain_text("radius")
    expect(sam_row).to_contain_text(MAC)
    expect(sam_row).not_to_contain_text("(not identified)")
    expect(table.locator("tr", has_text="(not identified)").first).to_be_visible()
    shot = tab.screenshot("access-log-identified")
    assert shot == SCREENSHOTS / "access-log-identified.png" and shot.stat().st_size > 10_000

    tab.open(f"/access-log?device={MAC}")
    rows = tab.page.locator("#access-log-table tbody tr")
    expect(rows.first).to_contain_text(MAC)
    assert all(MAC in text for text in rows.all_inner_texts())
    assert not tab.console_errors


def test_those_who_may_not_see_names_do_not_see_devices(stack: UiStack) -> None:
    radius_hit = _browse(stack, BLOCKED, RADIUS_ADDRESS)
    _logged(stack, radius_hit)
    # Another learner sees only their own hits: not Sam's name, nor Sam's device.
    lee = stack.api("GET", "/api/v1/hits?limit=200", "lee.learner")
    assert MAC not in json.dumps(lee) and "sam.learner" not in json.dumps(lee)
    assert stack.api("GET", f"/api/v1/hits?device={MAC}", "lee.learner")["items"] == []
    # Sam sees their own.
    own = stack.api("GET", "/api/v1/hits?limit=200", "sam.learner")["items"]
    assert any(item["id"] == radius_hit and item["device"] == MAC for item in own)
    # A pseudonymised export hides the device wherever it hides the name.
    status, body = _download(stack, "/api/v1/hits.csv?pseudonymise=true", "max.manager")
    assert status == 200
    assert MAC not in body and "sam.learner" not in body
    row = next(r for r in csv.DictReader(io.StringIO(body)) if r["id"] == radius_hit)
    assert row["device"].startswith("dev-") and row["user"].startswith("u-")
    assert row["identified_by"] == "radius"
    # Nor may a learner export.
    assert _download(stack, "/api/v1/hits.csv", "lee.learner")[0] == 403


def test_the_alert_shows_the_device_to_the_dsl(stack: UiStack, new_tab: TabFactory) -> None:
    hit_id = _browse(stack, ALERTING, RADIUS_ADDRESS)
    deadline = time.monotonic() + 15
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        found = [a for a in stack.api("GET", "/api/v1/alerts?user=sam.learner",
                                      "dee.dsl")["items"] if hit_id in a["hit_ids"]]
        time.sleep(0.1)
    assert found, "no alert was raised"
    alert = found[0]
    assert alert["devices"] == [MAC] and alert["identified_by"] == "radius"
    shown = stack.api("GET", f"/api/v1/alerts/{alert['id']}", "dee.dsl")
    assert any(h["device"] == MAC for h in shown["recent_blocked_hits"])

    mail = AlertDelivery(AlertSettings(email_to=("dsl@centre.test",), smtp_host="mail.test")
                         ).message(Alert.from_dict(alert)).get_content()
    assert f"Device: {MAC}" in mail and "Identified by: RADIUS" in mail

    tab = new_tab()
    tab.sign_in("dee.dsl")
    tab.open(f"/alerts/{alert['id']}")
    details = tab.page.locator("dl")
    expect(details).to_contain_text(MAC)
    expect(details).to_contain_text("RADIUS (Wi-Fi controller)")
    expect(tab.page.locator("table")).to_contain_text(MAC)


def test_an_extension_signed_browser_carries_its_install_id(stack: UiStack) -> None:
    device_id, token, key, refresh = _sign_in_extension(stack)
    hit_id = _browse(stack, BLOCKED, EXTENSION_ADDRESS, user=("lee.learner", token))
    hit = _logged(stack, hit_id)
    assert (hit["user"], hit["device"], hit["identified_by"]) == (
        "lee.learner", device_id, "auth")
    # After a browser restart the install gets a new token: it names the install too.
    renewed = _session_token(stack, device_id, refresh, key)
    assert renewed != token
    again = _logged(stack, _browse(stack, BLOCKED, EXTENSION_ADDRESS,
                                   user=("lee.learner", renewed)))
    assert again["device"] == device_id
    # A password sign-in names no install.
    plain = _logged(stack, _browse(stack, BLOCKED, EXTENSION_ADDRESS,
                                   user=("lee.learner", PASSWORD)))
    assert (plain["user"], plain["device"], plain["identified_by"]) == (
        "lee.learner", "", "auth")



def test_a_managed_chromebook_is_named_by_its_device_id(stack: UiStack) -> None:
    chromebook = "0f4e5c1a-93b2-4d7e-8a61-2b9c7d3e4f50"
    device_id, token, key, refresh = _sign_in_extension(stack, managed_device_id=chromebook)
    hit = _logged(stack, _browse(stack, BLOCKED, EXTENSION_ADDRESS,
                                 user=("lee.learner", token)))
    assert (hit["device"], hit["identified_by"]) == (chromebook, "auth")
    renewed = _session_token(stack, device_id, refresh, key)
    again = _logged(stack, _browse(stack, BLOCKED, EXTENSION_ADDRESS,
                                   user=("lee.learner", renewed)))
    assert again["device"] == chromebook
    # A device id of the wrong shape is refused with the field named, and nothing registered.
    login = stack._call("POST", "/api/v1/auth/login", None,
                        {"username": "lee.learner", "password": PASSWORD})
    request = urllib.request.Request(
        stack.url("/api/v1/extension/devices"), method="POST",
        data=json.dumps({"device_id": uuid.uuid4().hex, "public_key": "04" + "ab" * 64,
                         "managed_device_id": "not a device id"}).encode(),
        headers={"Authorization": f"Bearer {login['token']}",
                 "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["field"] == "managed_device_id"


OLD_SCHEMA = """
CREATE TABLE hits (
  sid TEXT NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL, user TEXT NOT NULL, grp TEXT NOT NULL,
  client_ip TEXT NOT NULL, site TEXT NOT NULL, host TEXT NOT NULL, path TEXT NOT NULL,
  action TEXT NOT NULL, category TEXT NOT NULL, rule TEXT NOT NULL, source TEXT NOT NULL,
  severity TEXT NOT NULL, alert INTEGER NOT NULL, decrypted INTEGER NOT NULL,
  method TEXT NOT NULL, search_terms TEXT NOT NULL
);
CREATE INDEX hits_ts ON hits (ts);
CREATE INDEX hits_user ON hits (user, ts);
CREATE INDEX hits_grp ON hits (grp, ts);
CREATE INDEX hits_host ON hits (host, ts);
CREATE INDEX hits_category ON hits (category, ts);
CREATE TABLE feed_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def test_a_log_store_made_before_devices_gains_them_and_keeps_its_hits(tmp_path: Path) -> None:
    path = tmp_path / "hits.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
        old.execute("INSERT INTO hits VALUES ('1-0', '20261204-AAAAAAAA', 1.0, 'ada', 'learner',"
                    " '10.0.0.2', 'main', 'casino.test', '/', 'block', 'gambling', 'category',"
                    " 'ut1/gambling/domains', 'medium', 0, 0, 'GET', '')")
        old.execute("INSERT INTO feed_state VALUES ('last_stream_id', '1-0')")
    store = LogStore(path).open()
    try:
        assert store.last_stream_id() == "1-0"
        [before], _ = store.page(HitQuery(), None, 10)
        assert (before["user"], before["device"], before["identified_by"]) == ("ada", "", "")
        row = ["2-0", "20261204-BBBBBBBB", 2.0, "sam", "learner", "10.0.0.5", "main",
               "casino.test", "/", "block", "gambling", "category", "ut1/gambling/domains",
               "medium", 0, 0, "GET", "", MAC, "radius"]
        assert len(row) == len(COLUMNS)
        store.append([tuple(row)], "2-0")
        [found], _ = store.page(HitQuery(device=MAC), None, 10)
        assert (found["user"], found["identified_by"]) == ("sam", "radius")
        assert store.count() == 2
    finally:
        store.close()
    # Opening it again changes nothing (the migration is done once).
    again = LogStore(path).open()
    try:
        with sqlite3.connect(path) as check:
            columns = [r[1] for r in check.execute("PRAGMA table_info(hits)")]
            indexes = {r[1] for r in check.execute("PRAGMA index_list(hits)")}
        assert columns[-2:] == ["device", "identified_by"] and "hits_device" in indexes
        assert again.count() == 2
    finally:
        again.close()
