"""The enforcing proxy, end to end: a real esafety proxy process, real Redis, loopback HTTP and
HTTPS origins, and real clients (curl and raw sockets)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from store.accounts import create_user
from store.connection import connect
from store.keys import Keys
from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    basic,
    curl,
    raw_connection,
    read_response_head,
    write_config,
)

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def module_keys() -> Keys:
    return Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "no-fast-path"])
def proxy(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          redis_url: str, origins: Origins, module_keys: Keys) -> Iterator[ProxyProcess]:
    directory = tmp_path_factory.mktemp("proxy")
    config = write_config(
        directory / "esafety.yaml", module_keys.prefix,
        networks=[{"cidr": "127.0.0.0/8", "group": "learner", "site": "test-wifi"}],
        time_windows={"lunch": {"days": "mon-fri", "start": "12:00", "end": "13:00"},
                      "break": {"days": "mon-fri", "start": "10:30", "end": "10:45"}},
        alerts={"prevent_watch_terms": ["join the caliphate"]},
    )

    async def users() -> None:
        client = connect(redis_url)
        for name, group in (("learner1", "learner"), ("learner2", "learner"),
                            ("staff1", "staff")):
            await create_user(client, module_keys, name, "staff" if group == "staff" else
                              "learner", group, PASSWORD)
        await client.aclose()

    asyncio.run(users())
    process = ProxyProcess(directory / "data", config, redis_url, origins,
                           clock_file=directory / "clock", fast_path=request.param)
    imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    process.start()
    yield process
    process.stop()
    client = sync_redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=module_keys.prefix + "*"):
        client.delete(key)
    client.close()


def hits_for(redis_url: str, keys: Keys, hit_id: str) -> list[dict[str, str]]:
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = [fields for _id, fields in client.xrange(keys.hits)
                     if fields.get("id") == hit_id]
            if found:
                return found
            time.sleep(0.05)
        return []
    finally:
        client.close()


def set_clock(proxy: ProxyProcess, iso: str) -> None:
    assert proxy.clock_file is not None
    proxy.clock_file.write_text(iso)


@pytest.fixture(autouse=True)
def real_time(proxy: ProxyProcess) -> Iterator[None]:
    set_clock(proxy, "")
    yield
    set_clock(proxy, "")


def test_blocked_http_domain_gets_the_block_page(proxy: ProxyProcess) -> None:
    result = curl(proxy, "http://www.casino-royale.test/spin?x=1")
    assert result.status == 403
    assert "This page is blocked" in result.body
    assert "Gambling" in result.body
    assert 'data-category="gambling"' in result.body
    hit_id = result.body.split('data-field="hit-id"><code>')[1].split("<")[0]
    assert hit_id and f"x-esafety-hit-id: {hit_id}".lower() in result.headers.lower()
    assert "I reached this by accident" in result.body
    assert "Ask for this site to be reviewed" in result.body
    assert f"http://admin.test:8090/report?hit_id={hit_id}" in result.body


def test_blocked_https_domain_is_refused_at_connect(proxy: ProxyProcess) -> None:
    with raw_connection(proxy) as sock:
        sock.sendall(b"CONNECT casino-royale.test:443 HTTP/1.1\r\nHost: casino-royale.test:443\r\n\r\n")
        head = read_response_head(sock)
    assert head.startswith("HTTP/1.1 403")
    assert "x-esafety-hit-id" in head.lower()
    result = curl(proxy, "https://casino-royale.test/")
    assert result.exit_code != 0 and "403" in result.stderr


def test_path_rule_blocks_one_path_and_allows_its_sibling(proxy: ProxyProcess) -> None:
    blocked = curl(proxy, "https://mixed-content.test/adult-section/page1")
    assert blocked.status == 403 and "Pornography" in blocked.body
    sibling = curl(proxy, "https://mixed-content.test/adult-sectionless/page1")
    assert sibling.status == 200
    assert sibling.json()["path"] == "/adult-sectionless/page1"
    other = curl(proxy, "https://mixed-content.test/news")
    assert other.status == 200


def test_allowed_https_is_tunnelled_without_decryption(proxy: ProxyProcess,
                                                       origins: Origins) -> None:
    # The client trusts only the origin's CA: if the proxy decrypted, the handshake would fail.
    context = ssl.create_default_context(cafile=str(origins.ca_file))
    with raw_connection(proxy) as sock:
        sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
        assert read_response_head(sock).startswith("HTTP/1.1 200")
        with context.wrap_socket(sock, server_hostname="allowed.test") as tls:
            cert = tls.getpeercert()
            tls.sendall(b"GET /hello HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
    issuer = dict(item[0] for item in cert["issuer"])
    assert "esafety ca" not in json.dumps(issuer).lower()
    assert b'"path": "/hello"' in reply
    # The same request with only the esafety CA trusted fails: the proxy really did not decrypt.
    result = curl(proxy, "https://allowed.test/hello")
    assert result.exit_code != 0


def test_safe_search_and_youtube_restricted_mode(proxy: ProxyProcess) -> None:
    google = curl(proxy, "https://www.google.com/search?q=cats&safe=off")
    assert google.status == 200
    assert "safe=active" in google.json()["query"] and "safe=off" not in google.json()["query"]
    bing = curl(proxy, "https://www.bing.com/search?q=cats")
    assert "adlt=strict" in bing.json()["query"]
    ddg = curl(proxy, "https://duckduckgo.com/?q=cats&kp=-2")
    assert "kp=1" in ddg.json()["query"] and "kp=-2" not in ddg.json()["query"]
    youtube = curl(proxy, "https://www.youtube.com/results?search_query=cats")
    assert youtube.json()["headers"].get("YouTube-Restrict") == "Strict"


def test_dns_over_https_is_blocked(proxy: ProxyProcess) -> None:
    known = curl(proxy, "https://doh.known-resolver.test/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB")
    assert known.exit_code != 0 and "403" in known.stderr
    unknown = curl(proxy, "https://doh.unknown-resolver.test/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB")
    assert unknown.status == 403 and "Encrypted DNS" in unknown.body
    posted = curl(proxy, "http://origin.test/anything", "-X", "POST", "-H",
                  "Content-Type: application/dns-message", "--data-binary", "xx")
    assert posted.status == 403
    # An ordinary page on the same kind of host is not affected.
    assert curl(proxy, "https://doh.unknown-resolver.test/about").status == 200


def test_same_url_allowed_for_staff_and_blocked_for_learners(proxy: ProxyProcess) -> None:
    set_clock(proxy, "2026-11-23T09:00:00+00:00")  # a Monday morning: not break or lunch
    staff = curl(proxy, "http://friendface.test/feed", user=("staff1", PASSWORD))
    assert staff.status == 200
    learner = curl(proxy, "http://friendface.test/feed", user=("learner1", PASSWORD))
    assert learner.status == 403 and "Social networks" in learner.body
    # No credentials: identified by the network range as a learner.
    anonymous = curl(proxy, "http://friendface.test/feed")
    assert anonymous.status == 403


def test_time_rule_flips_at_its_boundary(proxy: ProxyProcess) -> None:
    # Monday 23 November 2026; London is on GMT. Lunch is 12:00-13:00.
    for moment, expected in (("2026-11-23T11:59:59+00:00", 403),
                             ("2026-11-23T12:00:00+00:00", 200),
                             ("2026-11-23T12:59:59+00:00", 200),
                             ("2026-11-23T13:00:00+00:00", 403),
                             ("2026-11-22T12:30:00+00:00", 403)):  # Sunday: no lunch window
        set_clock(proxy, moment)
        result = curl(proxy, "http://friendface.test/", user=("learner1", PASSWORD))
        assert result.status == expected, moment


def test_hit_record_has_every_field(proxy: ProxyProcess, redis_url: str,
                                    module_keys: Keys) -> None:
    result = curl(proxy, "http://hatesite.test/forum/thread?id=7", user=("learner2", PASSWORD))
    assert result.status == 403
    hit_id = result.headers.lower().split("x-esafety-hit-id: ")[1].split()[0].upper()
    [hit] = hits_for(redis_url, module_keys, hit_id)
    assert hit["id"] == hit_id
    assert float(hit["ts"]) > time.time() - 60
    assert hit["user"] == "learner2" and hit["group"] == "learner"
    assert hit["client_ip"] == "127.0.0.1" and hit["site"] == "test-wifi"
    assert hit["host"] == "hatesite.test" and hit["path"] == "/forum/thread"
    assert hit["action"] == "block" and hit["category"] == "hate_discrimination"
    assert hit["rule"] == "category" and hit["source"] == "fixtures/agressif/domains"
    assert hit["method"] == "GET" and hit["decrypted"] == "0"


def test_prevent_watch_list_search_is_logged_for_the_dsl(proxy: ProxyProcess, redis_url: str,
                                                          module_keys: Keys) -> None:
    result = curl(proxy, "https://www.google.com/search?q=how+to+Join+the+Caliphate",
                  user=("learner1", PASSWORD))
    assert result.status == 200
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + 5
    found: list[dict[str, str]] = []
    while not found and time.monotonic() < deadline:
        found = [f for _i, f in client.xrange(module_keys.hits)
                 if f.get("search_terms") == "join the caliphate"]
        time.sleep(0.05)
    client.close()
    assert found and found[0]["alert"] == "1" and found[0]["user"] == "learner1"


def test_malformed_requests_get_400_and_the_proxy_keeps_serving(proxy: ProxyProcess) -> None:
    for garbage in (b"GARBAGE\r\n\r\n", b"CONNECT :::: HTTP/1.1\r\n\r\n",
                    b"GET http://[zz/ HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"CONNECT example.test:99999 HTTP/1.1\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: \x00\x01\r\n\r\n"):
        with raw_connection(proxy) as sock:
            sock.sendall(garbage)
            head = read_response_head(sock)
        assert head.startswith("HTTP/1.1 400"), (garbage, head[:200])
    assert curl(proxy, "http://allowed.test/still-serving").status == 200


def test_wrong_credentials_fall_back_to_the_network_identity(proxy: ProxyProcess) -> None:
    set_clock(proxy, "2026-11-23T09:00:00+00:00")  # a Monday morning: not break or lunch
    result = curl(proxy, "http://friendface.test/", user=("staff1", "wrong password"))
    assert result.status == 403  # not staff: the learner network's profile applies
    with raw_connection(proxy) as sock:
        sock.sendall(b"GET http://friendface.test/ HTTP/1.1\r\nHost: friendface.test\r\n"
                     b"Proxy-Authorization: " + basic("staff1", PASSWORD).encode() +
                     b"\r\nConnection: close\r\n\r\n")
        assert read_response_head(sock).startswith("HTTP/1.1 200")


def test_status_endpoint_reports_health_and_metrics(proxy: ProxyProcess) -> None:
    # A block and a pass-through HTTPS tunnel of its own (the order tests run in may vary).
    assert curl(proxy, "http://www.casino-royale.test/spin?x=1").status == 403
    # (curl trusts only the esafety CA, and the site's own certificate comes through.)
    assert "200 Connection established" in curl(proxy, "https://allowed.test/hello").headers
    assert proxy.status("/healthz")[0] == 200
    code, body = proxy.status("/readyz")
    assert code == 200, body
    code, metrics = proxy.status("/metrics")
    assert code == 200
    assert "esafety_proxy_requests_total" in metrics
    # prometheus_client writes labels in name order
    assert 'esafety_proxy_blocks_total{category="gambling",worker="0"}' in metrics
    # The pass-through HTTPS tunnel went through the fast path (when on).
    fast = [line for line in metrics.splitlines()
            if line.startswith('esafety_proxy_fast_tunnels_total{worker="0"}')]
    assert fast and (float(fast[0].split()[-1]) > 0) == proxy.fast_path


def _requests_total(proxy: ProxyProcess) -> float:
    line = next(x for x in proxy.status("/metrics")[1].splitlines()
                if x.startswith('esafety_proxy_requests_total{worker="0"}'))
    return float(line.split()[-1])


@pytest.mark.parametrize(("url", "decided"), [
    ("https://allowed.test/hello", 1),  # the tunnel (relayed by the fast path when on)
    ("https://mixed-content.test/news", 2),  # the tunnel (handed over), and the request in it
    ("https://casino-royale.test/", 1),  # the refused CONNECT (handed over)
    ("http://allowed.test/hello", 1),
])
def test_each_request_and_tunnel_is_counted_once(proxy: ProxyProcess, url: str,
                                                 decided: int) -> None:
    before = _requests_total(proxy)
    curl(proxy, url)
    assert _requests_total(proxy) - before == decided


def test_required_auth_challenges_with_407(tmp_path: Path, redis_url: str, origins: Origins,
                                           module_keys: Keys, proxy: ProxyProcess) -> None:
    config = write_config(tmp_path / "auth.yaml", module_keys.prefix,
                          proxy_auth={"mode": "required"})
    second = ProxyProcess(tmp_path / "data", config, redis_url, origins)
    second.start()
    try:
        challenged = curl(second, "http://allowed.test/")
        assert challenged.status == 407
        assert 'proxy-authenticate: basic realm="esafety"' in challenged.headers.lower()
        with raw_connection(second) as sock:
            sock.sendall(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
            assert read_response_head(sock).startswith("HTTP/1.1 407")
        signed_in = curl(second, "http://allowed.test/", user=("staff1", PASSWORD))
        assert signed_in.status == 200
    finally:
        second.stop()


def test_ca_is_private_exported_and_mitm_it_leads_to_onboarding(proxy: ProxyProcess) -> None:
    ca_dir = proxy.data_dir / "ca"
    key_file = ca_dir / "mitmproxy-ca.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert ca_dir.stat().st_mode & 0o777 == 0o700
    exported = proxy.cli("ca", "export")
    assert exported.returncode == 0
    assert exported.stdout.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in exported.stdout
    assert exported.stdout.strip() == proxy.ca_cert.read_text().strip()
    onboarding = curl(proxy, "http://mitm.it/")
    assert onboarding.status == 302
    assert "location: http://admin.test:8090/onboarding\r\n" in onboarding.headers.lower()


def test_bare_ip_addresses_are_blocked_for_learners_but_not_staff(proxy: ProxyProcess) -> None:
    for url in ("http://127.0.0.2/", "http://2130706434/", "http://0x7f.0.0.2/"):
        result = curl(proxy, url)
        assert result.status == 403 and "Bare IP addresses" in result.body, url
    with raw_connection(proxy) as sock:
        sock.sendall(b"CONNECT 127.0.0.2:443 HTTP/1.1\r\nHost: 127.0.0.2:443\r\n\r\n")
        assert read_response_head(sock).startswith("HTTP/1.1 403")
    # Staff may use bare addresses: one the test config allows (the origin's) is fetched...
    staff = curl(proxy, "http://127.0.0.1/ok", user=("staff1", PASSWORD))
    assert staff.status == 200 and staff.json()["path"] == "/ok"
    # ...but an address inside the network that is not allowed is refused for anyone.
    internal = curl(proxy, "http://127.0.0.2/ok", user=("staff1", PASSWORD))
    assert internal.status == 403 and "own network, which the web filter" in internal.body


def test_the_proxy_answers_its_probe_with_who_is_browsing(proxy: ProxyProcess) -> None:
    result = curl(proxy, "http://esafety-proxy.invalid/status", user=("learner1", PASSWORD))
    assert result.status == 200
    assert result.json() == {"proxy": "esafety", "centre": "test-centre", "site": "test-wifi",
                             "user": "learner1", "group": "learner", "identified_by": "auth"}
    # A web page's script may fetch it through the proxy, but the browser shows it nothing:
    # no CORS grant, so no site can learn the learner's name.
    assert "access-control-allow-origin" not in result.headers.lower()
    anonymous = curl(proxy, "http://esafety-proxy.invalid/status").json()
    assert anonymous["user"] is None and anonymous["identified_by"] == "network"
